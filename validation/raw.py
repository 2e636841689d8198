"""Raw-source suites: one per source, built in code from ``data/schemas.py`` and ``thresholds/raw.json``.

A raw file is checked in two steps. First its Parquet schema against the source's schema, with
``data.files.check_schema``: a renamed, dropped, retyped or unexpected column stops everything with one precise
line, before a row is read. Then its values against the source's suite, which holds file by file:

- every column the schema marks non-nullable is never null, and the record key is unique within its file;
- every row belongs in its file: its partition timestamp falls on the file's day (UTC, ``[D, D+1)``). That is
  ``event_timestamp`` for transactions and behaviour, ``reported_at`` for labels (filed by arrival day),
  ``first_seen`` for devices and ``registered_at`` for users. The *first* devices and users files also hold
  everything that existed before the first day, so there only the end of the day bounds them;
- categorical columns hold known values (countries, currencies, channels, device types, operating systems,
  login event types, label sources); labels are 0 or 1 and agree with their source; a failed login has no
  session and a successful one has; an account signs up no later than its file's day;
- measures stay in the plausible ranges of ``thresholds/raw.json`` (amounts, sessions, ages, a device's age at
  first sighting, a label's delay after its payment); money, counts and delays are never negative.

Many files of a source are validated as one frame, each row tagged with its file (``_file``) and the file's day
bounds (``_day_start``, ``_day_end``) so that every expectation still holds per file: Great Expectations costs
about half a second per suite run however small the frame, and a pipeline run can read hundreds of files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from data import schemas
from data.files import check_schema, list_days
from skewless.errors import BadInputError, SchemaMismatchError
from validation.runner import expectations

KEYS = {
    "transactions": "txn_id",
    "behaviour": "event_id",
    "devices": "device_id",
    "users": "user_id",
    "labels": "txn_id",
}
PARTITION_COLUMNS = {
    "transactions": "event_timestamp",
    "behaviour": "event_timestamp",
    "devices": "first_seen",
    "users": "registered_at",
    "labels": "reported_at",
}
HOLDS_EARLIER_IN_FIRST_FILE = frozenset({"devices", "users"})
KYC_LEVELS = (0, 1, 2, 3)  # data/schemas.py: 0 none .. 3 fully verified
LABEL_SOURCES = {1: "chargeback", 0: "cleared"}  # data/schemas.py: 1 fraud confirmed (chargeback), 0 cleared

# Measures with plausible ranges in thresholds/raw.json, as DuckDB SQL over a source's rows. The profile computes
# them with these expressions and validation adds them as columns, so both read the same definition.
# `_day_end` is the end of the row's file day (D+1 00:00 UTC).
MEASURES: dict[str, dict[str, str]] = {
    "transactions": {"amount": "amount"},
    "behaviour": {"session_seconds": "session_seconds"},
    "devices": {"first_seen_age_days": "epoch(_day_end - first_seen) / 86400"},
    "users": {
        "age_years": "year(_day_end - INTERVAL 1 MICROSECOND) - birth_year",
        "total_spend_before": "total_spend_before",
        "orders_before": "orders_before",
    },
    "labels": {"report_delay_days": "epoch(reported_at - txn_timestamp) / 86400"},
}
FILE_DAY_SQL = r"CAST(regexp_extract(filename, '(\d{4}-\d{2}-\d{2})\.parquet$', 1) AS DATE)"


@dataclass(frozen=True)
class Partition:
    """One raw day file, and whether it is its source's first (which may hold earlier records)."""

    path: Path
    source: str
    day: date
    first: bool

    @property
    def label(self) -> str:
        return f"{self.source}/{self.day.isoformat()}.parquet"


def partition_of(raw_dir: Path, path: Path) -> Partition:
    """The partition a raw file holds, from its folder (the source) and name (the day)."""
    source = path.parent.name
    if source not in schemas.SOURCES:
        raise BadInputError(f"{path}: not in a raw source folder (expected one of {', '.join(schemas.SOURCES)})")
    try:
        day = date.fromisoformat(path.name.removesuffix(".parquet"))
    except ValueError:
        raise BadInputError(f"{path}: a raw file is named YYYY-MM-DD.parquet") from None
    days = list_days(raw_dir / source)
    return Partition(path=path, source=source, day=day, first=bool(days) and day == days[0])


