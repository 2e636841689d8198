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

    One aggregate counts rows and distinct keys first: when every key appears once (a daily snapshot
    materialized day by day), the rows are streamed as they are, and the sort that picks the latest row, by far
    the dearest step, is skipped. Otherwise the latest rows are computed into a temporary table before they are
    read: DuckDB then sorts with all its threads and spills within its memory limit, instead of trickling the
    window's output to the reader.
    """
    where = window(timestamp, start, end)
    key_tuple = f"({', '.join(quote(k) for k in keys)})" if keys else "1"
    rows, distinct = con.sql(
        f"SELECT count(*), count(DISTINCT {key_tuple}) FROM {table.scan} WHERE {where}"
    ).fetchall()[0]
    select = f"SELECT {_select(columns)} FROM {table.scan} WHERE {where}"
    if rows == distinct:
        return Plan(select, rows)
    order = ", ".join(f"{quote(c)} DESC NULLS LAST" for c in [timestamp, *filter(None, [created])])
    partition = f"PARTITION BY {', '.join(quote(k) for k in keys)} " if keys else ""
    return Plan(f"{select} QUALIFY row_number() OVER ({partition}ORDER BY {order}) = 1", distinct, materialize=True)


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
