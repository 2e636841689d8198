"""Redis commands for a whole batch of rows, as the bytes Redis reads, built column-wise with Arrow.

A pipeline of ``HSET`` commands is what stock's ``online_write_batch`` sends too; building it with
``hiredis.pack_command`` costs a Python call, a tuple and a bytes object per row, which at a few microseconds is
more than Redis spends running the command. A request is an array of bulk strings (``*<n>\\r\\n`` then
``$<len>\\r\\n<bytes>\\r\\n`` per argument, the RESP2 request format every Redis speaks), so the commands for
a batch are one element-wise concatenation of Arrow columns, and a chunk of them is a slice of one buffer, sent
as is. ``tests/feature_repo/test_redis_commands.py`` checks the bytes against ``hiredis.pack_command``.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_CRLF = pa.scalar(b"\r\n", pa.binary())


def hset_commands(keys: pa.BinaryArray, fields: list[bytes], values: list[pa.BinaryArray]) -> pa.BinaryArray:
    """Per row: ``HSET key field_1 value_1 ... field_n value_n``."""
    head = b"*%d\r\n" % (2 + 2 * len(fields)) + _bulk_bytes(b"HSET")
    parts: list[pa.Array | pa.Scalar] = [pa.scalar(head, pa.binary()), *_bulk(keys)]
    for field, column in zip(fields, values, strict=True):
        parts += [pa.scalar(_bulk_bytes(field), pa.binary()), *_bulk(column)]
    return pc.binary_join_element_wise(*parts, b"")


def expire_commands(keys: pa.BinaryArray, seconds: int) -> pa.BinaryArray:
    """Per row: ``EXPIRE key seconds``."""
    head = pa.scalar(b"*3\r\n" + _bulk_bytes(b"EXPIRE"), pa.binary())
    tail = pa.scalar(_bulk_bytes(str(int(seconds)).encode()), pa.binary())
    return pc.binary_join_element_wise(head, *_bulk(keys), tail, b"")


def wire_bytes(commands: pa.BinaryArray, rows: range | np.ndarray) -> memoryview:
    """The bytes of ``commands[rows]`` back to back, without copying when ``rows`` is a contiguous range."""
    if not isinstance(rows, range):
        commands = commands.take(pa.array(rows, pa.int64()))
        rows = range(len(commands))
    offsets, data = commands.buffers()[1], commands.buffers()[2]
    bounds = np.frombuffer(offsets, dtype=np.int32, count=len(commands) + 1, offset=commands.offset * 4)
    return memoryview(data)[int(bounds[rows.start]) : int(bounds[rows.stop])]


def _bulk(values: pa.BinaryArray) -> list[pa.Array | pa.Scalar]:
    lengths = pc.cast(pc.binary_length(values), pa.string()).cast(pa.binary())
    header = pc.binary_join_element_wise(pa.scalar(b"$", pa.binary()), lengths, _CRLF, b"")
    return [header, values, _CRLF]


def _bulk_bytes(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)
