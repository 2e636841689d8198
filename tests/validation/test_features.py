"""Feature-table suites and the materialization gate, on the feature tables the pipeline wrote."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from data.files import day_file
from skewless.errors import MissingDataError, SchemaMismatchError, ValidationFailedError
from tests.conftest import SMALL
from tests.validation.conftest import at, rewrite
from validation.features import batch_views, snapshot_time, table_folder, table_schema
from validation.gates import feature_tables_gate

LAST = SMALL.start + timedelta(days=SMALL.days - 1)
AS_OF = snapshot_time(LAST).to_pydatetime()  # the moment the last snapshot was taken


def _views() -> dict[str, object]:
    return {view.name: view for view in batch_views()}


def test_expected_schema_comes_from_the_feast_views_and_matches_the_pipeline(small_features: Path) -> None:
    for view in batch_views():
        written = pq.read_schema(day_file(table_folder(small_features, view), LAST))
        expected = table_schema(view)
        assert [(f.name, f.type) for f in written] == [(f.name, f.type) for f in expected], view.name
        assert {f.name for f in view.features} <= set(expected.names)


def test_fresh_snapshots_pass(features: Path, tmp_path: Path) -> None:
    report = feature_tables_gate(features, batch_views(), AS_OF, tmp_path / "reports")
    assert report.success
    assert sorted(report.targets) == sorted(f"{v.name}/{LAST}.parquet" for v in batch_views())
    assert report.path is not None and (report.path / "result.json").exists()


def test_stale_snapshots_are_refused_as_of_a_later_time(features: Path, tmp_path: Path) -> None:
    later = AS_OF + timedelta(days=2, seconds=1)  # the TTL is two days
    with pytest.raises(ValidationFailedError) as info:
        feature_tables_gate(features, batch_views(), later, tmp_path / "reports")
    message = str(info.value)
    for view in batch_views():
        assert (
            f"{view.name}/{LAST}.parquet: expect_column_max_to_be_between failed on `event_timestamp`: "
            f"observed {snapshot_time(LAST).isoformat()}" in message
        )


def test_bad_values_are_refused_naming_view_feature_share_and_values(features: Path, tmp_path: Path) -> None:
    views = _views()
    activity = day_file(table_folder(features, views["user_activity"]), LAST)
    rewrite(activity, txn_count_7d=at(0, -3), amount_std_30d=lambda v: [None] * len(v))
    profile = day_file(table_folder(features, views["user_profile"]), LAST)
    rewrite(profile, home_country=at(1, "Atlantis"), user_id=lambda v: [v[0], *v[:-1]])

    with pytest.raises(ValidationFailedError) as info:
        feature_tables_gate(features, batch_views(), AS_OF, tmp_path / "reports")
    assert info.value.report_path is not None
    saved = json.loads((info.value.report_path / "result.json").read_text())
    messages = [f["message"] for f in saved["findings"]]
    expected = [
        f"user_activity/{LAST}.parquet: expect_column_values_to_be_between failed on `txn_count_7d` for",
        f"user_activity/{LAST}.parquet: expect_column_values_to_not_be_null failed on `amount_std_30d` "
        "for 100.00% of rows",
        f"user_profile/{LAST}.parquet: expect_column_values_to_be_in_set failed on `home_country`",
        f"user_profile/{LAST}.parquet: expect_column_values_to_be_unique failed on `user_id`",
    ]
    for fragment in expected:
        assert any(m.startswith(fragment) for m in messages), f"no finding starts with {fragment!r} in {messages}"
    assert len(messages) == len(expected), messages
    assert "e.g. -3" in next(m for m in messages if "`txn_count_7d`" in m)
    assert "e.g. Atlantis" in next(m for m in messages if "`home_country`" in m)
    assert (info.value.report_path / "docs" / "index.html").exists()


def test_a_changed_feature_table_schema_is_named(features: Path, tmp_path: Path) -> None:
    path = day_file(table_folder(features, _views()["merchant_risk"]), LAST)
    pq.write_table(pq.read_table(path).drop_columns(["merchant_fraud_rate"]), path)
    with pytest.raises(SchemaMismatchError, match=f"merchant_risk/{LAST}.parquet: column `merchant_fraud_rate` is"):
        feature_tables_gate(features, batch_views(), AS_OF, tmp_path / "reports")


def test_no_snapshot_before_as_of_is_missing_data(features: Path, tmp_path: Path) -> None:
    with pytest.raises(MissingDataError, match="no snapshot at or before"):
        feature_tables_gate(features, batch_views(), snapshot_time(SMALL.start).to_pydatetime() - timedelta(hours=1),
                            tmp_path / "reports")  # fmt: skip
