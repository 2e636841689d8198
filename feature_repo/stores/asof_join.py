"""The point-in-time join as one DuckDB ASOF LEFT JOIN per feature view, with Feast's exact semantics.

For each entity row and feature view, Feast takes the feature row with the same join keys whose event timestamp
is the latest at or before the entity's timestamp, breaking ties in event timestamp by the latest created
timestamp (a row without one loses), and drops it when it is older than the view's TTL (a row exactly TTL old
still counts). An ASOF join finds "the latest at or before" with a sort-merge instead of stock Feast's
inner-join-then-window, which is where the speed comes from.

DuckDB's ASOF join takes one inequality column. Without a created timestamp that column is the event timestamp
itself. With one, both are packed into a single BIGINT that sorts like (event, created): event time in its
coarsest exact unit (seconds, milliseconds or microseconds) shifted left, and the created-minus-event offset in
the low bits. Whether the packing fits in 62 bits is decided from the data in the join window (one cheap
aggregate); when it does not, a (event, created) STRUCT key is used instead, exact too but about twice as slow.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import duckdb

from feature_repo.stores.entity_frame import ROW_ID
from feature_repo.stores.parquet_source import ParquetTable, literal, quote

_PACK_BITS = 62  # keep clear of the sign bit and of overflow in the entity-side expression
_UNITS = (1_000_000, 1_000, 1)  # whole seconds, milliseconds, microseconds


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
class _Packing:
    """Parameters of the packed (event, created) BIGINT key; see the module docstring."""

    t_min: int
    t_max: int
    t_unit: int
    d_min: int
    d_unit: int
    bits: int


@dataclass(frozen=True)
class OrderKey:
    """How a view's rows and the entity rows line up for the ASOF join: by timestamp, packed BIGINT or STRUCT."""

    created: str | None  # SQL for the created timestamp; None when the view has none
    packing: _Packing | None = None

    def feature_side(self, ts: str) -> str:
        if self.created is None:
            return ts
        if self.packing is None:
            return f"{{'t': {ts}, 'c': coalesce({self.created}, '-infinity'::TIMESTAMPTZ)}}"
        p, t, c = self.packing, f"epoch_us({ts})", f"epoch_us({self.created})"
        code = f"CASE WHEN {c} IS NULL THEN 0 ELSE ({c} - {t} - {p.d_min}) // {p.d_unit} + 1 END"
        return f"(({t} - {p.t_min}) // {p.t_unit}) * {1 << p.bits} + {code}"

    def entity_side(self, ets: str) -> str:
        """Sorts after every feature row whose event time is at or before ``ets``, and before all later ones."""
        if self.created is None:
            return ets
        if self.packing is None:
            return f"{{'t': {ets}, 'c': 'infinity'::TIMESTAMPTZ}}"
        p, e = self.packing, f"epoch_us({ets})"
        top = (1 << p.bits) - 1
        last = (((p.t_max - p.t_min) // p.t_unit) << p.bits) + top
        return (
            f"(CASE WHEN {e} < {p.t_min} THEN -1 WHEN {e} > {p.t_max} THEN {last} "
            f"ELSE (({e} - {p.t_min}) // {p.t_unit}) * {1 << p.bits} + {top} END)"
        )


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
        view, alias = prepared.view, f"v{i}"
        on = [f"e.{quote(entity)} = {alias}.__k{j}" for j, (_, entity) in enumerate(view.keys)]
        on.append(f"{prepared.order.entity_side(ets)} >= {alias}.__order")
        joins.append(f"ASOF LEFT JOIN ({prepared.sql}) AS {alias} ON {' AND '.join(on)}")
        fresh = f"{alias}.__ts >= {ets} - to_microseconds({view.ttl_us})" if view.ttl_us else None
        for j, (_, output) in enumerate(view.features):
            value = f"{alias}.__f{j}"
            select.append(f"CASE WHEN {fresh} THEN {value} END" if fresh else value)
            select[-1] += f" AS {quote(output)}"
    select.append(f"e.{quote(ROW_ID)}")
    entity_rows = f"SELECT * REPLACE (CAST({quote(ts_column)} AS TIMESTAMPTZ) AS {quote(ts_column)}) FROM {entities}"
    return f"SELECT {', '.join(select)} FROM ({entity_rows}) AS e {' '.join(joins)}"


def prepare_view(
    con: duckdb.DuckDBPyConnection, view: ViewJoin, low: datetime | None, high: datetime | None
) -> PreparedView:
    """The view's rows that any entity row can see, with its join keys, features and the ASOF order key.

    ``low``/``high`` bound the entity timestamps: rows after the latest entity, or older than the earliest entity
    minus the TTL, can never be chosen, so the scan skips them (Parquet row-group statistics do the rest).
    """
    ts = f"CAST({quote(view.timestamp)} AS TIMESTAMPTZ)"
    window = _window(ts, view.ttl_us, low, high)
    created = f"CAST({quote(view.created)} AS TIMESTAMPTZ)" if view.created else None
    order = OrderKey(created=created, packing=_packing(con, view.table, ts, created, window) if created else None)
    columns = [f"{quote(src)} AS __k{j}" for j, (src, _) in enumerate(view.keys)]
    columns += [f"{quote(src)} AS __f{j}" for j, (src, _) in enumerate(view.features)]
    columns += [f"{ts} AS __ts", f"{order.feature_side(ts)} AS __order"]
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


def _packing(
    con: duckdb.DuckDBPyConnection, table: ParquetTable, ts: str, created: str, window: str
) -> _Packing | None:
    """Packing parameters when (event, created) fits in one BIGINT over the rows in ``window``, else None."""
    t, d = f"epoch_us({ts})", f"(epoch_us({created}) - epoch_us({ts}))"
    checks = [f"bool_and({t} % {u} = 0)" for u in _UNITS] + [f"bool_and({d} % {u} = 0)" for u in _UNITS]
    row = con.sql(
        f"SELECT count(*), min({t}), max({t}), min({d}), max({d}), {', '.join(checks)} FROM {table.scan} WHERE {window}"
    ).fetchall()[0]
    count, t_min, t_max, d_min, d_max = row[:5]
    if not count:
        return _Packing(t_min=0, t_max=0, t_unit=1, d_min=0, d_unit=1, bits=1)
    t_unit = next(u for u, ok in zip(_UNITS, row[5:8], strict=True) if ok is not False)
    d_unit = next(u for u, ok in zip(_UNITS, row[8:11], strict=True) if ok is not False)
    d_min, d_max = (d_min or 0), (d_max or 0)
    codes = (d_max - d_min) // d_unit + 2  # code 0 is a missing created timestamp
    bits = max(1, (codes - 1).bit_length())
    slots = (t_max - t_min) // t_unit + 1
    if slots.bit_length() + bits > _PACK_BITS:
        return None
    return _Packing(t_min=t_min, t_max=t_max, t_unit=t_unit, d_min=d_min, d_unit=d_unit, bits=bits)
