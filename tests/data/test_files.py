from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data import schemas
from data.files import check_schema, list_days, write_parquet_atomic
from skewless.errors import MissingDataError, SchemaMismatchError


def _write(path: Path, table: pa.Table) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def _transactions(**overrides: pa.Array) -> pa.Table:
    columns = {
        "txn_id": pa.array([1], pa.int64()),
        "user_id": pa.array([1], pa.int64()),
        "device_id": pa.array([1], pa.int64()),
        "merchant_id": pa.array([1], pa.int64()),
        "amount": pa.array([9.5], pa.float64()),
        "currency": pa.array(["EUR"]),
        "country": pa.array(["DE"]),
        "channel": pa.array(["web"]),
        "event_timestamp": pa.array([0], schemas.TS),
    }
    columns.update(overrides)
    return pa.table(columns)


def test_matching_file_passes(tmp_path: Path) -> None:
    path = _write(tmp_path / "transactions" / "2026-11-03.parquet", _transactions())
    check_schema(path, schemas.TRANSACTIONS, label="transactions/2026-11-03.parquet", require_rows=True)


def test_retyped_column_is_named_with_both_types(tmp_path: Path) -> None:
    path = _write(tmp_path / "2026-11-03.parquet", _transactions(amount=pa.array(["9.5"])))
    with pytest.raises(
        SchemaMismatchError, match=r"transactions/2026-11-03.parquet: column `amount` is string, expected double"
    ):
        check_schema(path, schemas.TRANSACTIONS, label="transactions/2026-11-03.parquet")


def test_renamed_column_is_reported_as_missing_and_unexpected(tmp_path: Path) -> None:
    table = _transactions().rename_columns(
        ["txn_id", "user_id", "device_id", "merchant_id", "amt", *schemas.TRANSACTIONS.names[5:]]
    )
    path = _write(tmp_path / "2026-11-03.parquet", table)
    with pytest.raises(SchemaMismatchError) as info:
        check_schema(path, schemas.TRANSACTIONS)
    assert "column `amount` is missing" in str(info.value)
    assert "unexpected column `amt`" in str(info.value)


def test_not_parquet_and_missing_and_empty_files_are_named(tmp_path: Path) -> None:
    bogus = tmp_path / "2026-11-03.parquet"
    bogus.write_text("amount,txn_id\n1,2\n")
    with pytest.raises(SchemaMismatchError, match=r"2026-11-03\.parquet: not a readable Parquet file"):
        check_schema(bogus, schemas.TRANSACTIONS)
    with pytest.raises(MissingDataError, match=r"nope\.parquet: file not found"):
        check_schema(tmp_path / "nope.parquet", schemas.TRANSACTIONS)
    empty = _write(tmp_path / "empty.parquet", _transactions().slice(0, 0))
    with pytest.raises(SchemaMismatchError, match="no rows"):
        check_schema(empty, schemas.TRANSACTIONS, require_rows=True)


def test_atomic_write_leaves_only_the_final_file(tmp_path: Path) -> None:
    target = tmp_path / "out" / "2026-11-03.parquet"
    write_parquet_atomic(_transactions(), target)
    assert [p.name for p in target.parent.iterdir()] == [target.name]
    assert pq.read_table(target).num_rows == 1
    assert list_days(target.parent)[0].isoformat() == "2026-11-03"
