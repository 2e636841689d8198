"""The column-wise Redis encoding against Feast's own row-by-row functions, on awkward values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.type_map import python_values_to_proto_values
from feast.utils import _coerce_datetime, make_tzaware
from feast.value_type import ValueType
from google.protobuf.timestamp_pb2 import Timestamp

from feature_repo.stores import redis_format
from skewless.errors import BadInputError

N = 3000
rng = np.random.default_rng(3)
holes = rng.random(N) < 0.1

COLUMNS = {
    "int64 with nulls, full range": (
        pa.array(rng.integers(-(2**62), 2**62, N, dtype=np.int64), mask=holes),
        ValueType.INT64,
    ),
    "int64 small and negative": (pa.array(rng.integers(-300, 300, N)), ValueType.INT64),
    "int32 to INT32": (pa.array(rng.integers(-(2**31), 2**31 - 1, N).astype(np.int32)), ValueType.INT32),
    "int16 to INT64": (pa.array(rng.integers(-100, 100, N).astype(np.int16)), ValueType.INT64),
    "all null int64": (pa.array([None] * N, pa.int64()), ValueType.INT64),
    "double with nulls": (pa.array(rng.normal(size=N) * 1e6, mask=holes), ValueType.DOUBLE),
    "double with NaN and inf": (
        pa.array(np.where(holes, np.nan, np.where(rng.random(N) < 0.1, np.inf, -0.0 * rng.normal(size=N)))),
        ValueType.DOUBLE,
    ),
    "double to FLOAT": (pa.array(rng.normal(size=N)), ValueType.FLOAT),
    "bool with nulls": (pa.array(rng.random(N) < 0.5, mask=holes), ValueType.BOOL),
    "string with nulls and unicode": (
        pa.array([None if h else "é" * (i % 200) for i, h in enumerate(holes)]),
        ValueType.STRING,
    ),
    "int64 to DOUBLE (Feast's own path)": (pa.array(rng.integers(0, 5, N)), ValueType.DOUBLE),
    "double to INT64 (Feast's own path)": (pa.array(rng.normal(size=N)), ValueType.INT64),
}


@pytest.mark.parametrize("name", list(COLUMNS))
def test_values_are_feasts_bytes(name: str) -> None:
    column, value_type = COLUMNS[name]
    want = [
        p.SerializeToString() for p in python_values_to_proto_values(column.to_numpy(zero_copy_only=False), value_type)
    ]
    assert redis_format.feature_values(column, value_type).to_pylist() == want


@pytest.mark.parametrize("unit", ["us", "ns"])
def test_timestamps_are_feasts_bytes(unit: str) -> None:
    micros = np.concatenate([rng.integers(-(2**40), 2**52, N // 2), rng.integers(0, 2**31, N // 2) * 1_000_000])
    values = micros * (1000 if unit == "ns" else 1) + (rng.integers(0, 1000, N) if unit == "ns" else 0)
    column = pa.array(values, pa.timestamp(unit, tz="UTC"))
    want = []
    for value in pd.to_datetime(column.to_numpy(zero_copy_only=False)):
        stamp = Timestamp()
        stamp.FromDatetime(make_tzaware(_coerce_datetime(value.floor("us"))))
        want.append(stamp.SerializeToString())
    encoded, nanos = redis_format.timestamps(column)
    assert encoded.to_pylist() == want
    assert np.array_equal(nanos, np.floor_divide(values, 1000 if unit == "ns" else 1) * 1000)


BATCH = pa.record_batch(
    {
        "user_id": pa.array(rng.integers(-(2**63), 2**63 - 1, N, dtype=np.int64)),
        "device_id": pa.array(rng.integers(0, 100, N).astype(np.int32)),
        "merchant": pa.array([f"k{i}é" for i in range(N)]),
    }
)


@pytest.mark.parametrize(
    "join_keys",
    [
        {"user_id": ValueType.INT64},
        {"user_id": ValueType.INT64, "device_id": ValueType.INT32},
        {"merchant": ValueType.STRING, "user_id": ValueType.INT64},
        {"device_id": ValueType.INT64},
        {"merchant": ValueType.STRING},
    ],
    ids=str,
)
def test_entity_keys_are_feasts_bytes(join_keys: dict[str, ValueType]) -> None:
    protos = {
        k: python_values_to_proto_values(BATCH.column(k).to_numpy(zero_copy_only=False), t)
        for k, t in join_keys.items()
    }
    want = [
        serialize_entity_key(EntityKey(join_keys=list(join_keys), entity_values=[protos[k][i] for k in join_keys]), 3)
        + b"proj"
        for i in range(N)
    ]
    assert redis_format.entity_keys(BATCH, join_keys, "proj").to_pylist() == want


def test_missing_join_key_values_are_named() -> None:
    batch = pa.record_batch({"user_id": pa.array([1, None])})
    with pytest.raises(BadInputError, match="join key column 'user_id' has missing values"):
        redis_format.entity_keys(batch, {"user_id": ValueType.INT64}, "proj")
