"""Feast's Redis layout, encoded from Arrow batches a column at a time instead of a proto object per value.

What ``RedisOnlineStore.online_write_batch`` stores for one entity row of a feature view (Feast 0.67,
``entity_key_serialization_version`` 3) is a hash at ``serialize_entity_key(key) + project`` with the field
``_ts:<view>`` holding a serialized ``google.protobuf.Timestamp`` and one field per feature, named by the
murmur3 hash of ``<view>:<feature>``, holding a serialized ``feast.types.Value`` (empty bytes for a missing
value). These bytes are simple: a tag byte plus a varint, a fixed-width number or a length-prefixed string, so
numpy and Arrow compute them for a whole batch at once, as Arrow binary arrays that never become Python objects
(``redis_commands`` turns them into the wire bytes). Only the column kinds where the result is certain to
equal Feast's are encoded here; anything else (lists, maps, JSON, unusual type pairings) goes through Feast's own
``python_values_to_proto_values`` and ``serialize_entity_key``, row by row, so the bytes are Feast's by
construction. The equivalence tests compare the raw Redis hashes of both paths.
"""

from __future__ import annotations

import struct

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.helpers import _mmh3
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.type_map import python_values_to_proto_values
from feast.value_type import ValueType

from skewless.errors import BadInputError

# Value proto tags: field number << 3 | wire type (0 varint, 1 fixed64, 2 length-delimited, 5 fixed32).
_TAGS = {
    ValueType.BYTES: 0x0A,
    ValueType.STRING: 0x12,
    ValueType.INT32: 0x18,
    ValueType.INT64: 0x20,
    ValueType.DOUBLE: 0x29,
    ValueType.FLOAT: 0x35,
    ValueType.BOOL: 0x38,
}
_SECONDS_TAG, _NANOS_TAG = 0x08, 0x10  # google.protobuf.Timestamp fields 1 and 2


def field_name(view: str, feature: str) -> bytes:
    """The hash field of a feature: Feast's murmur3 of ``<view>:<feature>``."""
    return bytes(_mmh3(f"{view}:{feature}"))


def entity_keys(batch: pa.RecordBatch, join_keys: dict[str, ValueType], project: str) -> pa.BinaryArray:
    """Redis keys of the batch's rows: Feast's serialized entity key (version 3) followed by the project name."""
    names = sorted(join_keys) if len(join_keys) > 1 else list(join_keys)
    for name in names:
        if batch.column(name).null_count:
            raise BadInputError(f"join key column {name!r} has missing values; Feast cannot key those rows")
    if not all(_key_is_vectorizable(batch.column(n), join_keys[n]) for n in names):
        return _entity_keys_by_row(batch, join_keys, project)
    header = struct.pack("<I", len(names)) + b"".join(
        struct.pack("<II", ValueType.STRING.value, len(n.encode())) + n.encode() for n in names
    )
    parts: list[pa.Array | pa.Scalar] = [pa.scalar(header, pa.binary())]
    for name in names:
        column, value_type = batch.column(name), join_keys[name]
        if value_type in (ValueType.INT64, ValueType.INT32):
            width = 8 if value_type == ValueType.INT64 else 4
            raw = column.to_numpy().astype(f"<i{width}").view(np.uint8).reshape(-1, width)
            parts += [pa.scalar(struct.pack("<II", value_type.value, width), pa.binary()), _fixed(raw)]
        else:
            text = column.cast(pa.binary())
            sizes = pc.binary_length(text).to_numpy().astype("<u4").view(np.uint8).reshape(-1, 4)
            parts += [pa.scalar(struct.pack("<I", value_type.value), pa.binary()), _fixed(sizes), text]
    parts.append(pa.scalar(project.encode(), pa.binary()))
    return pc.binary_join_element_wise(*parts, b"")


def timestamps(column: pa.Array) -> tuple[pa.BinaryArray, np.ndarray]:
    """Serialized ``Timestamp`` protos of an event-timestamp column, and the same instants in nanoseconds.

    Feast goes through Python datetimes, so the precision is microseconds (nanoseconds are cut off).
    """
    if column.null_count:
        raise BadInputError("event timestamp column has missing values; Feast cannot store those rows")
    if pa.types.is_timestamp(column.type) and column.type.unit == "ns":
        column = pc.floor_temporal(column, unit="microsecond")
    micros = column.cast(pa.timestamp("us", tz=column.type.tz)).cast(pa.int64()).to_numpy()
    seconds, rest = np.divmod(micros, 1_000_000)
    nanos = rest * 1_000
    encoded = pc.binary_join_element_wise(
        _varints(seconds.astype(np.uint64), _SECONDS_TAG, seconds != 0),
        _varints(nanos.astype(np.uint64), _NANOS_TAG, nanos != 0),
        b"",
    )
    return encoded, seconds * 1_000_000_000 + nanos


