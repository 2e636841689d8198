"""The ASOF offline store against stock Feast's DuckDB store: same files, same question, same answer, row for row."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from feast import FeatureStore

from feature_repo.stores import order_key
from skewless.errors import BadInputError, MissingDataError, SchemaMismatchError
from tests.feature_repo import synthetic_repo as repo

pytestmark = pytest.mark.integration

SERVICE_FEATURES = "everything"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("asof")


@pytest.fixture(scope="module")
def tables(root: Path) -> dict[str, pd.DataFrame]:
    return repo.write_sources(root, seed=0)


@pytest.fixture(scope="module")
def stores(root: Path, tables: dict[str, pd.DataFrame], redis_url: str) -> Iterator[tuple[FeatureStore, FeatureStore]]:
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)  # stock resolves the relative source paths against the working directory
        yield repo.open_store(root, redis_url, repo.STOCK), repo.open_store(root, redis_url, repo.ASOF)


@pytest.fixture(autouse=True)
def _at_root(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(root)


def _both(stores: tuple[FeatureStore, FeatureStore], entities: object, **kwargs: object) -> tuple[pa.Table, pa.Table]:
    stock, fast = stores
    features = kwargs.pop("features", None) or stock.get_feature_service(SERVICE_FEATURES)
    expected = stock.get_historical_features(entities, features=features, **kwargs).to_arrow()
    got = fast.get_historical_features(entities, features=features, **kwargs).to_arrow()
    return expected, got


def _assert_same(expected: pa.Table, got: pa.Table) -> None:
    """Same schema, and the same rows: stock returns them in no particular order, the ASOF store in entity order."""
    assert got.schema == expected.schema
    want = expected.to_pandas().sort_values("row", kind="stable").reset_index(drop=True)
    pd.testing.assert_frame_equal(got.to_pandas(), want, check_exact=True)


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("full_feature_names", [False, True])
def test_feature_service_matches_stock(stores, tables, seed: int, full_feature_names: bool) -> None:  # type: ignore[no-untyped-def]
    """Four views with different keys, TTLs and timestamp kinds, plus an on-demand view, on random entity rows."""
    entities = repo.entity_rows(tables, seed=seed)
    expected, got = _both(stores, entities, full_feature_names=full_feature_names)
    _assert_same(expected, got)
    assert got.num_rows == len(entities)
    assert got.column("row").to_pylist() == entities["row"].tolist()  # duplicates kept, entity order kept


def test_edge_cases_are_present_in_the_data(tables) -> None:  # type: ignore[no-untyped-def]
    """Guards the comparison above against testing nothing: the awkward cases really are in the files."""
    activity = tables["activity"]
    ties = activity.groupby(["user_id", "event_timestamp"]).size()
    assert (ties > 1).sum() >= 50
    assert activity["created_timestamp"].isna().any()
    assert activity["cnt"].isna().any() and activity["amt"].isna().any() and activity["label"].isna().any()


def test_struct_order_key_matches_stock_too(stores, tables, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """When (event, created) cannot be packed into one BIGINT the STRUCT key takes over, with the same answer."""
    monkeypatch.setattr(order_key, "_PACK_BITS", 0)
    expected, got = _both(stores, repo.entity_rows(tables, seed=3))
    _assert_same(expected, got)


def test_packing_that_the_data_breaks_falls_back_to_exact(stores, root: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Footers and a sample suggest whole seconds; a later row has microseconds, so the key's check fails and
    the join is planned again from exact ranges, with the same answer as stock."""
    from feast import FeatureView, Field
    from feast.types import Int64

    monkeypatch.setattr(order_key, "_SAMPLE_ROWS", 10)
    folder = root / "data" / "late_micros"
    folder.mkdir(exist_ok=True)
    base = pd.DataFrame({"user_id": range(40), "event_timestamp": repo.T0, "value": range(40)})
    base["created_timestamp"] = base["event_timestamp"]
    later = base.assign(
        event_timestamp=repo.T0 + pd.Timedelta(hours=5),
        created_timestamp=repo.T0 + pd.Timedelta(hours=5, microseconds=7),
        value=base["value"] + 100,
    )
    base.to_parquet(folder / "1.parquet", index=False)
    later.to_parquet(folder / "2.parquet", index=False)
    view = FeatureView(
        name="late_micros",
        entities=[repo.user],
        ttl=repo.ACTIVITY_TTL,
        schema=[Field(name="value", dtype=Int64)],
        source=repo._source("late_micros"),
    )
    for store in stores:
        store.apply([view])
    entities = pd.DataFrame(
        {"row": range(40), "user_id": range(40), "event_timestamp": repo.T0 + pd.Timedelta(hours=6)}
    )
    job = stores[1].get_historical_features(entities, features=["late_micros:value"])
    assert order_key.REPACK in job.to_sql()  # the optimistic plan was the one tried first
    expected, got = _both(stores, entities, features=["late_micros:value"])
    _assert_same(expected, got)
    assert got.column("value").to_pylist() == list(range(100, 140))


