"""Windowed aggregations offline: Feast's get_historical_features over raw transactions, at the boundaries."""

from __future__ import annotations

import math
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from feast import Aggregation, Field
from feast.stream_feature_view import StreamFeatureView
from feast.types import Int64

from feature_repo.entities import user
from feature_repo.sources import transactions_push
from feature_repo.windows import aggregate_schema, windowed_view
from skewless.errors import BadInputError
from skewless.store import apply_definitions, open_store
from tests.feature_repo.windowed_repo import (
    EXPECTED,
    SCENARIO,
    SCORED_BEFORE_LATE,
    T0,
    Txn,
    offline,
    write_transactions,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def windowed_store(repo_root: Path):  # type: ignore[no-untyped-def]
    write_transactions(repo_root, SCENARIO)
    store = open_store(repo_root)
    apply_definitions(store)
    return store


def _same(got: object, want: object) -> bool:
    if want is None:
        return got is None or (isinstance(got, float) and math.isnan(got))
    return got == pytest.approx(want, rel=1e-9)


def test_boundaries_equal_times_duplicates_and_late_events(windowed_store) -> None:  # type: ignore[no-untyped-def]
    frame = offline(windowed_store, SCENARIO)
    assert len(frame) == len(SCENARIO)
    for row, expected in EXPECTED.items():
        for name, value in expected.items():
            assert _same(frame.at[row, name], value), f"row {row} {name}: {frame.at[row, name]} != {value}"
    for row, expected in SCORED_BEFORE_LATE.items():
        for name, (_, offline_value) in expected.items():
            assert _same(frame.at[row, name], offline_value), f"row {row} {name}"
    retry, first = frame.iloc[4], frame.iloc[2]
    pd.testing.assert_series_equal(retry.drop("txn_id"), first.drop("txn_id"), check_names=False)


def test_an_earlier_copy_of_an_event_moves_it(repo_root: Path) -> None:
    later, earlier = Txn.at(1, timedelta(minutes=10), 9.0), Txn.at(1, timedelta(minutes=5), 9.0)
    probe = Txn.at(2, timedelta(minutes=7), 1.0)
    write_transactions(repo_root, [later, earlier, probe])
    store = open_store(repo_root)
    apply_definitions(store)
    frame = offline(store, [later, probe])
    assert frame["txn_count_10m"].tolist() == [0, 1]  # the event is at 5 min: the later copy sees nothing before


def test_rows_without_an_event_id_and_without_history(windowed_store) -> None:  # type: ignore[no-untyped-def]
    entities = pd.DataFrame(
        {"user_id": [1, 99], "device_id": [10, 99], "event_timestamp": [T0 + timedelta(hours=1)] * 2}
    )
    refs = ["user_velocity:txn_count_1h", "user_velocity:amount_max_1h", "device_velocity:device_distinct_users_24h"]
    frame = windowed_store.get_historical_features(entity_df=entities, features=refs).to_df()
    assert frame["txn_count_1h"].tolist() == [6, 0]
    assert frame["amount_max_1h"].tolist() == [20.0, 0.0]  # empty windows have values, never missing
    assert frame["device_distinct_users_24h"].tolist() == [2, 0]


def test_full_feature_names_and_a_missing_join_key(windowed_store) -> None:  # type: ignore[no-untyped-def]
    entities = pd.DataFrame({"user_id": [1], "event_timestamp": [T0 + timedelta(hours=1)]})
    frame = windowed_store.get_historical_features(
        entity_df=entities, features=["user_velocity:txn_count_1h"], full_feature_names=True
    ).to_df()
    assert frame["user_velocity__txn_count_1h"].tolist() == [6]
    with pytest.raises(BadInputError, match="device_id"):
        windowed_store.get_historical_features(
            entity_df=entities, features=["device_velocity:device_distinct_users_24h"]
        ).to_df()


def test_declarations_outside_the_vocabulary_are_refused() -> None:
    with pytest.raises(BadInputError, match="median"):
        aggregate_schema([Aggregation(column="amount", function="median", time_window=timedelta(hours=1))])
    count = Aggregation(column="txn_id", function="count", time_window=timedelta(hours=1), name="n_1h")
    fresh = StreamFeatureView(
        name="fresh", entities=[user], source=transactions_push, aggregations=[count], timestamp_field="event_timestamp"
    )
    with pytest.raises(BadInputError, match="registry"):
        windowed_view(fresh)  # not applied: its join key is not resolved yet
    fresh.entity_columns = [Field(name="user_id", dtype=Int64)]
    with pytest.raises(BadInputError, match="event_id"):
        windowed_view(fresh)


def test_a_retry_long_after_its_event_is_answered_as_of_the_event(repo_root: Path) -> None:
    before, event = Txn.at(1, timedelta(0), 4.0), Txn.at(2, timedelta(hours=1), 6.0)
    retry = Txn.at(2, timedelta(hours=30), 6.0)  # the only row asked for, a day after everything it needs
    write_transactions(repo_root, [before, event, retry])
    store = open_store(repo_root)
    apply_definitions(store)
    frame = offline(store, [retry])
    assert frame["txn_count_24h"].tolist() == [1] and frame["seconds_since_last_txn"].tolist() == [3600.0]
