"""The ASOF join's one ordering column, when Feast orders feature rows by (event time, created time).

DuckDB's ASOF join takes a single inequality column. Without a created timestamp that column is the event time.
With one, (event, created) is packed into one BIGINT: event time in a whole unit (seconds, milliseconds or
microseconds) in the high bits, created-minus-event in the same kind of unit in the low bits, code 0 for a missing
created time (it loses ties, as Feast's ``ORDER BY created DESC`` puts NULLs last). The packing is exact only
when every timestamp is a whole number of its unit and the ranges fit in 62 bits, so:

1. ranges come from the Parquet footers (no scan) and the unit from a sample of rows; when that fits, the key
   expression itself checks every row and raises ``REPACK`` on one that breaks the assumption;
2. otherwise, or after a ``REPACK``, one aggregate over the window measures the exact ranges and units;
3. when even those do not fit, a (event, created) STRUCT key is used: exact as well, about twice as slow.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from feature_repo.stores.parquet_source import ParquetTable

REPACK = "skewless: packed ASOF key does not fit this data"
_PACK_BITS = 62  # keep clear of the sign bit and of overflow in the entity-side expression
_UNITS = (1_000_000, 1_000, 1)  # microseconds per second, per millisecond, per microsecond
_SAMPLE_ROWS = 65_536
_PER_MICRO = {"milliseconds": 1_000, "microseconds": 1}  # multiply raw by this; nanoseconds are divided by 1000


@dataclass(frozen=True)
class Packing:
    """Parameters of the packed (event, created) BIGINT key."""

    t_min: int
    t_max: int
    t_unit: int
    d_min: int
    d_unit: int
    bits: int
    checked: bool  # False: taken from footers and a sample, so every row is verified as the key is computed


@dataclass(frozen=True)
class OrderKey:
    """How a view's rows and the entity rows line up for the ASOF join: by timestamp, packed BIGINT or STRUCT."""

    created: str | None  # SQL for the created timestamp; None when the view has none
    packing: Packing | None = None

    def feature_side(self, ts: str) -> str:
        if self.created is None:
            return ts
        if self.packing is None:
            return f"{{'t': {ts}, 'c': coalesce({self.created}, '-infinity'::TIMESTAMPTZ)}}"
        p, t, c = self.packing, f"epoch_us({ts})", f"epoch_us({self.created})"
        code = f"CASE WHEN {c} IS NULL THEN 0 ELSE ({c} - {t} - {p.d_min}) // {p.d_unit} + 1 END"
        key = f"(({t} - {p.t_min}) // {p.t_unit}) * {1 << p.bits} + {code}"
        if p.checked:
            return key
        broken = (
            f"{t} < {p.t_min} OR {t} > {p.t_max} OR ({t} - {p.t_min}) % {p.t_unit} <> 0 "
            f"OR ({c} - {t} - {p.d_min}) NOT BETWEEN 0 AND {((1 << p.bits) - 2) * p.d_unit} "
            f"OR ({c} - {t} - {p.d_min}) % {p.d_unit} <> 0"
        )
        return f"CASE WHEN {broken} THEN error('{REPACK}') ELSE {key} END"

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

    def fresh(self, order: str, ets: str, ttl_us: int) -> str:
        """SQL: the matched row (its order key is ``order``) is at most ``ttl_us`` older than ``ets``.

        The row's event time is read back from its order key, so the join carries no separate timestamp.
        """
        if self.created is None:
            return f"{order} >= {ets} - to_microseconds({ttl_us})"
        if self.packing is None:
            return f"{order}.t >= {ets} - to_microseconds({ttl_us})"
        p = self.packing
        return f"{p.t_min} + {order} // {1 << p.bits} * {p.t_unit} >= epoch_us({ets}) - {ttl_us}"


def order_key(
    con: duckdb.DuckDBPyConnection, table: ParquetTable, timestamp: str, created: str | None, window: str, exact: bool
) -> OrderKey:
    """The order key for a view; ``exact`` skips the footer shortcut (after it raised ``REPACK``)."""
    ts = f"CAST({_quote(timestamp)} AS TIMESTAMPTZ)"
    if created is None:
        return OrderKey(created=None)
    created_sql = f"CAST({_quote(created)} AS TIMESTAMPTZ)"
    packing = None if exact else _from_footers(con, table, timestamp, created, ts, created_sql)
    return OrderKey(created=created_sql, packing=packing or _from_data(con, table, ts, created_sql, window))


