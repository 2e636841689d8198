"""Redis commands for a whole batch of rows, as the bytes Redis reads, built column-wise with Arrow.

A pipeline of ``HSET`` commands is what stock's ``online_write_batch`` sends too; building it with
``hiredis.pack_command`` costs a Python call, a tuple and a bytes object per row, which at a few microseconds is
more than Redis spends running the command. A request is an array of bulk strings (``*<n>\\r\\n`` then
``$<len>\\r\\n<bytes>\\r\\n`` per argument, the RESP2 request format every Redis speaks), so the commands for
a batch are one element-wise concatenation of Arrow columns, and a chunk of them is a slice of one buffer, sent
as is. The ``$<len>\\r\\n`` headers are taken from a table of them by length (formatting a number per value
cost more than the rest), and the constant pieces between two values are one piece, so one join builds the
batch. ``tests/feature_repo/test_redis_commands.py`` checks the bytes against ``hiredis.pack_command``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_CRLF = b"\r\n"
_TABLE_LIMIT = 1 << 16  # longest value whose header comes from the table; longer ones format their length


def hset_commands(keys: pa.BinaryArray, fields: list[bytes], values: list[pa.BinaryArray]) -> pa.BinaryArray:
    """Per row: ``HSET key field_1 value_1 ... field_n value_n``."""
    head = b"*%d\r\n" % (2 + 2 * len(fields)) + _bulk_bytes(b"HSET")
    between = [_CRLF + _bulk_bytes(field) for field in fields]  # end of one argument, then the next field
    return _join([head, *between, _CRLF], [keys, *values])


def expire_commands(keys: pa.BinaryArray, seconds: int) -> pa.BinaryArray:
    """Per row: ``EXPIRE key seconds``."""
    return _join([b"*3\r\n" + _bulk_bytes(b"EXPIRE"), _CRLF + _bulk_bytes(str(int(seconds)).encode())], [keys])


def bulk_strings(values: pa.BinaryArray) -> pa.BinaryArray:
    """Per row: the value as one command argument (a bulk string)."""
    return _join([b"", _CRLF], [values])


def command(name: bytes, arguments: pa.BinaryArray, rows: range) -> list[bytes | memoryview]:
    """``name`` with ``arguments[rows]`` (from ``bulk_strings``) as its arguments, in pieces to send as they are."""
    return [b"*%d\r\n" % (len(rows) + 1) + _bulk_bytes(name), wire_bytes(arguments, rows)]


def wire_bytes(commands: pa.BinaryArray, rows: range | np.ndarray) -> memoryview:
    """The bytes of ``commands[rows]`` back to back, without copying when ``rows`` is a contiguous range."""
    if not isinstance(rows, range):
        commands = commands.take(pa.array(rows, pa.int64()))
        rows = range(len(commands))
    offsets, data = commands.buffers()[1], commands.buffers()[2]
    bounds = np.frombuffer(offsets, dtype=np.int32, count=len(commands) + 1, offset=commands.offset * 4)
    return memoryview(data)[int(bounds[rows.start]) : int(bounds[rows.stop])]


def _join(constants: list[bytes], arrays: list[pa.BinaryArray]) -> pa.BinaryArray:
    """Per row: ``constants[0]``, then each array's value as a bulk string followed by the next constant."""
    parts: list[pa.Array | pa.Scalar] = []
    for constant, values in zip(constants[:-1], arrays, strict=True):
        parts += [pa.scalar(constant, pa.binary()), _headers(values), values]
    parts.append(pa.scalar(constants[-1], pa.binary()))
    return pc.binary_join_element_wise(*parts, b"")


def _headers(values: pa.BinaryArray) -> pa.Array:
    """The bulk-string header (``$``, the length, CRLF) of every value."""
    lengths = pc.binary_length(values)
    longest = pc.max(lengths).as_py() or 0
    if longest >= _TABLE_LIMIT:
        text = pc.cast(lengths, pa.string()).cast(pa.binary())
        return pc.binary_join_element_wise(pa.scalar(b"$", pa.binary()), text, pa.scalar(_CRLF, pa.binary()), b"")
    return _header_table(max(256, 1 << longest.bit_length())).take(lengths)


@lru_cache(maxsize=8)
def _header_table(size: int) -> pa.BinaryArray:
    return pa.array([b"$%d\r\n" % n for n in range(size)], pa.binary())


def _bulk_bytes(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)
