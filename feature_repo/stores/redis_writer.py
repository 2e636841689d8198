"""Writing Arrow batches of one feature view into Redis, in Feast's layout and with Feast's write rules.

The rules are ``RedisOnlineStore.online_write_batch``'s: a row is skipped when the entity already holds a value of
this view at the same or a later event time (a stored time at or before 1970 counts as none), unless
``skip_dedup`` is set; a written row replaces the view's fields in the entity's hash; ``key_ttl_seconds`` re-arms
the key's expiry on every write. Re-running a load is therefore a no-op, and resuming an interrupted one writes
only what is missing or newer. As in stock, the read and the write are not one atomic step.

Stock builds two commands per row from Python objects and sends a whole materialization as one pipeline. Here
a batch arrives encoded as Arrow columns (``redis_format``) and becomes one buffer of ``HSET`` (and ``EXPIRE``)
commands (``redis_commands``). ``EXISTS`` over the batch's keys (one command per chunk, built the same way) tells
whether any of them is there at all, so a first load skips the per-key read; otherwise stored timestamps are read
a chunk per Lua call and compared here. The winning rows go out in pipelined chunks whose replies hiredis parses
in bulk. Plain ``HSET`` costs Redis about a third of the same write issued from a Lua script, and Redis is what a
load waits for. A single worker thread owns the connection and writes the batches in order while the next ones
are encoded; at most ``BATCHES_IN_FLIGHT`` wait for it, so memory stays bounded and Redis keeps working while
DuckDB sorts the next part of the source.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager

import hiredis
import numpy as np
import pyarrow as pa
from feast import FeatureView, RepoConfig
from feast.infra.online_stores.helpers import compute_versioned_name
from feast.infra.online_stores.redis import RedisOnlineStore, RedisOnlineStoreConfig, RedisType
from feast.value_type import ValueType
from google.protobuf.timestamp_pb2 import Timestamp
from redis import Redis
from redis.connection import Connection
from redis.exceptions import ResponseError

from feature_repo.stores import redis_commands, redis_format

_READ_TIMESTAMPS = """
local out = {}
for i = 1, #KEYS do out[i] = redis.call('HGET', KEYS[i], ARGV[1]) end
return out
"""

CHUNK_ROWS = 5_000  # rows per round trip: big enough to amortize it, small enough to keep Redis responsive
BATCHES_IN_FLIGHT = 4  # encoded batches waiting for the writer thread (a 50k-row batch is about 15 MB)


def open_writer(
    store: RedisOnlineStore, config: RepoConfig, view: FeatureView, progress: Callable[[int], object] | None = None
) -> ArrowRowWriter | None:
    """A writer for ``view`` into ``store`` (Feast's Redis store or a subclass), configured as the store is.

    None for Redis Cluster, where one Lua call may only touch keys of a single slot: stock's path handles it.
    """
    settings = config.online_store
    if not isinstance(settings, RedisOnlineStoreConfig) or settings.redis_type == RedisType.redis_cluster:
        return None
    return ArrowRowWriter(
        client=store._get_client(settings),  # the store's own connection, as its online_write_batch uses
        project=config.project,
        view_name=compute_versioned_name(view, config.registry.enable_online_feature_view_versioning),
        join_keys={entity.name: entity.dtype.to_value_type() for entity in view.entity_columns},
        features=[(feature.name, feature.dtype.to_value_type()) for feature in view.features],
        timestamp_column=view.batch_source.timestamp_field,
        key_ttl_seconds=settings.key_ttl_seconds,
        skip_dedup=settings.skip_dedup,
        progress=progress,
    )


class ArrowRowWriter:
    """Encodes record batches of one feature view and writes them; use as a context manager."""

    def __init__(
        self,
        client: Redis,
        project: str,
        view_name: str,
        join_keys: dict[str, ValueType],
        features: list[tuple[str, ValueType]],
        timestamp_column: str,
        key_ttl_seconds: int | None,
        skip_dedup: bool,
        progress: Callable[[int], object] | None = None,
    ) -> None:
        self._client = client
        self._project = project
        self._join_keys = join_keys
        self._features = features
        self._timestamp_column = timestamp_column
        self._fields = [f"_ts:{view_name}".encode()] + [redis_format.field_name(view_name, f) for f, _ in features]
        self._ttl = int(key_ttl_seconds or 0)
        self._skip_dedup = skip_dedup
        self._progress = progress
        self._read = client.register_script(_READ_TIMESTAMPS)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="redis-writer")
        self._pending: deque[Future[int]] = deque()
        self.rows_written = 0

    def __enter__(self) -> ArrowRowWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            if exc_info[0] is None:
                self.flush()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def write(self, batch: pa.RecordBatch) -> None:
        """Encode ``batch`` now; it is sent after the batches before it, and this waits while too many are queued."""
        if batch.num_rows == 0:
            return
        keys = redis_format.entity_keys(batch, self._join_keys, self._project)
        stamps, nanos = redis_format.timestamps(batch.column(self._timestamp_column))
        values = [redis_format.feature_values(batch.column(name), kind) for name, kind in self._features]
        hsets = redis_commands.hset_commands(keys, self._fields, [stamps, *values])
        expires = redis_commands.expire_commands(keys, self._ttl) if self._ttl else None
        while len(self._pending) >= BATCHES_IN_FLIGHT:
            self.rows_written += self._pending.popleft().result()
        dedup_keys = None if self._skip_dedup else keys
        self._pending.append(self._pool.submit(self._send, batch.num_rows, dedup_keys, nanos, hsets, expires))

    def flush(self) -> None:
        """Wait for the batches in flight; raises what the first failing one raised."""
        while self._pending:
            self.rows_written += self._pending.popleft().result()

    def _send(
        self,
        count: int,
        keys: pa.BinaryArray | None,
        nanos: np.ndarray,
        hsets: pa.BinaryArray,
        expires: pa.BinaryArray | None,
    ) -> int:
        """Write the winning rows of one batch and return how many there were. Chunks are pipelined one deep:
        the next chunk's bytes are cut while Redis runs the previous one."""
        pending = 0
        with self._connection() as connection:
            rows = range(count) if keys is None else self._winners(connection, keys, nanos)
            for start in range(0, len(rows), CHUNK_ROWS):
                chunk = rows[start : start + CHUNK_ROWS]
                payload = [redis_commands.wire_bytes(hsets, chunk)]
                if expires is not None:  # after the HSETs: an EXPIRE on a key not yet created would do nothing
                    payload.append(redis_commands.wire_bytes(expires, chunk))
                if pending:
                    _read_replies(connection, pending)
                connection.send_packed_command(payload)
                pending = len(chunk) * len(payload)
            if pending:
                _read_replies(connection, pending)
        if self._progress:
            self._progress(count)
        return len(rows)

    def _winners(self, connection: Connection, keys: pa.BinaryArray, nanos: np.ndarray) -> range | np.ndarray:
        """Rows whose event time is later than what Redis holds, compared as Feast compares. ``EXISTS`` over
        the batch settles a first load; otherwise stored timestamps are read a chunk per Lua call."""
        arguments = redis_commands.bulk_strings(keys)
        chunks = [range(start, min(start + CHUNK_ROWS, len(keys))) for start in range(0, len(keys), CHUNK_ROWS)]
        # a command per chunk, pipelined: other clients get served between them
        connection.send_packed_command(
            [piece for c in chunks for piece in redis_commands.command(b"EXISTS", arguments, c)]
        )
        if not any(_read_replies(connection, len(chunks))):
            return range(len(keys))
        key_list = keys.to_pylist()
        latest = np.zeros(len(key_list), dtype=np.int64)
        for start in range(0, len(key_list), CHUNK_ROWS):
            held = self._read(keys=key_list[start : start + CHUNK_ROWS], args=[self._fields[0]])
            for i, raw in enumerate(held, start):
                if raw:
                    stored = Timestamp.FromString(raw)
                    latest[i] = max(stored.seconds * 1_000_000_000 + stored.nanos, 0)
        keep = np.flatnonzero((latest == 0) | (nanos > latest))
        return range(len(keys)) if len(keep) == len(keys) else keep

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        """A connection of the store's pool for this batch; on any failure it is closed, not reused."""
        pool = self._client.connection_pool
        connection = pool.get_connection()
        try:
            yield connection
        except BaseException:
            connection.disconnect()
            raise
        finally:
            pool.release(connection)


def _read_replies(connection: Connection, count: int) -> list[object]:
    """Read ``count`` replies and return them, raising the first error reply.

    redis-py parses one reply per Python call (about 2 µs each, more than Redis spends on the HSET), so the
    replies are parsed in bulk by hiredis straight from the connection's socket. Only this writer uses the
    connection between a send and its replies, so no reply can be meant for anyone else. Without that socket
    (another connection class), redis-py reads them one by one.
    """
    sock = getattr(connection, "_sock", None)
    if sock is None:
        return [connection.read_response() for _ in range(count)]
    reader = hiredis.Reader()
    replies: list[object] = []
    while len(replies) < count:
        data = sock.recv(1 << 16)
        if not data:
            raise ConnectionError("Redis closed the connection while replies were pending")
        reader.feed(data)
        while len(replies) < count and (reply := reader.gets()) is not False:
            if isinstance(reply, hiredis.ReplyError):
                raise ResponseError(str(reply))
            replies.append(reply)
    return replies
