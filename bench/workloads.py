"""Synthetic data for the benchmarks, written once per size and reused, plus the Feast definitions over it.

Feature rows look like the pipeline's output: a folder of daily Parquet files, int64 user ids, whole-second
event timestamps, a created timestamp a few minutes to an hour later, and four features (two int64, two
double). Entity rows are payments at random times over the same days; about 5% of them are users the
features have never seen.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from feast import Entity, FeatureStore, FeatureView, Field, FileSource, RepoConfig, ValueType
from feast.data_format import ParquetFormat
from feast.types import Float64, Int64

START = datetime(2026, 10, 1, tzinfo=UTC)
DAYS = 30
USERS = 10_000
TTL = timedelta(days=2)
FEATURES = ["txn_count_7d", "orders", "amount_mean_30d", "amount_std_30d"]
FEATURE_REFS = [f"bench_view:{name}" for name in FEATURES]


def feature_folder(workdir: Path, rows: int, users: int = USERS, days: int = DAYS, seed: int = 7) -> Path:
    """``rows`` feature rows for ``users`` users over ``days`` days, one Parquet file per day; made once."""
    folder = workdir / f"features_{rows}_{users}_{days}"
    if (folder / "_done").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    per_day = rows // days
    for day in range(days):
        seconds = (START + timedelta(days=day)).timestamp() + rng.integers(0, 86_400, per_day)
        _write_day(folder / f"{day:03d}.parquet", rng.integers(0, users, per_day), seconds, rng)
    (folder / "_done").touch()
    return folder


def snapshot_folder(workdir: Path, entities: int, snapshots: int = 2, seed: int = 11) -> Path:
    """Daily snapshots, every entity once per day (like the pipeline's tables): ``entities * snapshots`` rows."""
    folder = workdir / f"snapshots_{entities}_{snapshots}"
    if (folder / "_done").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for day in range(snapshots):
        midnight = (START + timedelta(days=day + 1)).timestamp()
        _write_day(folder / f"{day:03d}.parquet", rng.permutation(entities), np.full(entities, midnight), rng)
    (folder / "_done").touch()
    return folder


def entity_file(workdir: Path, rows: int, users: int = USERS, days: int = DAYS, seed: int = 13) -> Path:
    """``rows`` entity rows (user_id, event_timestamp) as one Parquet file; made once."""
    path = workdir / f"entities_{rows}_{users}_{days}.parquet"
    if path.exists():
        return path
    rng = np.random.default_rng(seed)
    micros = int(START.timestamp() * 1e6) + rng.integers(0, days * 86_400_000_000, rows)
    table = pa.table(
        {
            "user_id": rng.integers(0, int(users * 1.05), rows),
            "event_timestamp": pa.array(micros, pa.timestamp("us", tz="UTC")),
        }
    )
    pq.write_table(table, path)
    return path


def open_store(
    root: Path, source: Path, offline: str, engine: str, redis_url: str, project: str = "", ttl: timedelta = TTL
) -> FeatureStore:
    """A FeatureStore over ``source`` with the given offline store type and batch engine, definitions applied."""
    project = project or f"bench_{uuid.uuid4().hex[:8]}"
    config = RepoConfig(
        project=project,
        provider="local",
        registry=str(root / f"{project}.db"),
        offline_store={"type": offline},
        batch_engine={"type": engine} if engine != "local" else "local",
        online_store={"type": "feature_repo.stores.redis_url.RedisURLOnlineStore", "connection_string": redis_url},
        entity_key_serialization_version=3,
        repo_path=str(root),
    )
    user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)
    view = FeatureView(
        name="bench_view",
        entities=[user],
        ttl=ttl,
        schema=[Field(name=n, dtype=Int64 if i < 2 else Float64) for i, n in enumerate(FEATURES)],
        source=FileSource(
            name="bench_source",
            path=str(source),
            file_format=ParquetFormat(),
            timestamp_field="event_timestamp",
            created_timestamp_column="created_timestamp",
        ),
    )
    store = FeatureStore(config=config)
    store.apply([user, view])
    return store


def _write_day(path: Path, users: np.ndarray, seconds: np.ndarray, rng: np.random.Generator) -> None:
    count = len(users)
    event = (seconds * 1_000_000).astype(np.int64)
    created = event + rng.integers(60, 3_600, count) * 1_000_000
    table = pa.table(
        {
            "user_id": users.astype(np.int64),
            "event_timestamp": pa.array(event, pa.timestamp("us", tz="UTC")),
            "created_timestamp": pa.array(created, pa.timestamp("us", tz="UTC")),
            "txn_count_7d": rng.integers(0, 60, count),
            "orders": rng.integers(0, 5_000, count),
            "amount_mean_30d": rng.gamma(2.0, 40.0, count),
            "amount_std_30d": rng.gamma(1.5, 20.0, count),
        }
    )
    pq.write_table(table, path)
