"""The scoring path's Redis channel, against a real redis-server of the test's own (it is restarted here)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from itertools import islice
from typing import Any

import pytest
import redis

from serving.pipeline_calls import Channel, Replies, _answered_within, command_head, resp
from skewless.errors import DependencyUnavailableError
from tests.serving.conftest import RedisProcess, _free_port

pytestmark = pytest.mark.integration

ECHO = "return ARGV[1]"
# Redis computes for a while (tens of ms here) before it answers.
SLOW_ECHO = "local i = 0 while i < tonumber(ARGV[2]) do i = i + 1 end return ARGV[1]"


@pytest.fixture
def server() -> Iterator[RedisProcess]:
    process = RedisProcess(_free_port())
    process.start()
    yield process
    process.stop()


def _client(server: RedisProcess) -> redis.Redis:
    return redis.Redis.from_url(server.url, socket_connect_timeout=0.5, socket_timeout=2)


def test_replies_in_order_with_errors_as_replies(server: RedisProcess) -> None:
    client = _client(server)
    client.set("text", "x")
    channel = Channel(client, "test store")
    replies = channel.send([("SET", "a", 1), ("INCR", "text"), ("GET", "a"), ("HGET", "missing", "f")])
    assert replies[0] is True or replies[0] == b"OK"
    assert isinstance(replies[1], redis.ResponseError) and "not an integer" in str(replies[1])
    assert replies[2:] == [b"1", None]


def test_commands_already_in_redis_protocol_go_as_they_are_among_the_others(server: RedisProcess) -> None:
    channel = Channel(_client(server), "test store")
    big = b"x" * 70_000  # over hiredis's and redis-py's buffer sizes
    replies = channel.send(
        [
            command_head(3) + resp(b"SET", b"k", b"v\r\n"),
            ("GET", "k"),
            command_head(2) + resp(b"ECHO", big),
            ("ECHO", "after"),
        ]
    )
    assert replies[0] is True or replies[0] == b"OK"
    assert replies[1:] == [b"v\r\n", big, b"after"]


def test_ready_says_whether_the_next_reply_has_come_and_loses_none(server: RedisProcess) -> None:
    client = _client(server)
    client.set("text", "x")
    sha = client.script_load(SLOW_ECHO)
    channel = Channel(client, "test store")

    def until_ready(replies: Replies) -> None:
        deadline = time.monotonic() + 5
        while not replies.ready():
            assert time.monotonic() < deadline, "Redis did not answer"

    def use(replies: Replies) -> list[Any]:
        assert not replies.ready()  # Redis is still in the slow script (tens of ms here)
        until_ready(replies)
        got = [next(replies)]
        assert replies.ready()  # Redis writes a pipeline's replies together: the others came with it
        got.append(next(replies))  # an error reply, held by ready(), is still the next reply
        got.append(next(replies))
        assert not replies.ready()  # none left
        return got

    commands = [("EVALSHA", sha, 0, "b", 2_000_000), ("INCR", "text"), ("ECHO", "a")]
    slow, error, last = channel.exchange(commands, use, None)
    assert (slow, last) == (b"b", b"a")
    assert isinstance(error, redis.ResponseError) and "not an integer" in str(error)
    assert channel.send([("ECHO", "next")]) == [b"next"]


def test_a_partly_read_or_failed_use_leaves_the_connection_in_step(server: RedisProcess) -> None:
    channel = Channel(_client(server), "test store")
    commands = [("ECHO", str(i)) for i in range(50)]
    assert channel.exchange(commands, lambda replies: next(replies), None) == b"0"

    def fails(replies: Iterator[Any]) -> None:
        list(islice(replies, 3))
        raise ValueError("the caller's own mistake")

    with pytest.raises(ValueError, match="own mistake"):
        channel.exchange(commands, fails, None)
    assert channel.send([("ECHO", "next")]) == [b"next"]  # not a leftover reply of the calls above


def test_a_lost_script_is_loaded_and_the_batch_sent_again(server: RedisProcess) -> None:
    client = _client(server)
    sha = client.script_load(ECHO)
    channel = Channel(client, "test store")
    loads: list[int] = []
    seen: list[list[Any]] = []

    def use(replies: Iterator[Any]) -> list[Any]:
        seen.append(list(replies))
        return seen[-1]

    client.script_flush()
    got = channel.exchange(
        [("EVALSHA", sha, 0, "a"), ("ECHO", "b")], use, lambda: loads.append(client.script_load(ECHO) and 1)
    )
    assert got == [b"a", b"b"] and len(loads) == 1 and len(seen) == 2
    assert isinstance(seen[0][0], redis.exceptions.NoScriptError)

    with pytest.raises(DependencyUnavailableError, match="keeps refusing its scripts"):
        channel.send([("EVALSHA", "0" * 40, 0)], load=lambda: None)


def test_replies_already_read_from_the_socket_skip_read_response_and_keep_their_errors(server: RedisProcess) -> None:
    """A pipeline's replies come in a few socket reads; those already buffered are taken from hiredis's reader
    directly, errors (a lost script among them) still in place as replies."""
    client = _client(server)
    sha = client.script_load(ECHO)
    channel = Channel(client, "test store")
    loads: list[int] = []
    seen: list[list[Any]] = []
    calls = {"read_response": 0}

    def use(replies: Replies) -> list[Any]:
        conn = replies.conn
        original = conn.read_response

        def counted(*args: Any, **kwargs: Any) -> Any:
            calls["read_response"] += 1
            return original(*args, **kwargs)

        conn.read_response = counted  # type: ignore[method-assign]
        try:
            seen.append(list(replies))
        finally:
            del conn.read_response
        return seen[-1]

    client.set("text", "x")
    client.script_flush()
    commands = [("ECHO", str(i)) for i in range(200)]
    commands[100:100] = [("EVALSHA", sha, 0, "s"), ("INCR", "text")]
    got = channel.exchange(commands, use, lambda: loads.append(client.script_load(ECHO) and 1))
    first = seen[0]
    assert isinstance(first[100], redis.exceptions.NoScriptError) and len(loads) == 1, "lost, loaded, sent again"
    assert isinstance(first[101], redis.ResponseError) and "not an integer" in str(first[101])
    assert got[100] == b"s" and isinstance(got[101], redis.ResponseError)
    assert [r for i, r in enumerate(got) if i not in (100, 101)] == [str(i).encode() for i in range(200)]
    assert calls["read_response"] < len(commands) // 4, "most replies came from the buffer"
    assert channel.send([("ECHO", "next")]) == [b"next"]


def test_a_restarted_redis_is_reached_again_without_an_error(server: RedisProcess) -> None:
    channel = Channel(_client(server), "test store")
    assert channel.send([("SET", "k", "before")])
    server.stop()
    with pytest.raises(DependencyUnavailableError, match="test store unavailable"):
        channel.send([("GET", "k")])
    server.start()
    assert channel.send([("SET", "k", "after"), ("GET", "k")])[1] == b"after"
    server.stop()
    server.start()  # the connection held since the last call is dead; the next call reopens it
    assert channel.send([("GET", "k")]) == [None]


def test_threads_have_connections_of_their_own(server: RedisProcess) -> None:
    channel = Channel(_client(server), "test store")
    errors: list[str] = []

    def work(name: str) -> None:
        for i in range(300):
            commands = [("ECHO", f"{name}-{i}-{j}") for j in range(5)]
            got = channel.send(commands)
            if got != [c[1].encode() for c in commands]:
                errors.append(f"{name} {i}: {got}")

    threads = [threading.Thread(target=work, args=(f"t{k}",)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_the_async_exchange_leaves_the_loop_free_while_redis_computes(server: RedisProcess) -> None:
    client = _client(server)
    sha = client.script_load(SLOW_ECHO)
    channel = Channel(client, "test store")
    commands = [("EVALSHA", sha, 0, f"r{i}", 2_000_000) for i in range(3)] + [("ECHO", "last")]

    async def main() -> tuple[list[Any], int]:
        ticks = 0
        exchange = asyncio.ensure_future(channel.exchange_async(commands, list, None))
        while not exchange.done():
            ticks += 1
            await asyncio.sleep(0.001)
        return exchange.result(), ticks

    replies, ticks = asyncio.run(main())
    assert replies == [b"r0", b"r1", b"r2", b"last"]
    assert ticks >= 5  # the loop ran other work while Redis computed, where a blocking read would have held it

    async def blocking() -> int:  # the same scripts through the synchronous exchange: the loop is held
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.001)

        ticker = asyncio.ensure_future(tick())
        await asyncio.sleep(0)
        before = ticks
        channel.exchange(commands, list, None)
        held = ticks - before
        ticker.cancel()
        return held

    assert asyncio.run(blocking()) == 0


def test_a_lone_caller_watches_for_the_answer_then_gives_the_loop_the_wait(server: RedisProcess) -> None:
    client = _client(server)
    channel = Channel(client, "test store")
    conn = channel._connection()
    assert not _answered_within(conn, 0.01)  # nothing asked: nothing comes, and the watch ends
    conn.send_command("PING")
    assert _answered_within(conn, 5.0)
    assert conn.read_response() in (b"PONG", "PONG", True)

    sha = client.script_load(SLOW_ECHO)
    slow = [("EVALSHA", sha, 0, f"r{i}", 2_000_000) for i in range(3)] + [("ECHO", "last")]

    async def main() -> tuple[list[Any], list[Any], int]:
        quick = await channel.exchange_async([("ECHO", "a"), ("ECHO", "b")], list, None, spin_s=0.5)
        ticks = 0
        exchange = asyncio.ensure_future(channel.exchange_async(slow, list, None, spin_s=0.001))
        while not exchange.done():
            ticks += 1
            await asyncio.sleep(0.001)
        return quick, exchange.result(), ticks

    quick, replies, ticks = asyncio.run(main())
    assert quick == [b"a", b"b"] and replies == [b"r0", b"r1", b"r2", b"last"]
    assert ticks >= 5  # past its short watch, the wait went to the loop


def test_the_watch_does_idle_work_between_looks_until_there_is_none(server: RedisProcess) -> None:
    client = _client(server)
    conn = Channel(client, "test store")._connection()
    pieces: list[int] = []

    def idle() -> bool:
        pieces.append(len(pieces))
        return len(pieces) < 3  # three pieces of work, then nothing left

    assert not _answered_within(conn, 0.02, idle)  # nothing asked: the watch ends, the work done meanwhile
    assert pieces == [0, 1, 2]
    sha = client.script_load(SLOW_ECHO)
    conn.send_command("EVALSHA", sha, 0, "late", 2_000_000)  # Redis answers after milliseconds of looping
    assert _answered_within(conn, 5.0, lambda: pieces.append(-1) or True)  # never out of work, still sees it
    assert conn.read_response() == b"late" and pieces.count(-1) > 3


def test_the_async_exchange_reloads_scripts_and_reconnects(server: RedisProcess) -> None:
    client = _client(server)
    sha = client.script_load(ECHO)
    channel = Channel(client, "test store")
    loads: list[str] = []
    assert asyncio.run(channel.exchange_async([("EVALSHA", sha, 0, "a")], list, None)) == [b"a"]
    client.script_flush()
    got = asyncio.run(
        channel.exchange_async([("EVALSHA", sha, 0, "b")], list, lambda: loads.append(client.script_load(ECHO)))
    )
    assert got == [b"b"] and loads == [sha]
    server.stop()
    server.start()  # the held connection is dead, and the scripts are gone
    got = asyncio.run(
        channel.exchange_async([("EVALSHA", sha, 0, "c")], list, lambda: loads.append(client.script_load(ECHO)))
    )
    assert got == [b"c"] and len(loads) == 2
    server.stop()
    with pytest.raises(DependencyUnavailableError, match="test store unavailable"):
        asyncio.run(channel.exchange_async([("ECHO", "d")], list, None))
    server.start()
    assert asyncio.run(channel.exchange_async([("ECHO", "e")], list, None)) == [b"e"]


def test_a_cancelled_async_exchange_leaves_no_reply_behind(server: RedisProcess) -> None:
    client = _client(server)
    sha = client.script_load(SLOW_ECHO)
    channel = Channel(client, "test store")

    async def main() -> None:
        exchange = asyncio.ensure_future(channel.exchange_async([("EVALSHA", sha, 0, "late", 3_000_000)], list, None))
        await asyncio.sleep(0.005)
        exchange.cancel()
        with pytest.raises(asyncio.CancelledError):
            await exchange

    asyncio.run(main())
    # The late reply went with the closed connection; the next exchange reads its own.
    assert channel.send([("ECHO", "next")]) == [b"next"]
    assert asyncio.run(channel.exchange_async([("ECHO", "again")], list, None)) == [b"again"]
