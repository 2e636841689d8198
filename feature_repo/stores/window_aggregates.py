"""Windowed aggregations in a historical retrieval: each entity row's features as of its own time, in DuckDB.

The definition is in ``feature_repo.aggregations``: for a row at time ``t``, a feature with window ``W`` aggregates
the other events of its entity with ``t - W <= s < t``, events deduplicated by their event id (the earliest copy
counts), and a row whose event id was seen earlier is evaluated as of that earlier time. Offline every event is
known, so late and out-of-order events are simply at their event time; the online side follows the same rule
and differs only for a transaction scored before a late event of its window had arrived.

How: the events (deduplicated over all history up to the latest row, so a copy is placed exactly) and the entity
rows are put in one stream per entity, ordered by time in microseconds, and every feature is a window function
over the rows from ``t - W`` to just before ``t``: exactly ``[t - W, t)``. Entity rows carry no values, so they
add nothing to counts, sums, maxima or distinct sets. One sort per view and ``O(n log n)`` window frames, whatever
a single user's volume; nothing here names a feature: the SQL comes from the view's ``WindowedView``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from feature_repo.stores.entity_frame import ROW_ID, EntityFrame, require_join_keys
from feature_repo.stores.parquet_source import ParquetTable, literal, open_table, quote
from feature_repo.windows import WindowedFeature, WindowedView, windowed_view
from skewless.errors import BadInputError


@dataclass(frozen=True)
class WindowJoin:
    """One windowed view's part of a retrieval: what to compute, from where, for which entity column."""

    view: WindowedView
    table: ParquetTable
    entity_key: str  # the entity frame's column holding the view's join key
    outputs: list[str]  # output column of each of ``view.features``, in order

    def required_columns(self) -> list[str]:
        return sorted({self.view.key, self.view.event_id, self.view.timestamp, *self.view.value_columns})


def window_join(
    con: duckdb.DuckDBPyConnection, fv: Any, refs: list[str], full_names: bool, repo_path: Path | None
) -> WindowJoin:
    """The requested features of windowed view ``fv``, named as stock Feast names a view's features."""
    prefix = fv.projection.name_to_use()
    names = [ref.split(":")[1] for ref in refs if ref.startswith(f"{prefix}:")]
    view = windowed_view(fv).only(names)
    label = fv.projection.name_alias or fv.name
    key_map = fv.projection.join_key_map or {}
    table = open_table(con, fv.batch_source, repo_path, f"feature view {fv.name!r}")
    join = WindowJoin(
        view=view,
        table=table,
        entity_key=key_map.get(view.key, view.key),
        outputs=[f"{label}__{f.name}" if full_names else f.name for f in view.features],
    )
    table.require(join.required_columns())
    return join