def _from_footers(
    con: duckdb.DuckDBPyConnection, table: ParquetTable, timestamp: str, created: str, ts: str, created_sql: str
) -> Packing | None:
    """Ranges from Parquet statistics, units from a sample; None when statistics are missing or it cannot fit."""
    t_range, c_range = _footer_range(table.path, timestamp), _footer_range(table.path, created)
    if t_range is None or c_range is None:
        return None
    t, d = f"epoch_us({ts})", f"(epoch_us({created_sql}) - epoch_us({ts}))"
    sample = con.sql(
        f"SELECT {_unit_checks(t, d)} FROM (SELECT {ts} AS {_quote(timestamp)}, {created_sql} AS {_quote(created)} "
        f"FROM {table.scan} LIMIT {_SAMPLE_ROWS})"
    ).fetchall()[0]
    t_unit, d_unit = _unit(sample[:3]), _unit(sample[3:])
    d_min, d_max = c_range[0] - t_range[1], c_range[1] - t_range[0]
    return _fit(t_range[0] - t_range[0] % t_unit, t_range[1], t_unit, d_min - d_min % d_unit, d_max, d_unit, False)


def _from_data(
    con: duckdb.DuckDBPyConnection, table: ParquetTable, ts: str, created: str, window: str
) -> Packing | None:
    """Exact ranges and units from one aggregate over the rows in ``window``; None when they cannot fit."""
    t, d = f"epoch_us({ts})", f"(epoch_us({created}) - epoch_us({ts}))"
    row = con.sql(
        f"SELECT count(*), min({t}), max({t}), min({d}), max({d}), {_unit_checks(t, d)} "
        f"FROM {table.scan} WHERE {window}"
    ).fetchall()[0]
    count, t_min, t_max, d_min, d_max = row[:5]
    if not count:
        return Packing(t_min=0, t_max=0, t_unit=1, d_min=0, d_unit=1, bits=1, checked=True)
    return _fit(t_min, t_max, _unit(row[5:8]), d_min or 0, d_max or 0, _unit(row[8:11]), True)


def _fit(t_min: int, t_max: int, t_unit: int, d_min: int, d_max: int, d_unit: int, checked: bool) -> Packing | None:
    codes = (d_max - d_min) // d_unit + 2  # code 0 is a missing created timestamp
    bits = max(1, (codes - 1).bit_length())
    slots = (t_max - t_min) // t_unit + 1
    if slots.bit_length() + bits > _PACK_BITS:
        return None
    return Packing(t_min=t_min, t_max=t_max, t_unit=t_unit, d_min=d_min, d_unit=d_unit, bits=bits, checked=checked)


def _unit_checks(t: str, d: str) -> str:
    return ", ".join([f"bool_and({t} % {u} = 0)" for u in _UNITS] + [f"bool_and({d} % {u} = 0)" for u in _UNITS])


def _unit(checks: tuple[bool | None, ...]) -> int:
    """The coarsest unit every value is a whole number of (a check over no values passes)."""
    return next(u for u, ok in zip(_UNITS, checks, strict=True) if ok is not False)


def _footer_range(path: Path, column: str) -> tuple[int, int] | None:
    """Min and max of a timestamp column in microseconds, from the footers of every Parquet file under ``path``."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*.parquet") if p.is_file())
    low: int | None = None
    high: int | None = None
    for file in files:
        metadata = pq.ParquetFile(file).metadata
        schema = metadata.schema
        names = [schema.column(i).name for i in range(metadata.num_columns)]
        if column not in names:
            return None
        index = names.index(column)
        logical = json.loads(schema.column(index).logical_type.to_json())
        unit = logical.get("timeUnit") if logical.get("Type") == "Timestamp" else None
        if unit not in (*_PER_MICRO, "nanoseconds"):
            return None
        for group in range(metadata.num_row_groups):
            stats = metadata.row_group(group).column(index).statistics
            if stats is None or not stats.has_min_max or stats.physical_type != "INT64":
                return None
            lo, hi = _micros(stats.min_raw, unit), _micros(stats.max_raw, unit)
            low, high = lo if low is None else min(low, lo), hi if high is None else max(high, hi)
    return None if low is None or high is None else (low, high)


def _micros(raw: int, unit: str) -> int:
    return raw // 1_000 if unit == "nanoseconds" else raw * _PER_MICRO[unit]


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'
