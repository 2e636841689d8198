"""Raw-source suites and the raw gate, on real Parquet files of the small generated dataset."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data.files import day_file
from skewless.errors import BadInputError, MissingDataError, SchemaMismatchError, ValidationFailedError
from tests.conftest import SMALL
from tests.validation.conftest import at, rewrite
from validation.gates import raw_files_gate

DAY = [SMALL.start + timedelta(days=i) for i in range(SMALL.days)]


def _all_files(raw: Path) -> list[Path]:
    return sorted(raw.glob("*/*.parquet"))


def _file(raw: Path, source: str, i: int) -> Path:
    return day_file(raw / source, DAY[i])


def test_clean_files_pass_and_the_result_is_saved(raw: Path, tmp_path: Path) -> None:
    report = raw_files_gate(raw, _all_files(raw), tmp_path / "reports", remember=False)
    assert report.success
    assert len(report.targets) == 5 * SMALL.days
    assert report.path is not None and (report.path / "result.json").exists()
    saved = json.loads((report.path / "result.json").read_text())
    assert saved["success"] is True and saved["findings"] == []
    assert {r["suite_name"] for r in saved["results"]} == {
        "raw.transactions",
        "raw.devices",
        "raw.users",
        "raw.behaviour",
        "raw.labels",
    }


def test_every_broken_rule_is_named_with_file_column_share_and_values(raw: Path, tmp_path: Path) -> None:
    rewrite(_file(raw, "transactions", 2), amount=lambda v: [-5.0, -7.5, *v[2:]])
    rewrite(_file(raw, "transactions", 3), currency=at(0, "XXX"))
    rewrite(_file(raw, "transactions", 4), event_timestamp=at(0, _utc(DAY[5]) + timedelta(hours=1)))
    rewrite(_file(raw, "transactions", 5), txn_id=lambda v: [v[0], v[0], *v[2:]])
    rewrite(_file(raw, "transactions", 6), user_id=at(3, None))
    labels = _file(raw, "labels", 6)
    cleared = pq.read_table(labels)["label_source"].to_pylist().index("cleared")
    rewrite(labels, is_fraud=at(cleared - 1 if cleared else cleared + 1, 2), label_source=at(cleared, "chargeback"))
    rewrite(_file(raw, "behaviour", 1), session_seconds=_session_on_first_failed_login(_file(raw, "behaviour", 1)))
    rewrite(_file(raw, "users", 0), birth_year=at(0, 1850), registered_at=at(1, _utc(DAY[0]) - timedelta(days=30)))
    rewrite(_file(raw, "devices", 1), first_seen=lambda v: [_utc(DAY[0]) - timedelta(hours=1)] * len(v))

    with pytest.raises(ValidationFailedError) as info:
        raw_files_gate(raw, _all_files(raw), tmp_path / "reports", remember=False)
    report_path = info.value.report_path
    assert report_path is not None and str(report_path) in str(info.value)
    messages = [f["message"] for f in json.loads((report_path / "result.json").read_text())["findings"]]
    expected = [
        f"transactions/{DAY[2]}.parquet: expect_column_values_to_be_between failed on `amount` for",
        f"transactions/{DAY[3]}.parquet: expect_column_values_to_be_in_set failed on `currency` for",
        f"transactions/{DAY[4]}.parquet: expect_column_pair_values_a_to_be_greater_than_b failed on "
        "`_day_end` vs `event_timestamp`",
        f"transactions/{DAY[5]}.parquet: expect_compound_columns_to_be_unique failed on `txn_id`",
        f"transactions/{DAY[6]}.parquet: expect_column_values_to_not_be_null failed on `user_id`",
        f"labels/{DAY[6]}.parquet: expect_column_values_to_be_in_set failed on `is_fraud`",
        f"labels/{DAY[6]}.parquet: expect_column_values_to_be_in_set failed on `label_source` for",
        f"behaviour/{DAY[1]}.parquet: expect_column_values_to_be_null failed on `session_seconds`",
        f"users/{DAY[0]}.parquet: expect_column_values_to_be_between failed on `age_years`",
        f"devices/{DAY[1]}.parquet: expect_column_pair_values_a_to_be_greater_than_b failed on "
        "`first_seen` vs `_day_start` for 100.00% of rows",
    ]
    for fragment in expected:
        assert any(m.startswith(fragment) for m in messages), f"no finding starts with {fragment!r} in {messages}"
    assert len(messages) == len(expected), messages
    amount = next(m for m in messages if "`amount`" in m)
    assert "e.g. -5, -7.5" in amount and "(expected min_value=0, max_value=" in amount
    assert "e.g. XXX" in next(m for m in messages if "`currency`" in m)
    assert "e.g. chargeback (expected value_set=[cleared], where `is_fraud` == 0)" in next(
        m for m in messages if "`label_source`" in m
    )
    # The first users file may hold accounts registered before its day; only the implausible age is refused.
    assert not any(m.startswith(f"users/{DAY[0]}.parquet") and "registered_at" in m for m in messages)
    assert (report_path / "docs" / "index.html").exists()


def _utc(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _session_on_first_failed_login(path: Path):  # type: ignore[no-untyped-def]
    events = pq.read_table(path, columns=["event_type"])["event_type"].to_pylist()
    return at(events.index("login_failed"), 120.0)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.rename_columns(["txn_id", "user_id", "device_id", "merchant_id", "amt", *t.column_names[5:]]),
         "column `amount` is missing (expected double); unexpected column `amt` (double)"),
        (lambda t: t.drop_columns(["channel"]), "column `channel` is missing (expected string)"),
        (lambda t: t.set_column(4, "amount", t["amount"].cast(pa.string())),
         "column `amount` is string, expected double"),
        (lambda t: t.append_column("note", pa.array(["x"] * t.num_rows)), "unexpected column `note` (string)"),
    ],
    ids=["renamed", "dropped", "retyped", "new"],
)  # fmt: skip
def test_schema_changes_are_named_before_any_value_is_read(raw: Path, tmp_path: Path, change, message) -> None:  # type: ignore[no-untyped-def]
    path = _file(raw, "transactions", 4)
    pq.write_table(change(pq.read_table(path)), path)
    with pytest.raises(SchemaMismatchError) as info:
        raw_files_gate(raw, _all_files(raw), tmp_path / "reports")
    assert str(info.value) == f"transactions/{path.name}: {message}"
    assert not (tmp_path / "reports").exists()


def test_every_schema_change_is_listed_at_once(raw: Path, tmp_path: Path) -> None:
    for source in ("devices", "labels"):
        path = _file(raw, source, 2)
        pq.write_table(pq.read_table(path).drop_columns([pq.read_schema(path).names[-1]]), path)
    with pytest.raises(SchemaMismatchError) as info:
        raw_files_gate(raw, _all_files(raw), tmp_path / "reports")
    assert str(info.value).splitlines() == [
        f"devices/{DAY[2]}.parquet: column `first_seen` is missing (expected timestamp[us, tz=UTC])",
        f"labels/{DAY[2]}.parquet: column `reported_at` is missing (expected timestamp[us, tz=UTC])",
    ]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: p.write_bytes(b""), "not a readable Parquet file"),
        (lambda p: p.write_text("txn_id,amount\n1,2.0\n"), "not a readable Parquet file"),
        (lambda p: pq.write_table(pq.read_table(p).slice(0, 0), p), "file has no rows"),
        (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "not a readable Parquet file"),
    ],
    ids=["empty", "csv", "no-rows", "truncated"],
)
def test_unreadable_files_are_refused_naming_the_file(raw: Path, tmp_path: Path, damage, message) -> None:  # type: ignore[no-untyped-def]
    path = _file(raw, "transactions", 7)
    damage(path)
    with pytest.raises(SchemaMismatchError, match=f"transactions/{path.name}: {message}"):
        raw_files_gate(raw, _all_files(raw), tmp_path / "reports")


def test_a_source_folder_that_is_a_file_or_a_misnamed_file_is_refused(raw: Path, tmp_path: Path) -> None:
    stray = raw / "labels" / "latest.parquet"
    stray.write_bytes(b"")
    with pytest.raises(BadInputError, match=r"latest\.parquet: a raw file is named YYYY-MM-DD\.parquet"):
        raw_files_gate(raw, [stray], tmp_path / "reports")
    devices = sorted((raw / "devices").iterdir())
    for path in devices:
        path.unlink()
    (raw / "devices").rmdir()
    (raw / "devices").write_text("not a folder")
    with pytest.raises(MissingDataError, match="devices: expected a folder of day files, found a file"):
        raw_files_gate(raw, devices, tmp_path / "reports")