def window_sql(join: WindowJoin, entities: str, frame: EntityFrame, high: datetime | None) -> str:
    """A relation of ``(ROW_ID, <outputs>)``: one row per entity row, the view's features as of that row.

    ``high`` is the latest entity timestamp: later events can count for nobody. Events older than the earliest
    row's window only serve deduplication.
    """
    view = join.view
    ts = f"epoch_us(CAST({quote(view.timestamp)} AS TIMESTAMPTZ))"
    values = [f"__v{i}" for i in range(len(view.value_columns))]
    picked = "".join(f", {quote(c)} AS {v}" for c, v in zip(view.value_columns, values, strict=True))
    upto = f"{ts} <= {_us(high)}" if high is not None else "FALSE"
    # Every copy of an event id up to the latest row, the earliest first (ties: smallest values), so a copy is
    # placed where the online side places it, whatever window the rows need.
    tie = "".join(f", {quote(c)}" for c in [view.key, *view.value_columns])
    copies = (
        f"SELECT {quote(view.key)} AS __k, {quote(view.event_id)} AS __id, {ts} AS __t{picked}, "
        f"row_number() OVER (PARTITION BY {quote(view.event_id)} ORDER BY {ts}{tie}) AS __copy "
        f"FROM {join.table.scan} WHERE {upto}"
    )
    row_ts = f"epoch_us(CAST(e.{quote(frame.timestamp_column)} AS TIMESTAMPTZ))"
    if view.event_id in frame.columns:  # a copy of an earlier event is evaluated as of that event
        as_of = f"least({row_ts}, f.__t)"
        ids = (f"e.{quote(view.event_id)}", "f.__id")
        integers = pa.types.is_integer(frame.table.schema.field(view.event_id).type) and "INT" in (
            join.table.columns.get(view.event_id, "")
        )
        if not integers:  # e.g. ids logged as text: compare their text
            ids = tuple(f"CAST({side} AS VARCHAR)" for side in ids)
        first = f" LEFT JOIN (SELECT __id, __t FROM __copies WHERE __copy = 1) f ON {ids[0]} = {ids[1]}"
    else:
        as_of, first = row_ts, ""
    rows = f"SELECT e.{quote(ROW_ID)} AS __row, e.{quote(join.entity_key)} AS __k, {as_of} AS __t FROM {entities} e"
    # the earliest row's window start (a copy of an earlier event can move a row before the frame's earliest time)
    oldest = f" AND __t >= (SELECT min(__t) FROM __rows) - {view.horizon_us}"
    # Ordered by __o: an event at s sits at 2s, a row at t at 2t - 1, so "W PRECEDING AND 1 PRECEDING" of the row
    # is "2W - 1 PRECEDING AND CURRENT ROW": [t - W, t), with DuckDB's faster frame end. Rows without a key or a
    # time are left out here and get missing features from the LEFT JOIN.
    events = (
        f"SELECT __k, 2 * __t AS __o, __t, NULL::BIGINT AS __row, 1 AS __n, __t AS __et"
        f"{''.join(', ' + v for v in values)} "
        f"FROM __copies WHERE __copy = 1 AND __k IS NOT NULL{oldest} AND __k IN (SELECT __k FROM __rows)"
    )
    entity_rows = f"SELECT __k, 2 * __t - 1, __t, __row, NULL, NULL{', NULL' * len(values)} FROM __rows"
    windows = sorted({f.window_us for f in view.features})
    select = [f"__row AS {quote(ROW_ID)}"]
    for feature, output in zip(view.features, join.outputs, strict=True):
        select.append(
            f"{_aggregate(feature, view.value_columns, f'__w{windows.index(feature.window_us)}')} AS {quote(output)}"
        )
    named = ", ".join(
        f"__w{i} AS (PARTITION BY __k ORDER BY __o RANGE BETWEEN {2 * w - 1} PRECEDING AND CURRENT ROW)"
        for i, w in enumerate(windows)
    )
    return (
        f"WITH __copies AS MATERIALIZED ({copies}), "
        f"__rows AS (SELECT * FROM ({rows}{first}) WHERE __k IS NOT NULL AND __t IS NOT NULL) "
        f"SELECT {', '.join(select)} FROM ({events} UNION ALL {entity_rows}) "
        f"WINDOW {named} QUALIFY __row IS NOT NULL"
    )


def _aggregate(feature: WindowedFeature, values: list[str], window: str) -> str:
    """The window expression of one feature; the result type is the one its function declares."""
    column = f"__v{values.index(feature.column)}" if feature.column in values else None
    function = feature.function
    if function == "count":
        return f"count(__n) OVER {window}"
    if function == "sum":
        return f"coalesce(sum(CAST({column} AS DOUBLE)) OVER {window}, 0.0)"
    if function == "max":
        return f"coalesce(CAST(max({column}) OVER {window} AS DOUBLE), 0.0)"
    if function == "count_distinct":
        return f"count(DISTINCT {column}) OVER {window}"
    if function == "seconds_since_last":
        return f"coalesce((__t - max(__et) OVER {window}) / 1e6, {feature.empty!r})"
    raise ValueError(f"no SQL for aggregation function {function!r}")  # windows.py refuses unknown functions


def _us(value: datetime) -> str:
    return f"epoch_us(CAST({literal(value.isoformat())} AS TIMESTAMPTZ))"


def with_windows(
    base_sql: str, joins: list[WindowJoin], entities: str, frame: EntityFrame, bounds: tuple[datetime | None, ...]
) -> str:
    """``base_sql`` (which carries ``ROW_ID``) with each windowed view's outputs joined on the row id.

    ``bounds`` are the earliest and latest entity timestamps.
    """
    if not joins:
        return base_sql
    high = bounds[1]
    select = ["b.*"] + [f"w{i}.{quote(o)}" for i, join in enumerate(joins) for o in join.outputs]
    row = quote(ROW_ID)
    on = [
        f"LEFT JOIN ({window_sql(join, entities, frame, high)}) AS w{i} ON b.{row} = w{i}.{row}"
        for i, join in enumerate(joins)
    ]
    return f"SELECT {', '.join(select)} FROM ({base_sql}) AS b {' '.join(on)}"


def check_windows(frame: EntityFrame, taken: set[str], joins: list[WindowJoin]) -> None:
    """Fail naming a missing join key, or an output colliding with an entity column or another feature."""
    require_join_keys(frame, {join.entity_key: join.view.name for join in joins})
    seen = set(frame.columns) | taken
    for join in joins:
        for output in join.outputs:
            if output in seen:
                raise BadInputError(
                    f"feature view {join.view.name!r}: output column {output!r} is already an entity column or "
                    "another view's feature; rename the entity column or pass full_feature_names=True"
                )
            seen.add(output)
