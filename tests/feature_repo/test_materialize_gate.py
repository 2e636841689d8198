"""`materialize` refuses to push a feature table online when it fails its validation suite."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from data.files import write_parquet_atomic
from skewless.errors import ValidationFailedError
from skewless.store import apply_definitions

pytestmark = pytest.mark.integration


def _activity(repo_root: Path, count: int) -> None:
    now = pd.Timestamp(datetime.now(UTC)).floor("D")
    stamps = pd.Series([now] * 2).astype("datetime64[us, UTC]")  # the pipeline writes microseconds
    frame = pd.DataFrame({"user_id": [1, 2], "event_timestamp": stamps, "created_timestamp": stamps})
    for name in ["txn_count_1d", "distinct_merchants_30d", "distinct_devices_30d", "distinct_countries_30d"]:
        frame[name] = 1
    for name in ["logins_7d", "failed_logins_7d", "foreign_ip_logins_7d"]:
        frame[name] = 0
    for name in ["amount_sum_7d", "amount_mean_30d", "amount_std_30d", "amount_max_30d"]:
        frame[name] = 10.0
    frame["txn_count_7d"] = count
    day = (now - timedelta(days=1)).date().isoformat()
    write_parquet_atomic(
        pa.Table.from_pandas(frame, preserve_index=False),
        repo_root / "data" / "features" / "user_activity" / f"{day}.parquet",
    )


def test_failing_table_is_not_pushed_online(feast_store, repo_root: Path) -> None:  # type: ignore[no-untyped-def]
    _activity(repo_root, count=-5)
    apply_definitions(feast_store)
    end = datetime.now(UTC)
    with pytest.raises(ValidationFailedError, match="txn_count_7d") as info:
        feast_store.materialize(end - timedelta(days=3), end, feature_views=["user_activity"])
    assert info.value.report_path is not None and (info.value.report_path / "result.json").exists()
    online = feast_store.get_online_features(
        features=["user_activity:txn_count_7d"], entity_rows=[{"user_id": 1}]
    ).to_dict()
    assert online["txn_count_7d"] == [None]


def test_passing_table_is_pushed(feast_store, repo_root: Path) -> None:  # type: ignore[no-untyped-def]
    _activity(repo_root, count=4)
    apply_definitions(feast_store)
    end = datetime.now(UTC)
    feast_store.materialize(end - timedelta(days=3), end, feature_views=["user_activity"])
    online = feast_store.get_online_features(
        features=["user_activity:txn_count_7d"], entity_rows=[{"user_id": 1}]
    ).to_dict()
    assert online["txn_count_7d"] == [4]
