"""Pipelined round trips to Redis for the scoring path, on a connection each thread keeps.

redis-py's ``Pipeline`` takes a connection from the pool and gives it back on every call, with retry and
observability wrappers around both: measured here, about 70 µs of CPU per round trip beyond the round trip itself,
more than Redis spends answering a transaction's reads. A ``Channel`` keeps one connection of the client's pool
per thread and writes and reads the batch on it directly (still redis-py's connection, packer and hiredis parser).
On an event loop, ``exchange_async`` gives the loop the wait between the write and the first reply (the socket
watched with ``add_reader``); a wait cancelled before the replies are read closes the connection.

Scripts are called by their SHA (``EVALSHA``): a restarted or flushed Redis forgets them and answers
``NoScriptError``. Then the caller's ``load`` puts them back and the commands are sent once more; the scoring
path's commands are reads and idempotent updates, so sending twice changes nothing. A connection Redis has closed
(it restarted) fails before its first reply; it is reopened and the commands sent once more. One that breaks
after some replies is not retried: those commands ran, and the decision log's XADDs must not run twice.
"""

from __future__ import annotations

import asyncio
import select
import threading
import time
from collections.abc import Callable, Generator, Iterable, Sequence
from typing import Any, TypeVar

import redis
from redis.connection import AbstractConnection

try:  # redis-py's hiredis parser: its buffered replies are read straight from its reader (``Replies``)
    from redis._parsers.hiredis import NOT_ENOUGH_DATA, _HiredisParser
except ImportError:  # another redis-py layout: every reply through ``read_response``
    NOT_ENOUGH_DATA, _HiredisParser = object(), None  # type: ignore[assignment,misc]

from skewless.errors import DependencyUnavailableError

T = TypeVar("T")
# A command: its arguments (any iterable: ``_send`` iterates it when its turn comes), or the command already in
# Redis's protocol (``resp``).
Command = Iterable[Any] | bytes

# Written as soon as this much is packed: Redis starts on a large batch's first commands (a script call of 64
# transactions is ~12 KB) while the rest are built and packed; a micro-batch's commands go in one write.
SEND_BYTES = 8 * 1024


