"""The entity frame of a historical retrieval, checked and turned into an Arrow table DuckDB can scan in place.

Stock Feast accepts only a pandas frame here (a SQL string fails with ``AttributeError``) and reports a missing
join key as whatever DuckDB says about an unknown column. This module accepts both forms, treats timezone-naive
timestamps as UTC (as stock does), and names the missing or unusable column and what the frame has instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from feast.infra.offline_stores.offline_utils import DEFAULT_ENTITY_DF_EVENT_TIMESTAMP_COL

from skewless.errors import BadInputError

ROW_ID = "__skewless_row"  # the entity row's position, used to give rows back in the order they came


@dataclass(frozen=True)
class EntityFrame:
    """Entity rows as Arrow (plus a row-position column), their timestamp column and its range."""

    table: pa.Table
    timestamp_column: str
    columns: list[str]  # the caller's columns, in the caller's order
    min_timestamp: datetime | None
    max_timestamp: datetime | None

    @property
    def num_rows(self) -> int:
        return self.table.num_rows


def load_entity_frame(entity_df: pd.DataFrame | str, con: duckdb.DuckDBPyConnection) -> EntityFrame:
    """Check ``entity_df`` (a frame, or SQL that DuckDB runs) and convert it, without copying a frame's columns."""
    if isinstance(entity_df, str):
        try:
            table = con.sql(entity_df).to_arrow_table()
        except duckdb.Error as exc:
            raise BadInputError(f"entity SQL failed in DuckDB: {exc}") from exc
    elif isinstance(entity_df, pd.DataFrame):
        table = _frame_to_arrow(entity_df)
    else:
        raise BadInputError(f"entity_df must be a pandas DataFrame or a SQL string, got {type(entity_df).__name__}")
    if ROW_ID in table.column_names:
        raise BadInputError(f"entity frame: column name {ROW_ID!r} is reserved")
    ts_column = _timestamp_column(table)
    table = table.set_column(table.column_names.index(ts_column), ts_column, _as_utc(table[ts_column], ts_column))
    columns = list(table.column_names)
    table = table.append_column(ROW_ID, pa.array(np.arange(table.num_rows, dtype=np.int64)))
    low, high = _range(table[ts_column])
    return EntityFrame(table=table, timestamp_column=ts_column, columns=columns, min_timestamp=low, max_timestamp=high)


def require_join_keys(frame: EntityFrame, keys: dict[str, str]) -> None:
    """Fail naming each join key (and the feature view that needs it) missing from the entity frame."""
    missing = {column: view for column, view in keys.items() if column not in frame.columns}
    if missing:
        needs = ", ".join(f"{column!r} (for feature view {view!r})" for column, view in missing.items())
        raise BadInputError(f"entity frame is missing join key column(s) {needs}; it has {frame.columns}")


def _frame_to_arrow(frame: pd.DataFrame) -> pa.Table:
    if frame.columns.duplicated().any():
        raise BadInputError(
            f"entity frame has duplicate column names: {list(frame.columns[frame.columns.duplicated()])}"
        )
    try:
        return pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowException, ValueError, TypeError) as exc:
        raise BadInputError(f"entity frame cannot be converted to Arrow: {exc}") from exc


def _timestamp_column(table: pa.Table) -> str:
    """``event_timestamp`` when present, else the one timestamp column, as Feast infers it."""
    if DEFAULT_ENTITY_DF_EVENT_TIMESTAMP_COL in table.column_names:
        return DEFAULT_ENTITY_DF_EVENT_TIMESTAMP_COL
    candidates = [f.name for f in table.schema if pa.types.is_timestamp(f.type)]
    if len(candidates) == 1:
        return candidates[0]
    found = f"several timestamp columns {candidates}" if candidates else "no timestamp column"
    raise BadInputError(
        f"entity frame needs a {DEFAULT_ENTITY_DF_EVENT_TIMESTAMP_COL!r} column with each row's point in time; "
        f"it has {found} among {table.column_names}"
    )


def _as_utc(column: pa.ChunkedArray, name: str) -> pa.ChunkedArray:
    """Timestamps as UTC instants; naive ones are read as UTC and strings are parsed, as stock Feast does."""
    if pa.types.is_timestamp(column.type):
        if column.type.tz is None:
            return column.cast(pa.timestamp(column.type.unit, tz="UTC"))
        return column
    try:
        parsed = pd.to_datetime(column.to_pandas(), utc=True)
    except (ValueError, TypeError, OverflowError) as exc:
        raise BadInputError(f"entity frame column {name!r} ({column.type}) does not hold timestamps: {exc}") from exc
    return pa.chunked_array([pa.Array.from_pandas(parsed)])


def _range(column: pa.ChunkedArray) -> tuple[datetime | None, datetime | None]:
    if column.null_count == len(column):
        return None, None
    bounds = pc.min_max(column)
    return bounds["min"].as_py(), bounds["max"].as_py()