def feature_values(column: pa.Array, value_type: ValueType) -> pa.BinaryArray:
    """Serialized ``Value`` protos of one feature column, empty bytes for missing values, as Feast writes them."""
    kind = column.type
    present = column.is_valid().to_numpy(zero_copy_only=False)
    tag = _TAGS.get(value_type)
    if pa.types.is_integer(kind) and column.null_count and _beyond_int64_as_double(column):
        kind = pa.null()  # Feast's own path, which rejects these values as it always has
    if value_type == ValueType.INT64 and (_fits(kind, 64) or pa.types.is_boolean(kind)):
        return _varints(_filled(column, np.int64).astype(np.uint64), tag, present)
    if value_type == ValueType.INT32 and _fits(kind, 32):
        # proto int32 is written as a 64-bit varint, so negative values take ten bytes like int64
        return _varints(_filled(column, np.int64).astype(np.uint64), tag, present)
    if value_type == ValueType.BOOL and pa.types.is_boolean(kind):
        return _varints(_filled(column, np.uint64), tag, present)
    if value_type in (ValueType.DOUBLE, ValueType.FLOAT) and (
        kind in (pa.float64(), pa.float32(), pa.float16()) if value_type == ValueType.FLOAT else kind == pa.float64()
    ):
        width, dtype = (8, "<f8") if value_type == ValueType.DOUBLE else (4, "<f4")
        numbers = _filled(column, np.float64)
        present &= ~np.isnan(numbers)  # Feast stores NaN as a missing value
        matrix = np.empty((len(numbers), 1 + width), dtype=np.uint8)
        matrix[:, 0] = tag
        matrix[:, 1:] = numbers.astype(dtype).view(np.uint8).reshape(-1, width)
        return _rows(matrix, np.where(present, 1 + width, 0))
    if value_type == ValueType.STRING and (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        return _length_prefixed(column, tag)
    if value_type == ValueType.BYTES and (pa.types.is_binary(kind) or pa.types.is_large_binary(kind)):
        return _length_prefixed(column, tag)
    protos = python_values_to_proto_values(column.to_numpy(zero_copy_only=False), value_type)
    return pa.array([proto.SerializeToString() for proto in protos], pa.binary())


def _beyond_int64_as_double(column: pa.Array) -> bool:
    bounds = pc.min_max(column)
    return any(v is not None and abs(float(v)) >= 2.0**63 for v in (bounds["min"].as_py(), bounds["max"].as_py()))


def _fits(kind: pa.DataType, bits: int) -> bool:
    """Integer types whose every value fits a signed integer of ``bits`` bits."""
    if pa.types.is_signed_integer(kind):
        return kind.bit_width <= bits
    return pa.types.is_unsigned_integer(kind) and kind.bit_width < bits


def _key_is_vectorizable(column: pa.Array, value_type: ValueType) -> bool:
    if value_type == ValueType.INT64:
        return _fits(column.type, 64)
    if value_type == ValueType.INT32:
        return _fits(column.type, 32)
    if value_type == ValueType.STRING:
        return pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
    return False


def _entity_keys_by_row(batch: pa.RecordBatch, join_keys: dict[str, ValueType], project: str) -> pa.BinaryArray:
    """Feast's own serialization, one row at a time, for key types the vectorized path does not cover."""
    names = list(join_keys)
    values = {
        n: python_values_to_proto_values(batch.column(n).to_numpy(zero_copy_only=False), join_keys[n]) for n in names
    }
    suffix = project.encode()
    keys = [
        serialize_entity_key(EntityKeyProto(join_keys=names, entity_values=[values[n][i] for n in names]), 3) + suffix
        for i in range(batch.num_rows)
    ]
    return pa.array(keys, pa.binary())


def _filled(column: pa.Array, dtype: type) -> np.ndarray:
    """The column as numpy, missing values as zero (the caller masks them out).

    An integer column with missing values reaches Feast as float64 (that is what Arrow's ``to_numpy`` gives), so
    Feast stores such integers rounded to the nearest double; the same rounding happens here.
    """
    if pa.types.is_integer(column.type) and column.null_count:
        return np.nan_to_num(column.to_numpy(zero_copy_only=False), nan=0.0).astype(dtype)
    fill = False if pa.types.is_boolean(column.type) else pa.scalar(0, column.type)
    return column.fill_null(fill).to_numpy(zero_copy_only=False).astype(dtype)


def _varints(values: np.ndarray, tag: int | None, present: np.ndarray) -> pa.BinaryArray:
    """Per row: ``tag`` then ``values`` as a protobuf varint (uint64); rows not ``present`` are empty."""
    count = len(values)
    sizes = np.ones(count, dtype=np.int64)
    groups = 1
    for k in range(1, 10):
        over = values >= np.uint64(1 << (7 * k))
        if not over.any():
            break
        sizes += over
        groups = k + 1
    lead = 0 if tag is None else 1
    matrix = np.empty((count, lead + groups), dtype=np.uint8)
    if lead:
        matrix[:, 0] = tag
    for k in range(groups):
        low = ((values >> np.uint64(7 * k)) & np.uint64(0x7F)).astype(np.uint8)
        matrix[:, lead + k] = low | np.where(k < sizes - 1, 0x80, 0).astype(np.uint8)
    return _rows(matrix, np.where(present, sizes + lead, 0))


def _fixed(raw: np.ndarray) -> pa.BinaryArray:
    return _rows(raw, np.full(len(raw), raw.shape[1], dtype=np.int64))


def _length_prefixed(column: pa.Array, tag: int | None) -> pa.BinaryArray:
    data = column.cast(
        pa.large_binary()
        if pa.types.is_large_string(column.type) or pa.types.is_large_binary(column.type)
        else pa.binary()
    )
    present = column.is_valid().to_numpy(zero_copy_only=False)
    lengths = pc.binary_length(data).fill_null(0).to_numpy().astype(np.uint64)
    prefix = _varints(lengths, tag, present)
    joined = pc.binary_join_element_wise(prefix, data.cast(pa.binary()), b"")
    return joined.fill_null(pa.scalar(b"", pa.binary()))


def _rows(matrix: np.ndarray, lengths: np.ndarray) -> pa.BinaryArray:
    """A binary array whose row i is the first ``lengths[i]`` bytes of ``matrix[i]``."""
    keep = np.arange(matrix.shape[1])[None, :] < lengths[:, None]
    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    data = np.ascontiguousarray(matrix[keep])
    return pa.BinaryArray.from_buffers(pa.binary(), len(lengths), [None, pa.py_buffer(offsets), pa.py_buffer(data)])
