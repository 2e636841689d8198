"""A Feast RetrievalJob backed by one DuckDB query, run when the caller asks for the result.

Feast's own ``RetrievalJob.to_arrow``/``to_df`` call ``_to_arrow_internal`` and then apply on-demand feature views
and validation, so returning this job keeps ODFVs, ``full_feature_names`` handling and ``to_df`` exactly stock.
Each run opens a private in-memory DuckDB connection with UTC as its time zone (Arrow output then carries
``tz=UTC``, as stock's ibis-made results do) and closes it afterwards.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb
import ibis
import numpy as np
import pyarrow as pa
from feast.infra.offline_stores.duckdb import _write_data_source
from feast.infra.offline_stores.offline_store import RetrievalJob, RetrievalMetadata
from feast.on_demand_feature_view import OnDemandFeatureView
from feast.saved_dataset import SavedDatasetStorage

from feature_repo.stores.entity_frame import ROW_ID


@dataclass(frozen=True)
class Plan:
    """The SQL to run, the number of rows it returns when planning already found out, and a second plan to run
    when the first fails with an error containing ``fallback_when`` (an optimistic plan's own check failing)."""

    sql: str
    rows: int | None = None
    fallback: Planner | None = None
    fallback_when: str = ""
    parts: tuple[str, ...] = ()  # when set, the result is these queries' results one after another

    @property
    def queries(self) -> tuple[str, ...]:
        return self.parts or (self.sql,)


Planner = Callable[[duckdb.DuckDBPyConnection], Plan]  # registers its inputs in the connection, returns the plan


def connect(memory_limit: str | None = None, threads: int | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection set up as every query here expects; spills go to the system temp folder."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")
    spill = Path(tempfile.gettempdir()) / f"skewless-duckdb-{os.getuid() if hasattr(os, 'getuid') else 0}"
    con.execute(f"SET temp_directory = '{spill.as_posix()}'")
    if memory_limit:
        con.execute(f"SET memory_limit = '{memory_limit}'")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    return con


class DuckDBRetrievalJob(RetrievalJob):
    """Runs ``planner``'s SQL in a fresh DuckDB connection; rows carrying ``ROW_ID`` come back in entity order."""

    def __init__(
        self,
        planner: Planner,
        repo_path: str,
        full_feature_names: bool = False,
        on_demand_feature_views: list[OnDemandFeatureView] | None = None,
        metadata: RetrievalMetadata | None = None,
        memory_limit: str | None = None,
        threads: int | None = None,
    ) -> None:
        super().__init__()
        self._planner = planner
        self._repo_path = repo_path
        self._full_feature_names = full_feature_names
        self._on_demand_feature_views = on_demand_feature_views or []
        self._metadata = metadata
        self._memory_limit = memory_limit
        self._threads = threads

    @property
    def full_feature_names(self) -> bool:
        return self._full_feature_names

    @property
    def on_demand_feature_views(self) -> list[OnDemandFeatureView]:
        return self._on_demand_feature_views

    @property
    def metadata(self) -> RetrievalMetadata | None:
        return self._metadata

    def _to_arrow_internal(self, timeout: int | None = None) -> pa.Table:
        con = connect(self._memory_limit, self._threads)
        try:
            table = _table(con, self._planner(con))
        finally:
            con.close()
        return _in_entity_order(table)

    def _to_df_internal(self, timeout: int | None = None):  # type: ignore[no-untyped-def]
        return self._to_arrow_internal(timeout).to_pandas()

    @contextmanager
    def stream(
        self, rows_per_batch: int = 100_000, memory_limit: str | None = None
    ) -> Iterator[tuple[int | None, Iterator[pa.RecordBatch]]]:
        """The result as (row count if known, record batches), for callers that must not hold it all at once.

        ``memory_limit`` caps DuckDB for this run; what does not fit spills to disk.
        """
        con = connect(memory_limit or self._memory_limit, self._threads)
        try:
            plan = self._planner(con)
            batches = (batch for sql in plan.queries for batch in con.sql(sql).to_arrow_reader(rows_per_batch))
            yield plan.rows, batches
        finally:
            con.close()

    def to_sql(self) -> str:
        con = connect(self._memory_limit, self._threads)
        try:
            return self._planner(con).sql
        finally:
            con.close()

    def persist(self, storage: SavedDatasetStorage, allow_overwrite: bool = False, timeout: int | None = None) -> None:
        """Write the result (before on-demand features, as stock does) through stock's own writer."""
        _write_data_source(
            ibis.memtable(self._to_arrow_internal(timeout)),
            storage.to_data_source(),
            self._repo_path,
            "overwrite",
            allow_overwrite,
        )


def _table(con: duckdb.DuckDBPyConnection, plan: Plan) -> pa.Table:
    """The plan's whole result; when it fails with its fallback's error, the fallback plan's result."""
    try:
        tables = [con.sql(sql).to_arrow_table() for sql in plan.queries]
        return tables[0] if len(tables) == 1 else pa.concat_tables(tables)
    except duckdb.Error as exc:
        if plan.fallback is None or plan.fallback_when not in str(exc):
            raise
    return _table(con, plan.fallback(con))


def _in_entity_order(table: pa.Table) -> pa.Table:
    """Put rows back in the entity frame's order (the ASOF join shuffles them) and drop the row-id column."""
    if ROW_ID not in table.column_names:
        return table
    positions = table[ROW_ID].to_numpy()
    order = np.empty(len(positions), dtype=np.int64)
    order[positions] = np.arange(len(positions), dtype=np.int64)
    return table.drop_columns([ROW_ID]).take(pa.array(order))  # chunk by chunk: combining first copies it all