class Channel:
    """Round trips to Redis, each one pipelined write of many commands (``SEND_BYTES`` at a time). ``what`` names
    the store in the errors. Safe to share between threads: each thread gets its own connection."""

    def __init__(self, client: redis.Redis, what: str) -> None:
        self._client = client
        self._what = what
        self._local = threading.local()

    def _connection(self) -> AbstractConnection:
        conn: AbstractConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = self._client.connection_pool.get_connection()
            except redis.RedisError as exc:
                raise DependencyUnavailableError(f"{self._what} unavailable: {exc}") from exc
            self._local.conn = conn
        return conn

    def send(self, commands: Sequence[Command], load: Callable[[], None] | None = None) -> list[Any]:
        """The replies to ``commands``, in order; a command's error is its reply (callers check their own).
        ``load`` puts the scripts back when Redis has forgotten them."""
        return self.exchange(commands, list, load)

    def exchange(self, commands: Sequence[Command], use: Callable[[Replies], T], load: Callable[[], None] | None) -> T:
        """``use(replies)``, where ``replies`` yields the replies in order, each read from the socket when it is
        asked for: ``use`` works on the first ones while Redis is still running the rest. When a script was
        missing (a ``NoScriptError`` reply, or ``use`` raising it), ``load`` puts the scripts back, the commands
        are sent again and ``use`` is called again on the new replies."""
        rounds = self._rounds(commands, use, load)
        while True:
            try:
                next(rounds)  # sent; the replies are read as ``use`` asks for them
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]

    async def exchange_async(
        self,
        commands: Sequence[Command],
        use: Callable[[Replies], T],
        load: Callable[[], None] | None,
        spin_s: float = 0.0,
        idle: Callable[[], bool] | None = None,
    ) -> T:
        """``exchange`` for an event loop: the loop runs other work while Redis computes, and ``use`` is called
        once the first reply has come (a pipeline's replies come back together, so it rarely waits after that).
        Reading stays synchronous, with the connection's timeout; only the wait for Redis is given to the loop.
        With ``spin_s``, the socket is watched that long first, holding the loop (``_answered_within``): for a
        caller with nothing else to do, whom a sleep and a wake-up would cost more than the wait. ``idle`` is
        work for that watch, a small piece per call (see ``_answered_within``)."""
        rounds = self._rounds(commands, use, load)
        while True:
            try:
                sent = next(rounds)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            if spin_s and _answered_within(sent, spin_s, idle):
                continue
            try:
                await _readable(sent)
            except BaseException:  # cancelled: the replies are never read, so the connection is closed
                rounds.close()
                raise

    def _rounds(
        self, commands: Sequence[Command], use: Callable[[Replies], T], load: Callable[[], None] | None
    ) -> Generator[AbstractConnection, None, T]:
        """One exchange as a generator: it yields the connection after each write (the caller may wait for it to
        be readable) and returns ``use``'s result."""
        reloaded = reconnected = False
        while True:
            replies = Replies(self._connection(), len(commands))
            try:
                _send(replies.conn, commands)
                try:
                    yield replies.conn
                except GeneratorExit:
                    replies.conn.disconnect()  # replies never read would put the next exchange out of step
                    raise
                try:
                    result = use(replies)
                finally:
                    replies.drain()  # the connection stays in step, whatever ``use`` read or raised
            except redis.exceptions.NoScriptError:
                pass
            except redis.ConnectionError as exc:
                if reconnected or replies.read:  # some commands ran: sending them again could repeat them
                    raise DependencyUnavailableError(f"{self._what} unavailable: {exc}") from exc
                reconnected = True  # a connection Redis closed: redis-py reopens it on this next send
                continue
            except redis.RedisError as exc:
                raise DependencyUnavailableError(f"{self._what} unavailable: {exc}") from exc
            else:
                if not replies.lost_script:
                    return result
            if load is None or reloaded:
                raise DependencyUnavailableError(f"{self._what} keeps refusing its scripts after loading them")
            load()
            reloaded = True


def resp(*args: bytes) -> bytes:
    """Arguments of a command in Redis's protocol (RESP), for a caller that builds a command's bytes itself: a part
    that never changes (a long list of hash fields, say) is encoded once, and a command costs a concatenation."""
    return b"".join([b"$%d\r\n%b\r\n" % (len(arg), arg) for arg in args])


def command_head(count: int) -> bytes:
    """The start of a RESP command of ``count`` arguments, the command's name included; its arguments follow."""
    return b"*%d\r\n" % count


def _send(conn: AbstractConnection, commands: Sequence[Command]) -> None:
    """Pack ``commands`` and write them, ``SEND_BYTES`` or so at a time. A ``bytes`` command is already in Redis's
    protocol (``resp``) and goes as it is; the others are packed by redis-py (hiredis), each when its turn comes,
    so a command whose arguments are built as it is iterated is built only once those before it are on their way.

    The health check (a PING, for a connection idle longer than the client's ``health_check_interval``) may run
    before the first write only: one between two writes would read a reply to the commands already sent."""
    out: list[bytes] = []
    size = 0
    first = True
    for command in commands:
        if command.__class__ is bytes:
            out.append(command)  # type: ignore[arg-type]
            size += len(command)
        else:
            for chunk in conn.pack_command(*command):
                out.append(chunk)
                size += len(chunk)
        if size >= SEND_BYTES:
            conn.send_packed_command([b"".join(out)], check_health=first)
            out, size, first = [], 0, False
    if out:
        conn.send_packed_command([b"".join(out)], check_health=first)