@pytest.mark.parametrize(
    "keys",
    [pd.array([-7, 0, 3, 12, None] * 24, dtype="Int32"), pd.array([-(2**61), 0, 5, 2**61, None] * 24, dtype="Int64")],
    ids=["int32-negative-missing", "int64-wide"],
)
def test_integer_join_keys_match_stock(stores, root: Path, keys) -> None:  # type: ignore[no-untyped-def]
    """Negative, missing and very wide integer keys in the Parquet, entity keys below, between and above them."""
    from feast import FeatureView, Field
    from feast.types import Int64

    name = f"int_keys_{keys.dtype.name.lower()}"
    folder = root / "data" / name
    folder.mkdir(exist_ok=True)
    rows = pd.DataFrame(
        {
            "user_id": keys,
            "event_timestamp": repo.T0 + pd.to_timedelta(range(0, len(keys) * 3600, 3600), unit="s"),
            "value": range(len(keys)),
        }
    )
    rows["created_timestamp"] = rows["event_timestamp"] + pd.to_timedelta(rows.index % 3, unit="min")
    rows.to_parquet(folder / "1.parquet", index=False)
    view = FeatureView(
        name=name,
        entities=[repo.user],
        ttl=repo.ACTIVITY_TTL,
        schema=[Field(name="value", dtype=Int64)],
        source=repo._source(name),
    )
    for store in stores:
        store.apply([view])
    wanted = [-8, -7, 0, 3, 4, 12, 13, -(2**61), 2**61, 2**62]
    entities = pd.DataFrame(
        {
            "user_id": np.repeat(np.array(wanted, dtype="int64"), 12),
            "event_timestamp": repo.T0 + pd.to_timedelta(np.tile(np.arange(-10, 120, 11), len(wanted)), unit="h"),
        }
    )
    entities.insert(0, "row", np.arange(len(entities)))
    expected, got = _both(stores, entities, features=[f"{name}:value"])
    _assert_same(expected, got)
    assert got.column("value").null_count < got.num_rows


def test_tie_in_event_time_goes_to_the_latest_created(stores, tables) -> None:  # type: ignore[no-untyped-def]
    """An entity row exactly at a tied event time sees the row created last; one without a created time loses."""
    activity = tables["activity"]
    tied = activity[activity.duplicated(["user_id", "event_timestamp"], keep=False)]
    groups = list(tied.groupby(["user_id", "event_timestamp"]))[:20]
    entities = pd.DataFrame(
        {"row": range(len(groups)), "user_id": [k[0] for k, _ in groups], "event_timestamp": [k[1] for k, _ in groups]}
    )
    want = [g.sort_values("created_timestamp", na_position="first").iloc[-1]["cnt"] for _, g in groups]
    _, got = _both(stores, entities, features=["activity:cnt"])
    assert got.column("cnt").to_pylist() == [None if pd.isna(v) else int(v) for v in want]


def test_naive_entity_timestamps_are_utc(stores, tables) -> None:  # type: ignore[no-untyped-def]
    entities = repo.entity_rows(tables, seed=4)
    entities["event_timestamp"] = entities["event_timestamp"].dt.tz_localize(None)
    _assert_same(*_both(stores, entities))


def test_missing_entity_timestamps_get_no_features(stores, tables) -> None:  # type: ignore[no-untyped-def]
    entities = repo.entity_rows(tables, seed=8).head(60)
    entities.loc[entities.index[::3], "event_timestamp"] = pd.NaT
    _assert_same(*_both(stores, entities))


def test_sql_entity_frame(stores, tables, root: Path) -> None:  # type: ignore[no-untyped-def]
    """Stock cannot take SQL here (AttributeError); the ASOF store runs it in DuckDB and answers as for a frame."""
    stock, fast = stores
    entities = repo.entity_rows(tables, seed=5)
    entities.to_parquet(root / "entities.parquet", index=False)
    features = ["activity:cnt", "device_stats:score", "merchant_risk:risk", "pair:pair_count"]
    expected = stock.get_historical_features(entities, features=features).to_arrow()
    sql = f"SELECT * FROM read_parquet('{root / 'entities.parquet'}')"
    _assert_same(expected, fast.get_historical_features(sql, features=features).to_arrow())


def test_metadata_matches_stock(stores, tables) -> None:  # type: ignore[no-untyped-def]
    stock, fast = stores
    entities = repo.entity_rows(tables, seed=6)
    want = stock.get_historical_features(entities, features=["activity:cnt"]).metadata
    got = fast.get_historical_features(entities, features=["activity:cnt"]).metadata
    assert (got.features, set(got.keys)) == (want.features, set(want.keys))
    assert (got.min_event_timestamp, got.max_event_timestamp) == (want.min_event_timestamp, want.max_event_timestamp)


