"""A small Feast repo with the awkward cases in it, for comparing stock Feast with the project's stores.

Four feature views over Parquet folders (one file per day), each exercising something different: an int key
with created timestamps, ties and a 2-day TTL; an int key without created timestamps and with naive nanosecond
timestamps; a string key with a field mapping and no TTL; and a two-column key. ``open_store`` builds a
FeatureStore over the same files with either offline store and either materialization engine, so a test can
ask both the same question.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from feast import Entity, FeatureService, FeatureStore, FeatureView, Field, FileSource, RepoConfig, ValueType
from feast.data_format import ParquetFormat
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Bool, Float32, Float64, Int32, Int64, String

T0 = pd.Timestamp("2026-11-01", tz="UTC")
ACTIVITY_TTL = timedelta(days=2)
DEVICE_TTL = timedelta(days=1)
STOCK = {"type": "duckdb"}
ASOF = {"type": "feature_repo.stores.duckdb_asof.AsofDuckDBOfflineStore"}
STREAMING = {"type": "feature_repo.stores.streaming_engine.StreamingMaterializationEngine", "rows_per_batch": 37}

user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)
device = Entity(name="device", join_keys=["device_id"], value_type=ValueType.INT64)
merchant = Entity(name="merchant", join_keys=["merchant_id"], value_type=ValueType.STRING)


def _source(name: str, created: bool = True, mapping: dict[str, str] | None = None) -> FileSource:
    return FileSource(
        name=f"{name}_source",
        path=f"data/{name}",
        file_format=ParquetFormat(),
        timestamp_field="event_timestamp",
        created_timestamp_column="created_timestamp" if created else "",
        field_mapping=mapping,
    )


activity = FeatureView(
    name="activity",
    entities=[user],
    ttl=ACTIVITY_TTL,
    schema=[Field(name="cnt", dtype=Int64), Field(name="amt", dtype=Float64), Field(name="label", dtype=String)],
    source=_source("activity"),
)
device_stats = FeatureView(
    name="device_stats",
    entities=[device],
    ttl=DEVICE_TTL,
    schema=[Field(name="score", dtype=Float64), Field(name="flag", dtype=Bool), Field(name="kind", dtype=String)],
    source=_source("device_stats", created=False),
)
merchant_risk = FeatureView(
    name="merchant_risk",
    entities=[merchant],
    ttl=timedelta(0),  # no TTL
    schema=[Field(name="risk", dtype=Float64), Field(name="volume", dtype=Int32)],
    source=_source("merchant_risk", mapping={"risk_score": "risk"}),
)
pair = FeatureView(
    name="pair",
    entities=[user, device],
    ttl=timedelta(days=3),
    schema=[Field(name="pair_count", dtype=Int64), Field(name="pair_ratio", dtype=Float32)],
    source=_source("pair"),
)


@on_demand_feature_view(
    sources=[activity, device_stats],
    schema=[Field(name="amt_per_cnt", dtype=Float64), Field(name="risky", dtype=Int64)],
    mode="pandas",
)
def derived(inputs: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame(index=inputs.index)
    out["amt_per_cnt"] = inputs["amt"].astype("float64") / inputs["cnt"].astype("float64")
    out["risky"] = (inputs["score"].fillna(0) > 0.5).astype("int64")
    return out


service = FeatureService(name="everything", features=[activity, device_stats, merchant_risk, pair, derived])
DEFINITIONS = [user, device, merchant, activity, device_stats, merchant_risk, pair, derived, service]
VIEWS = [activity, device_stats, merchant_risk, pair]


def open_store(
    root: Path,
    redis_url: str,
    offline: dict[str, str],
    engine: dict[str, object] | str = "local",
    project: str | None = None,
    online_extra: dict[str, object] | None = None,
) -> FeatureStore:
    """A FeatureStore over ``root``'s Parquet with its own registry file and project; definitions applied."""
    project = project or f"eq_{uuid.uuid4().hex[:10]}"
    config = RepoConfig(
        project=project,
        provider="local",
        registry=str(root / f"registry_{project}.db"),
        offline_store=offline,
        batch_engine=engine,
        online_store={
            "type": "feature_repo.stores.redis_url.RedisURLOnlineStore",
            "connection_string": redis_url,
            **(online_extra or {}),
        },
        entity_key_serialization_version=3,
        repo_path=str(root),
    )
    store = FeatureStore(config=config)
    store.apply(DEFINITIONS)
    return store


def write_sources(root: Path, seed: int = 0) -> dict[str, pd.DataFrame]:
    """Random feature tables with ties, nulls and gaps; returns them by view name for tests to pick edges from."""
    rng = np.random.default_rng(seed)
    tables = {
        "activity": _activity(rng),
        "device_stats": _device_stats(rng),
        "merchant_risk": _merchant_risk(rng),
        "pair": _pair(rng),
    }
    for name, frame in tables.items():
        _write_daily(root / "data" / name, frame)
    return tables


def _times(rng: np.random.Generator, n: int, days: int = 10) -> pd.Series:
    return pd.Series(T0 + pd.to_timedelta(rng.integers(0, days * 86_400, n), unit="s"))


