"""Materialization through the streaming engine against stock Feast's: the same bytes in Redis, the same reads back.

Both stores materialize the same Parquet into the real Redis (test database), under two projects. Keys end in
the project name, so the comparison strips it; everything else (key bytes, hash fields, values, timestamps,
TTLs) must be identical.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
import redis
from feast import FeatureStore

from tests.feature_repo import synthetic_repo as repo

pytestmark = pytest.mark.integration


def _at(day: int, hour: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, tzinfo=UTC)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("streaming")
    repo.write_sources(root, seed=11)
    return root


@pytest.fixture(autouse=True)
def _at_root(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(root)


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def _pair(root: Path, redis_url: str, **online: object) -> Iterator[tuple[FeatureStore, FeatureStore]]:
    stock = repo.open_store(root, redis_url, repo.STOCK, online_extra=online)
    fast = repo.open_store(root, redis_url, repo.ASOF, engine=repo.STREAMING, online_extra=online)
    try:
        yield stock, fast
    finally:
        for store in (stock, fast):
            store.teardown()


@pytest.fixture
def stores(root: Path, redis_url: str) -> Iterator[tuple[FeatureStore, FeatureStore]]:
    yield from _pair(root, redis_url)


def _hashes(client: redis.Redis, project: str) -> dict[bytes, dict[bytes, bytes]]:
    suffix = project.encode()
    return {key[: -len(suffix)]: client.hgetall(key) for key in client.scan_iter(match=b"*" + suffix, count=1000)}


def _assert_same_redis(client: redis.Redis, stock: FeatureStore, fast: FeatureStore) -> int:
    want, got = _hashes(client, stock.project), _hashes(client, fast.project)
    assert got.keys() == want.keys()
    assert got == want
    return len(got)


def _online(store: FeatureStore) -> dict[str, list[object]]:
    rows = [{"user_id": u, "device_id": d, "merchant_id": f"m{u % 16:02d}"} for u in range(42) for d in (0, 7, 29, 31)]
    features = [f"{v.name}:{f.name}" for v in repo.VIEWS for f in v.features]
    return store.get_online_features(features=features, entity_rows=rows).to_dict()


def test_materialize_writes_stock_bytes(client, stores) -> None:  # type: ignore[no-untyped-def]
    stock, fast = stores
    for store in (stock, fast):
        store.materialize(_at(2), _at(6, 12))
    assert _assert_same_redis(client, stock, fast) > 100
    assert _online(fast) == _online(stock)


def test_overlapping_and_older_windows_follow_stock_rules(client, stores) -> None:  # type: ignore[no-untyped-def]
    """Later windows overwrite only with newer rows; an older window changes nothing; a rerun is a no-op."""
    stock, fast = stores
    for start, end in [(_at(4), _at(8)), (_at(2), _at(10)), (_at(1), _at(3)), (_at(2), _at(10))]:
        for store in (stock, fast):
            store.materialize(start, end)
        _assert_same_redis(client, stock, fast)
    assert _online(fast) == _online(stock)


@pytest.mark.parametrize("online", [{"key_ttl_seconds": 3600}, {"skip_dedup": True}], ids=["key_ttl", "skip_dedup"])
def test_store_options_match_stock(client, root: Path, redis_url: str, online: dict[str, object]) -> None:  # type: ignore[no-untyped-def]
    for stock, fast in _pair(root, redis_url, **online):
        for start, end in [(_at(5), _at(9)), (_at(1), _at(6))]:
            for store in (stock, fast):
                store.materialize(start, end, feature_views=["activity", "pair"])
        _assert_same_redis(client, stock, fast)
        expiring = {
            project: sorted(client.ttl(k) > 0 for k in client.scan_iter(match=b"*" + project.encode()))
            for project in (stock.project, fast.project)
        }
        assert expiring[fast.project] == expiring[stock.project]
        assert all(expiring[fast.project]) == bool(online.get("key_ttl_seconds"))


def test_latest_rows_found_in_hash_parts_match_stock(client, stores, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Large windows pick the latest row per key a hash part at a time; the answer must not change."""
    from feature_repo.stores import source_rows

    monkeypatch.setattr(source_rows, "_ROWS_PER_PART", 50)
    stock, fast = stores
    for store in (stock, fast):
        store.materialize(_at(1), _at(11))
    assert _assert_same_redis(client, stock, fast) > 100


def test_materialize_incremental_keeps_feasts_bookkeeping(client, stores) -> None:  # type: ignore[no-untyped-def]
    """The registry records each materialized interval, so the next incremental run starts where this one ended."""
    stock, fast = stores
    views = ["activity", "device_stats"]
    for store in (stock, fast):
        store.materialize(_at(1), _at(4), feature_views=views)
    for end in (_at(6), _at(9)):
        for store in (stock, fast):
            store.materialize_incremental(end, feature_views=views)
        assert _assert_same_redis(client, stock, fast) > 50
    view = fast.get_feature_view("activity")
    assert view.most_recent_end_time == _at(9)
    assert [(s, e) for s, e in view.materialization_intervals] == [(_at(1), _at(4)), (_at(4), _at(6)), (_at(6), _at(9))]


def test_other_online_stores_get_feasts_own_writes(root: Path, redis_url: str, tmp_path: Path) -> None:
    """Without a bulk writer (here SQLite) the engine still streams, through Feast's online_write_batch."""
    from feast import FeatureStore, RepoConfig

    def sqlite_store(name: str, offline: dict[str, str], engine: object) -> FeatureStore:
        config = RepoConfig(
            project=f"lite_{name}",
            provider="local",
            registry=str(tmp_path / f"{name}.db"),
            offline_store=offline,
            batch_engine=engine,
            online_store={"type": "sqlite", "path": str(tmp_path / f"{name}_online.db")},
            entity_key_serialization_version=3,
            repo_path=str(root),
        )
        store = FeatureStore(config=config)
        store.apply(repo.DEFINITIONS)
        return store

    stock = sqlite_store("stock", repo.STOCK, "local")
    fast = sqlite_store("fast", repo.ASOF, repo.STREAMING)
    for store in (stock, fast):
        store.materialize(_at(2), _at(8))
    assert _online(fast) == _online(stock)


def test_progress_counts_every_row(stores, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    _, fast = stores
    fast.materialize(_at(1), _at(11), feature_views=["activity"])
    err = capsys.readouterr().err
    users = pd.read_parquet(Path.cwd() / "data" / "activity")["user_id"].nunique()
    assert f"{users}/{users}" in err


def test_missing_source_fails_the_materialization(stores, root: Path) -> None:  # type: ignore[no-untyped-def]
    from skewless.errors import MissingDataError

    _, fast = stores
    folder = root / "data" / "device_stats"
    hidden = folder.rename(root / "data" / "device_stats_hidden")
    try:
        with pytest.raises(MissingDataError, match=r"data source 'device_stats_source'.*does not exist"):
            fast.materialize(_at(1), _at(2), feature_views=["device_stats"])
    finally:
        hidden.rename(folder)
    assert fast.get_feature_view("device_stats").materialization_intervals == []