@pytest.mark.parametrize("rows_per_part", [None, 40], ids=["whole", "hash-parts"])
@pytest.mark.parametrize("view", repo.VIEWS, ids=lambda v: v.name)
def test_pulls_match_stock(stores, view, rows_per_part: int | None, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """pull_latest (materialization's read) and pull_all (saved datasets) return stock's rows.

    One difference is deliberate: stock returns nanosecond time-zoned timestamp columns as ISO strings (ibis reads
    DuckDB's TIMESTAMP_NS WITH TIME ZONE that way); the ASOF store returns timestamps. Values are compared as
    instants.
    """
    from feature_repo.stores import source_rows

    if rows_per_part:
        monkeypatch.setattr(source_rows, "_ROWS_PER_PART", rows_per_part)
    stock, fast = stores
    source = view.batch_source
    keys = [e.name for e in view.entity_columns]
    mapping = {v: k for k, v in source.field_mapping.items()}
    features = [mapping.get(f.name, f.name) for f in view.features]
    start, end = datetime(2026, 11, 3, tzinfo=UTC), datetime(2026, 11, 7, 12, tzinfo=UTC)
    created = source.created_timestamp_column or None
    stamps = ["event_timestamp", *filter(None, [created])]
    for pull in ("pull_latest_from_table_or_query", "pull_all_from_table_or_query"):
        args = (stock.config, source, keys, features, "event_timestamp", created, start, end)
        want = getattr(stock._get_provider().offline_store, pull)(*args).to_arrow().to_pandas()
        got = getattr(fast._get_provider().offline_store, pull)(*args).to_arrow().to_pandas()
        assert list(got.columns) == list(want.columns), pull
        for frame in (want, got):
            for column in stamps:
                frame[column] = pd.to_datetime(frame[column], utc=True)
        order = [*keys, *stamps]
        pd.testing.assert_frame_equal(
            got.sort_values(order).reset_index(drop=True),
            want.sort_values(order).reset_index(drop=True),
            check_exact=True,
        )


def test_missing_timestamp_column_is_named(stores) -> None:  # type: ignore[no-untyped-def]
    _, fast = stores
    entities = pd.DataFrame({"user_id": [1], "when": ["yesterday"]})
    with pytest.raises(BadInputError, match=r"needs a 'event_timestamp' column.*no timestamp column"):
        fast.get_historical_features(entities, features=["activity:cnt"])


def test_missing_join_key_is_named(stores) -> None:  # type: ignore[no-untyped-def]
    _, fast = stores
    entities = pd.DataFrame({"user_id": [1], "event_timestamp": [repo.T0]})
    with pytest.raises(
        BadInputError, match=r"missing join key column\(s\) 'device_id' \(for feature view 'device_stats'\)"
    ):
        fast.get_historical_features(entities, features=["activity:cnt", "device_stats:score"])


def test_unparseable_timestamps_are_named(stores) -> None:  # type: ignore[no-untyped-def]
    _, fast = stores
    entities = pd.DataFrame({"user_id": [1], "event_timestamp": ["not a time"]})
    with pytest.raises(BadInputError, match=r"'event_timestamp' .* does not hold timestamps"):
        fast.get_historical_features(entities, features=["activity:cnt"])


def test_bad_entity_sql_is_reported(stores) -> None:  # type: ignore[no-untyped-def]
    _, fast = stores
    with pytest.raises(BadInputError, match="entity SQL failed in DuckDB"):
        fast.get_historical_features("SELECT * FROM no_such_table", features=["activity:cnt"])


def test_missing_source_folder_is_named(stores, root: Path) -> None:  # type: ignore[no-untyped-def]
    _, fast = stores
    folder = root / "data" / "pair"
    hidden = folder.rename(root / "data" / "pair_hidden")
    try:
        entities = pd.DataFrame({"user_id": [1], "device_id": [2], "event_timestamp": [repo.T0]})
        with pytest.raises(
            MissingDataError, match=r"feature view 'pair': source 'pair_source' path 'data/pair' does not"
        ):
            fast.get_historical_features(entities, features=["pair:pair_count"])
        folder.mkdir()
        with pytest.raises(MissingDataError, match=r"feature view 'pair': source folder .*pair holds no Parquet files"):
            fast.get_historical_features(entities, features=["pair:pair_count"])
    finally:
        folder.rmdir() if folder.exists() else None
        hidden.rename(folder)


def test_missing_column_is_named(stores, root: Path, redis_url: str) -> None:  # type: ignore[no-untyped-def]
    from feast import FeatureView, Field
    from feast.types import Int64

    _, fast = stores
    ghost = FeatureView(
        name="ghost",
        entities=[repo.user],
        ttl=repo.ACTIVITY_TTL,
        schema=[Field(name="not_there", dtype=Int64)],
        source=repo.activity.batch_source,
    )
    fast.apply([ghost])
    entities = pd.DataFrame({"user_id": [1], "event_timestamp": [repo.T0]})
    with pytest.raises(
        SchemaMismatchError, match=r"feature view 'ghost': .*activity has no column\(s\) \['not_there'\]"
    ):
        fast.get_historical_features(entities, features=["ghost:not_there"])


def test_relative_paths_resolve_against_the_repo_root(stores, tables, root: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Stock needs the working directory to be the repo root; the ASOF store uses config.repo_path."""
    _, fast = stores
    monkeypatch.chdir(root.parent)
    entities = repo.entity_rows(tables, seed=7)
    got = fast.get_historical_features(entities, features=["activity:cnt"]).to_df()
    assert got["cnt"].notna().any()