def _activity(rng: np.random.Generator) -> pd.DataFrame:
    n = 600
    ts = _times(rng, n)
    frame = pd.DataFrame(
        {
            "user_id": rng.integers(0, 40, n),
            "event_timestamp": ts,
            "created_timestamp": ts + pd.to_timedelta(rng.choice([0, 1800, 7200], n), unit="s"),
            "cnt": pd.array(rng.integers(-5, 1000, n), dtype="Int64"),
            "amt": rng.normal(size=n),
            "label": rng.choice(["a", "b", "ü"], n).astype(object),
        }
    )
    # Ties: the same event time again, created later (wins) or earlier (loses), with other values.
    twins = frame.sample(80, random_state=1).copy()
    twins["created_timestamp"] += pd.to_timedelta(rng.choice([-3600, 3600], len(twins)), unit="s")
    twins["cnt"] = pd.array(rng.integers(2000, 3000, len(twins)), dtype="Int64")
    frame = pd.concat([frame, twins], ignore_index=True)
    frame.loc[frame.sample(60, random_state=2).index, "cnt"] = pd.NA
    frame.loc[frame.sample(60, random_state=3).index, "amt"] = np.nan
    frame.loc[frame.sample(60, random_state=4).index, "label"] = None
    frame.loc[twins.index[:10], "created_timestamp"] = pd.NaT  # a tie where one side has no created time: it loses
    return frame.drop_duplicates(["user_id", "event_timestamp", "created_timestamp"]).reset_index(drop=True)


def _device_stats(rng: np.random.Generator) -> pd.DataFrame:
    n = 300
    frame = pd.DataFrame(
        {
            "device_id": rng.integers(0, 30, n),
            # naive nanosecond timestamps: Feast reads them as UTC
            "event_timestamp": (T0 + pd.to_timedelta(rng.integers(0, 10 * 86_400_000, n), unit="ms")).tz_localize(None),
            "score": rng.random(n),
            "flag": rng.random(n) < 0.5,
            "kind": rng.choice(["phone", "tablet"], n).astype(object),
        }
    )
    frame.loc[frame.sample(30, random_state=5).index, "score"] = np.nan
    return frame.drop_duplicates(["device_id", "event_timestamp"]).reset_index(drop=True)


def _merchant_risk(rng: np.random.Generator) -> pd.DataFrame:
    n = 200
    ts = _times(rng, n)
    return pd.DataFrame(
        {
            "merchant_id": [f"m{i:02d}" for i in rng.integers(0, 15, n)],
            "event_timestamp": ts,
            "created_timestamp": ts + pd.to_timedelta(rng.integers(0, 1_000_000, n), unit="us"),
            "risk_score": rng.random(n),
            "volume": rng.integers(0, 500, n).astype("int32"),
        }
    ).drop_duplicates(["merchant_id", "event_timestamp", "created_timestamp"])


def _pair(rng: np.random.Generator) -> pd.DataFrame:
    n = 300
    ts = _times(rng, n)
    return pd.DataFrame(
        {
            "user_id": rng.integers(0, 40, n),
            "device_id": rng.integers(0, 30, n),
            "event_timestamp": ts,
            "created_timestamp": ts,
            "pair_count": rng.integers(0, 50, n),
            "pair_ratio": rng.random(n).astype("float32"),
        }
    ).drop_duplicates(["user_id", "device_id", "event_timestamp", "created_timestamp"])


def _write_daily(folder: Path, frame: pd.DataFrame) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    day = pd.to_datetime(frame["event_timestamp"]).dt.strftime("%Y-%m-%d")
    for name, part in frame.groupby(day):
        pq.write_table(pa.Table.from_pandas(part, preserve_index=False), folder / f"{name}.parquet")


def entity_rows(tables: dict[str, pd.DataFrame], seed: int = 1, n: int = 400) -> pd.DataFrame:
    """Random entity rows plus the edges: exact hits, TTL boundaries, before the first row, unknown keys, twins."""
    rng = np.random.default_rng(seed)
    hits = tables["activity"].sample(30, random_state=seed)
    devices = tables["device_stats"].sample(20, random_state=seed)
    device_ts = devices["event_timestamp"].dt.tz_localize("UTC")
    micro = pd.Timedelta(microseconds=1)
    edges = [
        ("user_id", hits["user_id"], hits["event_timestamp"]),  # exactly at a feature row's time
        ("user_id", hits["user_id"], hits["event_timestamp"] + ACTIVITY_TTL),  # exactly TTL old: still visible
        ("user_id", hits["user_id"], hits["event_timestamp"] + ACTIVITY_TTL + micro),  # just past the TTL
        ("user_id", hits["user_id"], hits["event_timestamp"] - micro),  # just before it
        ("device_id", devices["device_id"], device_ts + DEVICE_TTL),
        ("device_id", devices["device_id"], device_ts + DEVICE_TTL + micro),
    ]
    columns = {
        "user_id": rng.integers(0, 45, n),  # 40..44: unknown users
        "device_id": rng.integers(0, 33, n),
        "merchant_id": [f"m{i:02d}" for i in rng.integers(0, 17, n)],
        "event_timestamp": list(T0 + pd.to_timedelta(rng.integers(-86_400_000_000, 12 * 86_400_000_000, n), unit="us")),
    }
    for key, ids, times in edges:
        count = len(ids)
        fill = {
            "user_id": rng.integers(0, 40, count),
            "device_id": rng.integers(0, 30, count),
            "merchant_id": [f"m{i:02d}" for i in rng.integers(0, 15, count)],
        }
        fill[key] = ids.to_numpy()
        for name in ("user_id", "device_id"):
            columns[name] = np.concatenate([columns[name], fill[name]])
        columns["merchant_id"] = list(columns["merchant_id"]) + list(fill["merchant_id"])
        columns["event_timestamp"] = list(columns["event_timestamp"]) + list(times)
    rows = pd.DataFrame(columns)
    rows = pd.concat([rows, rows.head(25)], ignore_index=True)  # duplicate entity rows
    rows["event_timestamp"] = pd.to_datetime(rows["event_timestamp"], utc=True)
    rows.insert(0, "row", np.arange(len(rows)))
    return rows
