"""The point-in-time join as one DuckDB ASOF LEFT JOIN per feature view, with Feast's exact semantics.

For each entity row and feature view, Feast takes the feature row with the same join keys whose event timestamp
is the latest at or before the entity's timestamp, breaking ties in event timestamp by the latest created
timestamp (a row without one loses), and drops it when it is older than the view's TTL (a row exactly TTL old
still counts). An ASOF join finds "the latest at or before" with a sort-merge instead of stock Feast's
inner-join-then-window, which is where the speed comes from; the tie-break rides in the join's ordering column
(see ``order_key``), and the TTL is a test on the one row found, whose event time is read back from that column.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import duckdb

from feature_repo.stores.entity_frame import ROW_ID
from feature_repo.stores.order_key import OrderKey, order_key
from feature_repo.stores.parquet_source import ParquetTable, literal, quote


@dataclass(frozen=True)
class ViewJoin:
    """One feature view's part of the join; column names are the Parquet file's, outputs the caller's."""

    name: str
    table: ParquetTable
    keys: list[tuple[str, str]]  # (source column, entity frame column)
    features: list[tuple[str, str]]  # (source column, output column)
    timestamp: str
    created: str | None
    ttl_us: int | None  # None: no TTL (Feast treats a zero TTL the same way)


@dataclass(frozen=True)
class PreparedView:
    """A view ready to join: the SQL of its visible rows and the order key both sides use."""

    view: ViewJoin
    sql: str
    order: OrderKey


def asof_sql(entities: str, entity_columns: list[str], ts_column: str, views: list[PreparedView]) -> str:
    """The whole retrieval: entity columns in the caller's order, then each view's features, then the row id."""
    ets = f"e.{quote(ts_column)}"
    select = [f"e.{quote(c)}" for c in entity_columns]
    joins = []
    for i, prepared in enumerate(views):
        view, order, alias = prepared.view, prepared.order, f"v{i}"
        on = [f"e.{quote(entity)} = {alias}.__k{j}" for j, (_, entity) in enumerate(view.keys)]
        on.append(f"{order.entity_side(ets)} >= {alias}.__order")
        joins.append(f"ASOF LEFT JOIN ({prepared.sql}) AS {alias} ON {' AND '.join(on)}")
        fresh = order.fresh(f"{alias}.__order", ets, view.ttl_us) if view.ttl_us else None
        for j, (_, output) in enumerate(view.features):
            value = f"{alias}.__f{j}"
            select.append(f"CASE WHEN {fresh} THEN {value} END" if fresh else value)
            select[-1] += f" AS {quote(output)}"
    select.append(f"e.{quote(ROW_ID)}")
    entity_rows = f"SELECT * REPLACE (CAST({quote(ts_column)} AS TIMESTAMPTZ) AS {quote(ts_column)}) FROM {entities}"
    return f"SELECT {', '.join(select)} FROM ({entity_rows}) AS e {' '.join(joins)}"


def prepare_view(
    con: duckdb.DuckDBPyConnection, view: ViewJoin, low: datetime | None, high: datetime | None, exact: bool = False
) -> PreparedView:
    """The view's rows that any entity row can see, with its join keys, features and the ASOF order key.

    ``low``/``high`` bound the entity timestamps: rows after the latest entity, or older than the earliest entity
    minus the TTL, can never be chosen, so the scan skips them (Parquet row-group statistics do the rest).
    """
    ts = f"CAST({quote(view.timestamp)} AS TIMESTAMPTZ)"
    window = _window(ts, view.ttl_us, low, high)
    order = order_key(con, view.table, view.timestamp, view.created, window, exact)
    columns = [f"{quote(src)} AS __k{j}" for j, (src, _) in enumerate(view.keys)]
    columns += [f"{quote(src)} AS __f{j}" for j, (src, _) in enumerate(view.features)]
    columns += [f"{order.feature_side(ts)} AS __order"]
    return PreparedView(
        view=view, sql=f"SELECT {', '.join(columns)} FROM {view.table.scan} WHERE {window}", order=order
    )


def _window(ts: str, ttl_us: int | None, low: datetime | None, high: datetime | None) -> str:
    if high is None:  # every entity timestamp is null: nothing can match
        return "FALSE"
    bounds = [f"{ts} <= {_timestamptz(high)}"]
    if ttl_us and low is not None:
        bounds.append(f"{ts} >= {_timestamptz(low)} - to_microseconds({ttl_us})")
    return " AND ".join(bounds)


def _timestamptz(value: datetime) -> str:
    return f"CAST({literal(value.isoformat())} AS TIMESTAMPTZ)"