def check_partition_schema(partition: Partition) -> None:
    """Schema-change detection before anything is read: columns renamed, dropped, retyped or unexpected."""
    schema = schemas.SOURCES[partition.source]
    check_schema(partition.path, schema, label=partition.label, require_rows=partition.source == "transactions")


def read_partitions(parts: Sequence[Partition]) -> pd.DataFrame:
    """The files of one source (schemas already checked) as one frame, with file tags, day bounds and measures."""
    source = parts[0].source
    earlier = [str(p.path) for p in parts if p.first and source in HOLDS_EARLIER_IN_FIRST_FILE]
    derived = "".join(f", {sql} AS {name}" for name, sql in MEASURES[source].items() if sql != name)
    file_day = f"{FILE_DAY_SQL} AS _file_day," if source == "users" else ""  # signup_date is checked against it
    sql = f"""
        WITH tagged AS (
            SELECT * EXCLUDE (filename),
                   '{source}/' || regexp_extract(filename, '[^/\\\\]+$') AS _file,
                   {file_day}
                   CASE WHEN list_contains($earlier, filename) THEN NULL
                        ELSE CAST({FILE_DAY_SQL} AS TIMESTAMPTZ) END AS _day_start,
                   CAST({FILE_DAY_SQL} + INTERVAL 1 DAY AS TIMESTAMPTZ) AS _day_end
            FROM read_parquet($files, filename = true)
        )
        SELECT *{derived} FROM tagged
    """
    try:
        with duckdb.connect() as con:
            con.execute("SET TimeZone = 'UTC'")
            params = {"files": [str(p.path) for p in parts], "earlier": earlier}
            table = con.sql(sql, params=params).to_arrow_table()
    except duckdb.Error as exc:
        shown = ", ".join(p.label for p in parts[:3]) + (" ..." if len(parts) > 3 else "")
        raise SchemaMismatchError(f"{shown}: cannot read the Parquet data ({exc})") from exc
    return _compact(table)


def _compact(table: pa.Table) -> pd.DataFrame:
    """Strings as categoricals and one consolidated block per dtype: GX's pandas engine copies and filters the
    whole frame for most expectations, and this makes each pass several times cheaper on millions of rows."""
    for i, field in enumerate(table.schema):
        if pa.types.is_string(field.type) or pa.types.is_large_string(field.type):
            table = table.set_column(i, field.name, pc.dictionary_encode(table.column(i)))
    frame = table.to_pandas()
    frame._consolidate_inplace()
    return frame


def batches(parts: Sequence[Partition], max_rows: int) -> list[list[Partition]]:
    """Files of one source per batch, up to ``max_rows`` rows each (counted from their Parquet footers)."""
    found: list[list[Partition]] = []
    for source in schemas.SOURCES:
        rows = 0
        for part in (p for p in parts if p.source == source):
            size = pq.ParquetFile(part.path).metadata.num_rows
            if not found or found[-1][0].source != source or rows + size > max_rows:
                found.append([])
                rows = 0
            found[-1].append(part)
            rows += size
    return found


def batch_label(batch: Sequence[Partition]) -> str:
    if len(batch) == 1:
        return batch[0].label
    return f"{batch[0].source}/{batch[0].day.isoformat()}..{batch[-1].day.isoformat()} ({len(batch)} files)"


def raw_suite(source: str, thresholds: dict[str, Any]) -> Any:
    """The expectation suite for the files of one raw source (see the module docstring)."""
    gxe = expectations()
    from great_expectations import ExpectationSuite

    ranges = thresholds.get(source, {})
    found = [gxe.ExpectColumnValuesToNotBeNull(column=f.name) for f in schemas.SOURCES[source] if not f.nullable]
    found.append(
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["_file", KEYS[source]], notes="The key is unique per file.")
    )
    found += _inside_partition(gxe, source)
    found += _SOURCE_RULES[source](gxe)
    found += [_in_range(gxe, ranges, source, measure) for measure in MEASURES[source]]
    return ExpectationSuite(name=f"raw.{source}", expectations=found)


