"""Writing Arrow batches of one feature view into Redis, in Feast's layout and with Feast's write rules.

The rules are ``RedisOnlineStore.online_write_batch``'s: a row is skipped when the entity already holds a value of
this view at the same or a later event time (unless ``skip_dedup`` is set), a written row replaces the view's
fields in the entity's hash, and ``key_ttl_seconds`` re-arms the key's expiry on every write. Re-running a load is
therefore a no-op, and resuming an interrupted one writes only what is missing or newer.

Stock pays two Python-built commands per row. Here each chunk costs two Lua calls (read the stored timestamps,
then write the rows that win), which Redis runs while the next batch is being encoded in this process: a single
worker thread owns the connection, and at most one chunk waits for it, so memory stays bounded.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import chain

import numpy as np
import pyarrow as pa
from feast import FeatureView, RepoConfig
from feast.infra.online_stores.helpers import compute_versioned_name
from feast.infra.online_stores.redis import RedisOnlineStore, RedisOnlineStoreConfig, RedisType
from feast.value_type import ValueType
from google.protobuf.timestamp_pb2 import Timestamp
from redis import Redis

from feature_repo.stores import redis_format

_READ_TIMESTAMPS = """
local out = {}
for i = 1, #KEYS do out[i] = redis.call('HGET', KEYS[i], ARGV[1]) end
return out
"""

# Decodes a serialized google.protobuf.Timestamp into seconds and nanos; nil when that needs more than 7 varint
# bytes per field (negative seconds or years past 4 million), which Python then settles exactly.
_DECODE_TIMESTAMP = """
local function decode(s)
  local secs, nanos, i, size = 0, 0, 1, #s
  while i <= size do
    local tag = string.byte(s, i)
    i = i + 1
    local value, scale, count, b = 0, 1, 0, 0
    repeat
      b = string.byte(s, i)
      i = i + 1
      count = count + 1
      if b == nil or count > 7 then return nil end
      value = value + (b % 128) * scale
      scale = scale * 128
    until b < 128
    if tag == 8 then secs = value elseif tag == 16 then nanos = value else return nil end
  end
  return secs, nanos
end
"""


def _write_script(fields: int, check: bool) -> str:
    """Lua that writes each key's ``fields`` values (ARGV: TTL, field names, then the values key by key).

    With ``check``, a key is skipped when it already holds this view at the same or a later event time, and a
    stored time at or before 1970 counts as none, as in ``RedisOnlineStore.online_write_batch``. Keys it cannot
    judge come back (1-based) for Python to settle. The HSET arguments are spelled out, which Redis runs
    markedly faster than ``unpack``.
    """
    pairs = ", ".join(f"ARGV[{1 + j}], ARGV[o + {j}]" for j in range(1, fields + 1))
    write = f"redis.call('HSET', KEYS[i], {pairs}) if ttl > 0 then redis.call('EXPIRE', KEYS[i], ttl) end"
    if not check:
        body = write
    else:
        body = f"""local held = redis.call('HGET', KEYS[i], ARGV[2])
    if not held then {write} else
      local hs, hn = decode(held)
      local ns, nn = decode(ARGV[o + 1])
      if hs == nil or ns == nil then undecided[#undecided + 1] = i
      elseif (hs > 0 or (hs == 0 and hn > 0)) and (ns < hs or (ns == hs and nn <= hn)) then skipped = skipped + 1
      else {write} end
    end"""
    return f"""{_DECODE_TIMESTAMP if check else ""}
local ttl = tonumber(ARGV[1])
local undecided, skipped = {{}}, 0
for i = 1, #KEYS do
  local o = 1 + {fields} + (i - 1) * {fields}
  {body}
end
return {{skipped, undecided}}
"""


CHUNK_ROWS = 2_000  # rows per Lua call: Redis serves other clients between calls, so keep each one short


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
        self._write = client.register_script(_write_script(len(self._fields), check=not skip_dedup))
        self._overwrite = client.register_script(_write_script(len(self._fields), check=False))
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="redis-writer")
        self._pending: Future[int] | None = None
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
        """Encode ``batch`` now; send it once the previous batch has gone out."""
        if batch.num_rows == 0:
            return
        keys = redis_format.entity_keys(batch, self._join_keys, self._project)
        stamps, nanos = redis_format.timestamps(batch.column(self._timestamp_column))
        columns = [redis_format.feature_values(batch.column(name), kind) for name, kind in self._features]
        self.flush()
        self._pending = self._pool.submit(self._send, keys, stamps, nanos, columns)

    def flush(self) -> None:
        """Wait for the batch in flight; raises what it raised."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self.rows_written += pending.result()

    def _send(self, keys: list[bytes], stamps: list[bytes], nanos: np.ndarray, columns: list[list[bytes]]) -> int:
        """One pipeline of Lua calls, a chunk each, so Redis runs them back to back; returns rows written."""
        starts = range(0, len(keys), CHUNK_ROWS)
        with self._client.pipeline(transaction=False) as pipe:
            for start in starts:
                end = min(start + CHUNK_ROWS, len(keys))
                args: list[object] = [self._ttl, *self._fields]
                args.extend(chain.from_iterable(zip(stamps[start:end], *(c[start:end] for c in columns), strict=True)))
                self._write(keys=keys[start:end], args=args, client=pipe)
            replies = pipe.execute()
        written = 0
        for start, (skipped, undecided) in zip(starts, replies, strict=True):
            end = min(start + CHUNK_ROWS, len(keys))
            written += end - start - skipped - len(undecided)
            if undecided:
                written += self._settle([start + int(i) - 1 for i in undecided], keys, stamps, nanos, columns)
        if self._progress:
            self._progress(len(keys))
        return written

    def _settle(
        self, rows: list[int], keys: list[bytes], stamps: list[bytes], nanos: np.ndarray, columns: list[list[bytes]]
    ) -> int:
        """Decide in Python, exactly as Feast does, the rows whose stored or new time Lua could not decode."""
        held = self._read(keys=[keys[i] for i in rows], args=[self._fields[0]])
        winners = []
        for row, raw in zip(rows, held, strict=True):
            latest = 0
            if raw:
                stored = Timestamp.FromString(raw)
                latest = max(stored.seconds * 1_000_000_000 + stored.nanos, 0)  # Feast: <= 1970 counts as unset
            if not latest or nanos[row] > latest:
                winners.append(row)
        if winners:
            args: list[object] = [self._ttl, *self._fields]
            args.extend(chain.from_iterable([stamps[i], *(c[i] for c in columns)] for i in winners))
            self._overwrite(keys=[keys[i] for i in winners], args=args)
        return len(winners)
