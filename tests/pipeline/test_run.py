from __future__ import annotations

import shutil
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data.files import day_file
from pipeline.features import TABLES
from pipeline.run import run_pipeline
from skewless.errors import BadInputError, MissingDataError, SchemaMismatchError
from tests.conftest import SMALL

LAST = SMALL.start + timedelta(days=SMALL.days - 1)


@pytest.fixture
def raw(small_raw: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "raw"
    shutil.copytree(small_raw, copy)
    return copy


def _snapshot(features: Path) -> dict[str, bytes]:
    return {str(p.relative_to(features)): p.read_bytes() for p in sorted(features.rglob("*.parquet"))}


def test_pipeline_writes_every_table_for_every_day(raw: Path, tmp_path: Path) -> None:
    result = run_pipeline(raw, tmp_path / "features")
    assert len(result.days) == SMALL.days
    for name in TABLES:
        for day in result.days:
            frame = pd.read_parquet(day_file(tmp_path / "features" / name, day))
            key = frame.columns[0]
            assert frame[key].is_unique, f"{name} {day}: duplicate {key}"
            # Every row is a snapshot as of the following midnight.
            expected = pd.Timestamp(day + timedelta(days=1), tz="UTC")
            assert (frame["event_timestamp"] == expected).all()
            assert (frame["created_timestamp"] == expected).all()


def test_rerun_is_byte_identical_and_incremental_run_does_nothing(raw: Path, tmp_path: Path) -> None:
    features = tmp_path / "features"
    run_pipeline(raw, features)
    first = _snapshot(features)
    assert run_pipeline(raw, features).days == []  # nothing new
    again = run_pipeline(raw, features, SMALL.start, LAST)
    assert len(again.days) == SMALL.days
    assert _snapshot(features) == first


def test_incremental_run_computes_only_missing_days(raw: Path, tmp_path: Path) -> None:
    features = tmp_path / "features"
    run_pipeline(raw, features, SMALL.start, SMALL.start + timedelta(days=3))
    result = run_pipeline(raw, features)
    assert result.days[0] == SMALL.start + timedelta(days=4)
    assert result.days[-1] == LAST


def test_window_counts_match_a_direct_count(raw: Path, tmp_path: Path) -> None:
    run_pipeline(raw, tmp_path / "features", LAST, LAST)
    tx = pd.concat(pd.read_parquet(p) for p in (raw / "transactions").glob("*.parquet"))
    as_of = pd.Timestamp(LAST + timedelta(days=1), tz="UTC")
    recent = tx[(tx.event_timestamp < as_of) & (tx.event_timestamp >= as_of - pd.Timedelta(days=7))]
    expected = recent.groupby("user_id").size()
    activity = pd.read_parquet(day_file(tmp_path / "features" / "user_activity", LAST)).set_index("user_id")
    got = activity.loc[expected.index, "txn_count_7d"]
    assert (got.to_numpy() == expected.to_numpy()).all()
    sums = recent.groupby("user_id")["amount"].sum()
    assert (activity.loc[sums.index, "amount_sum_7d"] - sums).abs().max() < 1e-6


def test_merchant_risk_uses_only_labels_that_had_arrived(raw: Path, tmp_path: Path) -> None:
    """Labels arriving after day D must not change day D's merchant risk: it is as of the end of D."""
    features = tmp_path / "features"
    day = SMALL.start + timedelta(days=5)
    run_pipeline(raw, features, day, day)
    before = day_file(features / "merchant_risk", day).read_bytes()
    # Flip every label that arrives after D: day D's merchant risk must not move.
    for path in (raw / "labels").glob("*.parquet"):
        if date.fromisoformat(path.stem) > day:
            table = pq.read_table(path)
            flipped = pa.array(1 - table["is_fraud"].to_numpy(), pa.int8())
            pq.write_table(table.set_column(1, "is_fraud", flipped), path)
    run_pipeline(raw, features, day, day)
    assert day_file(features / "merchant_risk", day).read_bytes() == before


def test_corrupt_raw_file_is_refused_and_nothing_is_written(raw: Path, tmp_path: Path) -> None:
    target = raw / "transactions" / f"{SMALL.start + timedelta(days=2)}.parquet"
    target.write_bytes(b"PAR1 this is not parquet")
    features = tmp_path / "features"
    with pytest.raises(SchemaMismatchError, match=f"transactions/{target.name}: not a readable Parquet file"):
        run_pipeline(raw, features)
    # Days before the bad one may be complete; the bad day and later are not half-written.
    written = {p.name for p in features.rglob("*.parquet")}
    assert target.name not in written
    assert not list(features.rglob("*.tmp"))


def test_retyped_column_is_refused_naming_file_and_column(raw: Path, tmp_path: Path) -> None:
    target = raw / "transactions" / f"{SMALL.start}.parquet"
    table = pq.read_table(target)
    index = table.schema.get_field_index("amount")
    pq.write_table(table.set_column(index, "amount", table["amount"].cast(pa.string())), target)
    with pytest.raises(
        SchemaMismatchError, match=f"transactions/{target.name}: column `amount` is string, expected double"
    ):
        run_pipeline(raw, tmp_path / "features")
    assert not (tmp_path / "features").exists()


def test_missing_raw_data_and_bad_ranges_are_named(raw: Path, tmp_path: Path) -> None:
    with pytest.raises(MissingDataError, match="no raw transaction files"):
        run_pipeline(tmp_path / "nothing", tmp_path / "features")
    with pytest.raises(BadInputError, match=r"--from .* is after --to"):
        run_pipeline(raw, tmp_path / "features", LAST, SMALL.start)
    with pytest.raises(MissingDataError, match="no raw file for 1 requested day"):
        run_pipeline(raw, tmp_path / "features", LAST, LAST + timedelta(days=1))