def _answered_within(conn: AbstractConnection, seconds: float, idle: Callable[[], bool] | None = None) -> bool:
    """Whether Redis answers on ``conn`` within ``seconds``, watched without sleeping (``poll`` with no timeout,
    again and again). On a virtual machine a process that sleeps in ``epoll`` and is woken by the answer often
    runs again only 100-400 µs later, several times the answer's own time for one transaction.

    Between two looks, ``idle()`` does a piece of work that would otherwise cost another thread the GIL (the
    decision log's serializing: ``DecisionLog.serialize_next``, tens of µs a micro-batch), until it answers False
    (nothing left). A piece delays seeing the answer by at most its own time."""
    sock = conn._sock
    if sock is None:
        return False
    watch = select.poll()
    watch.register(sock.fileno(), select.POLLIN)
    deadline = time.perf_counter() + seconds
    while True:
        if watch.poll(0):
            return True
        if time.perf_counter() > deadline:
            return False
        if idle is not None and not idle():
            idle = None


async def _readable(conn: AbstractConnection) -> None:
    """Wait until Redis has answered on ``conn`` (its socket is readable), or for the connection's timeout: past
    it, the synchronous read that follows waits its own timeout and fails the way it always does."""
    sock = conn._sock  # redis-py keeps the socket here; the reads stay its own
    if sock is None:
        return
    loop = asyncio.get_running_loop()
    answered = loop.create_future()

    def wake() -> None:
        if not answered.done():
            answered.set_result(None)

    fd = sock.fileno()
    loop.add_reader(fd, wake)
    timer = loop.call_later(conn.socket_timeout or 5.0, wake)
    try:
        await answered
    finally:
        loop.remove_reader(fd)
        timer.cancel()


class Replies:
    """The replies to one exchange, read from the socket as they are asked for; errors are replies. ``ready``
    says whether the next one is there already.

    A reply the socket has already brought (a read brings up to 64 KB: dozens of a large batch's replies) is taken
    straight from redis-py's hiredis reader, as its ``read_response`` would take it: 1,850 replies of stored
    features cost 1.0-1.8 ms here, against 2.3-4.2 ms through ``read_response`` (its error wrappers, the host
    name formatted and the health-check clock read for every reply). A reply not yet read from the socket, or any
    other parser or protocol, goes through ``read_response``, which reads the socket and handles its errors."""

    def __init__(self, conn: AbstractConnection, count: int) -> None:
        self.conn = conn
        self.left = count
        self.read = 0
        self.lost_script = False
        self.broken = False
        parser = conn._parser
        fast = _HiredisParser is not None and type(parser) is _HiredisParser and str(conn.protocol) == "2"
        self._parser: Any = parser if fast else None

    def __iter__(self) -> Replies:
        return self

    def __next__(self) -> Any:
        if self.left == 0 or self.broken:
            raise StopIteration
        reply = NOT_ENOUGH_DATA
        parser = self._parser
        if parser is not None and parser._reader is not None and parser._next_response is NOT_ENOUGH_DATA:
            reply = parser._reader.gets()
        if reply is NOT_ENOUGH_DATA:
            reply = self._read()
        elif isinstance(reply, redis.ResponseError):
            self.lost_script = self.lost_script or isinstance(reply, redis.exceptions.NoScriptError)
        elif isinstance(reply, redis.ConnectionError) or (
            reply.__class__ is list and reply and isinstance(reply[0], redis.ConnectionError)
        ):
            self.broken = True  # as redis-py does with such a reply: the connection is closed, the error raised
            self.conn.disconnect()
            raise reply if isinstance(reply, redis.ConnectionError) else reply[0]
        self.left -= 1
        self.read += 1
        return reply

    def _read(self) -> Any:
        try:
            return self.conn.read_response()
        except redis.ResponseError as exc:  # the reply was read whole; the connection is in step
            self.lost_script = self.lost_script or isinstance(exc, redis.exceptions.NoScriptError)
            return exc
        except redis.RedisError:
            self.broken = True  # redis-py has closed the connection
            raise

    def ready(self) -> bool:
        """Whether a reply is left and has come (or begun to): reading it now would not wait for Redis."""
        if self.left == 0 or self.broken:
            return False
        try:
            return bool(self.conn.can_read(timeout=0))
        except redis.RedisError:
            self.broken = True  # redis-py has closed the connection
            raise

    def drain(self) -> None:
        for _ in self:
            pass
