"""SQL for reading a source's rows in a time window: all of them, or only the latest per entity key.

These back ``pull_all_from_table_or_query`` and ``pull_latest_from_table_or_query``, which materialization and
saved datasets use. The window is inclusive at both ends and the latest row is chosen by event timestamp, then
created timestamp (a missing one loses), as stock Feast does.
"""

from __future__ import annotations

from datetime import UTC, datetime

import duckdb

from feature_repo.stores.duckdb_job import Plan
from feature_repo.stores.parquet_source import ParquetTable, literal, quote

_ROWS_PER_PART = 2_500_000  # source rows whose latest-per-key sort fits DuckDB's default materialization memory


def all_rows_sql(
    table: ParquetTable, columns: list[str], timestamp: str, start: datetime | None, end: datetime | None
) -> str:
    """Every row with ``start <= timestamp <= end`` (either bound may be open), selecting ``columns``."""
    return f"SELECT {_select(columns)} FROM {table.scan} WHERE {window(timestamp, start, end)}"


def latest_rows_plan(
    con: duckdb.DuckDBPyConnection,
    table: ParquetTable,
    keys: list[str],
    columns: list[str],
    timestamp: str,
    created: str | None,
    start: datetime | None,
    end: datetime | None,
) -> Plan:
    """The latest row per ``keys`` within the window, with the number of such rows.

    One aggregate counts rows and distinct keys first. When every key appears once (a daily snapshot
    materialized day by day) the rows are streamed as they are, and the sort that picks the latest row, by far
    the dearest step, is skipped. Otherwise the keys are split by hash into parts small enough for DuckDB to sort
    in memory, and the parts are read one after the other: sorting ten million rows at once under a memory
    limit spills to disk and takes about twice as long.
    """
    where = window(timestamp, start, end)
    key_list = ", ".join(quote(k) for k in keys)
    key_tuple = f"({key_list})" if keys else "1"
    rows, distinct = con.sql(
        f"SELECT count(*), count(DISTINCT {key_tuple}) FROM {table.scan} WHERE {where}"
    ).fetchall()[0]
    select = f"SELECT {_select(columns)} FROM {table.scan} WHERE {where}"
    if rows == distinct:
        return Plan(select, rows)
    order = ", ".join(f"{quote(c)} DESC NULLS LAST" for c in [timestamp, *filter(None, [created])])
    latest = f"QUALIFY row_number() OVER ({f'PARTITION BY {key_list} ' if keys else ''}ORDER BY {order}) = 1"
    count = max(1, -(-rows // _ROWS_PER_PART)) if keys else 1
    parts = tuple(f"{select} AND hash({key_list}) % {count} = {i} {latest}" for i in range(count))
    return Plan(f"{select} {latest}", distinct, parts=parts if count > 1 else ())


def window(timestamp: str, start: datetime | None, end: datetime | None) -> str:
    """SQL for ``start <= timestamp <= end``; naive bounds are UTC, like naive data (the session zone is UTC)."""
    ts = f"CAST({quote(timestamp)} AS TIMESTAMPTZ)"
    bounds = [f"{ts} >= {_instant(start)}" if start else "", f"{ts} <= {_instant(end)}" if end else ""]
    return " AND ".join(b for b in bounds if b) or "TRUE"


def _instant(value: datetime) -> str:
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    return f"CAST({literal(aware.astimezone(UTC).isoformat())} AS TIMESTAMPTZ)"


def _select(columns: list[str]) -> str:
    return ", ".join(quote(c) for c in dict.fromkeys(columns))