def _inside_partition(gxe: Any, source: str) -> list[Any]:
    column = PARTITION_COLUMNS[source]
    note = f"Rows are filed by the UTC day of {column}."
    if source in HOLDS_EARLIER_IN_FIRST_FILE:
        note += f" The first {source} file also holds records from before its day: no lower bound there."
    return [
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A=column, column_B="_day_start", or_equal=True, ignore_row_if="either_value_is_missing", notes=note
        ),
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="_day_end", column_B=column, notes=note),
    ]


def _in_range(gxe: Any, ranges: dict[str, Any], source: str, measure: str) -> Any:
    bounds = ranges.get(measure) or {}
    if "min" not in bounds or "max" not in bounds:
        raise BadInputError(
            f"validation/thresholds/raw.json: no range for `{source}.{measure}`; "
            "run `skewless validate profile raw --day D --write` on good data"
        )
    return gxe.ExpectColumnValuesToBeBetween(
        column=measure,
        min_value=max(0.0, float(bounds["min"])),
        max_value=float(bounds["max"]),
        notes="Never negative; the upper bound is a plausibility limit from validation/thresholds/raw.json.",
    )


def _transactions(gxe: Any) -> list[Any]:
    return [
        gxe.ExpectColumnValuesToBeInSet(column="currency", value_set=list(schemas.CURRENCIES)),
        gxe.ExpectColumnValuesToBeInSet(column="country", value_set=list(schemas.COUNTRIES)),
        gxe.ExpectColumnValuesToBeInSet(column="channel", value_set=list(schemas.CHANNELS)),
    ]


def _behaviour(gxe: Any) -> list[Any]:
    from great_expectations.expectations.row_conditions import Column

    return [
        gxe.ExpectColumnValuesToBeInSet(column="event_type", value_set=list(schemas.BEHAVIOUR_EVENTS)),
        gxe.ExpectColumnValuesToBeInSet(column="ip_country", value_set=list(schemas.COUNTRIES)),
        gxe.ExpectColumnValuesToNotBeNull(
            column="session_seconds",
            row_condition=Column("event_type") == "login_success",
            notes="A successful login opens a session.",
        ),
        gxe.ExpectColumnValuesToBeNull(
            column="session_seconds",
            row_condition=Column("event_type") == "login_failed",
            notes="A failed login has no session.",
        ),
    ]


def _devices(gxe: Any) -> list[Any]:
    return [
        gxe.ExpectColumnValuesToBeInSet(column="device_type", value_set=list(schemas.DEVICE_TYPES)),
        gxe.ExpectColumnValuesToBeInSet(column="os", value_set=list(schemas.OPERATING_SYSTEMS)),
    ]


def _users(gxe: Any) -> list[Any]:
    return [
        gxe.ExpectColumnValuesToBeInSet(column="home_country", value_set=list(schemas.COUNTRIES)),
        gxe.ExpectColumnValuesToBeInSet(column="kyc_level", value_set=list(KYC_LEVELS)),
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A="_file_day",
            column_B="signup_date",
            or_equal=True,
            notes="An account signs up no later than the day its record reaches us.",
        ),
    ]


def _labels(gxe: Any) -> list[Any]:
    from great_expectations.expectations.row_conditions import Column

    # Agreement of label and source as two conditional set checks: GX's pair-in-set check loops row by row in
    # Python (minutes on a day of labels), these are vectorised.
    agree = [
        gxe.ExpectColumnValuesToBeInSet(
            column="label_source",
            value_set=[source],
            row_condition=Column("is_fraud") == label,
            notes="Fraud is confirmed by a chargeback; a cleared payment is not fraud.",
        )
        for label, source in LABEL_SOURCES.items()
    ]
    return [
        gxe.ExpectColumnValuesToBeInSet(column="is_fraud", value_set=sorted(LABEL_SOURCES)),
        gxe.ExpectColumnValuesToBeInSet(column="label_source", value_set=sorted(LABEL_SOURCES.values())),
        *agree,
    ]


_SOURCE_RULES = {
    "transactions": _transactions,
    "behaviour": _behaviour,
    "devices": _devices,
    "users": _users,
    "labels": _labels,
}
