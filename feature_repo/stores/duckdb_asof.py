"""Feast's DuckDB offline store with point-in-time joins as DuckDB ASOF joins straight over the Parquet.

Configured in ``feature_store.yaml`` as ``offline_store: type: feature_repo.stores.duckdb_asof.AsofDuckDBOfflineStore``
(Feast imports the class by path and its config from the same module, named ``<class>Config``).

Stock Feast 0.67 builds the join with ibis as inner-join-then-window over every (entity row, feature row) pair
of a key: 199 s and 20 GB for 1M entity rows against 10M feature rows. Here the same answer comes from one ASOF
LEFT JOIN per view (see ``asof_join``), the entity frame is scanned in place from Arrow, and rows come back in
the entity frame's order. Everything this store does not speed up is stock's: other source kinds (Delta, S3,
Iceberg...), ``filter_by_created_timestamp``, substrait on-demand views, retrieval by date range, writes,
logging and monitoring all go to ``DuckDBOfflineStore``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
from feast.data_source import DataSource
from feast.feature_view import FeatureView
from feast.infra.offline_stores.duckdb import DuckDBOfflineStore, DuckDBOfflineStoreConfig
from feast.infra.offline_stores.offline_store import RetrievalJob, RetrievalMetadata
from feast.infra.registry.base_registry import BaseRegistry
from feast.on_demand_feature_view import OnDemandFeatureView
from feast.repo_config import RepoConfig
from pydantic import StrictStr

from feature_repo.stores.asof_join import ViewJoin, asof_sql, prepare_view
from feature_repo.stores.duckdb_job import DuckDBRetrievalJob, Plan, connect
from feature_repo.stores.entity_frame import EntityFrame, load_entity_frame, require_join_keys
from feature_repo.stores.order_key import REPACK
from feature_repo.stores.parquet_source import ParquetTable, is_local_parquet, open_table, quote
from feature_repo.stores.source_rows import all_rows_sql, latest_rows_plan
from feature_repo.stores.window_aggregates import check_windows, window_join, with_windows
from feature_repo.windows import is_windowed
from skewless.errors import BadInputError

STORE_TYPE = "feature_repo.stores.duckdb_asof.AsofDuckDBOfflineStore"


class AsofDuckDBOfflineStoreConfig(DuckDBOfflineStoreConfig):
    """Stock DuckDB settings, plus DuckDB's own limits for the queries this store runs."""

    type: StrictStr = STORE_TYPE
    memory_limit: StrictStr | None = None  # DuckDB's memory_limit, e.g. "2GB"; unset: DuckDB's default (80% of RAM)
    threads: int | None = None  # DuckDB's threads; unset: one per core


class AsofDuckDBOfflineStore(DuckDBOfflineStore):
    """``DuckDBOfflineStore`` with ASOF-join retrieval and direct Parquet pulls for local Parquet sources."""

    @staticmethod
    def get_historical_features(  # type: ignore[override]
        config: RepoConfig,
        feature_views: list[FeatureView],
        feature_refs: list[str],
        entity_df: pd.DataFrame | str | None,
        registry: BaseRegistry,
        project: str,
        full_feature_names: bool = False,
        filter_by_created_timestamp: bool = False,
        **kwargs: Any,
    ) -> RetrievalJob:
        odfvs = OnDemandFeatureView.get_requested_odfvs(feature_refs, project, registry)
        windowed = [fv for fv in feature_views if is_windowed(fv)]  # computed here, see window_aggregates
        feature_views = [fv for fv in feature_views if not is_windowed(fv)]
        if (
            entity_df is None
            or filter_by_created_timestamp
            or kwargs
            or any(odfv.mode == "substrait" for odfv in odfvs)
            or not all(is_local_parquet(fv.batch_source) for fv in feature_views)
        ):
            if windowed:
                raise BadInputError(
                    f"windowed views {[fv.name for fv in windowed]} need an entity frame, local Parquet sources and "
                    "no filter_by_created_timestamp; stock Feast cannot compute them"
                )
            return DuckDBOfflineStore.get_historical_features(
                config, feature_views, feature_refs, entity_df, registry, project, full_feature_names,
                filter_by_created_timestamp, **kwargs,
            )  # fmt: skip
        options = _options(config)
        con = connect(**options)
        try:
            frame = load_entity_frame(entity_df, con)
            joins = [_view_join(con, config, fv, feature_refs, full_feature_names) for fv in feature_views]
            windows = [window_join(con, fv, feature_refs, full_feature_names, _repo_path(config)) for fv in windowed]
        finally:
            con.close()
        require_join_keys(frame, {entity: join.name for join in joins for _, entity in join.keys})
        _check_names(frame, joins)
        check_windows(frame, {output for join in joins for _, output in join.features}, windows)

        def plan(con: duckdb.DuckDBPyConnection, exact: bool = False) -> Plan:
            con.register("__skewless_entities", frame.table)
            low, high = _bounds(con, frame)
            prepared = [prepare_view(con, join, low, high, exact) for join in joins]
            sql = asof_sql("__skewless_entities", frame.columns, frame.timestamp_column, prepared)
            sql = with_windows(sql, windows, "__skewless_entities", frame, (low, high))
            retry = None if exact else partial(plan, exact=True)  # when a packed key's own check fails
            return Plan(sql, frame.num_rows, fallback=retry, fallback_when=REPACK)

        return DuckDBRetrievalJob(
            plan,
            repo_path=str(config.repo_path),
            full_feature_names=full_feature_names,
            on_demand_feature_views=[odfv for odfv in odfvs if odfv.mode != "substrait"],
            metadata=RetrievalMetadata(
                features=feature_refs,
                keys=list(set(frame.columns) - {frame.timestamp_column}),
                min_event_timestamp=frame.min_timestamp,
                max_event_timestamp=frame.max_timestamp,
            ),
            **options,
        )

    @staticmethod
    def pull_latest_from_table_or_query(
        config: RepoConfig,
        data_source: DataSource,
        join_key_columns: list[str],
        feature_name_columns: list[str],
        timestamp_field: str,
        created_timestamp_column: str | None,
        start_date: datetime,
        end_date: datetime,
    ) -> RetrievalJob:
        if not is_local_parquet(data_source):
            return DuckDBOfflineStore.pull_latest_from_table_or_query(
                config, data_source, join_key_columns, feature_name_columns, timestamp_field,
                created_timestamp_column, start_date, end_date,
            )  # fmt: skip
        table = _source_table(config, data_source)
        columns = [*join_key_columns, *feature_name_columns, timestamp_field, *filter(None, [created_timestamp_column])]
        table.require(columns)

        def plan(con: duckdb.DuckDBPyConnection) -> Plan:
            return latest_rows_plan(
                con, table, join_key_columns, columns, timestamp_field, created_timestamp_column, start_date, end_date
            )

        return DuckDBRetrievalJob(plan, repo_path=str(config.repo_path), **_options(config))

    @staticmethod
    def pull_all_from_table_or_query(
        config: RepoConfig,
        data_source: DataSource,
        join_key_columns: list[str],
        feature_name_columns: list[str],
        timestamp_field: str,
        created_timestamp_column: str | None = None,
        start_date: datetime | None = None,
        end_date: datetime | None = None,
    ) -> RetrievalJob:
        if not is_local_parquet(data_source):
            return DuckDBOfflineStore.pull_all_from_table_or_query(
                config, data_source, join_key_columns, feature_name_columns, timestamp_field,
                created_timestamp_column, start_date, end_date,
            )  # fmt: skip
        table = _source_table(config, data_source)
        columns = [*join_key_columns, *feature_name_columns, timestamp_field, *filter(None, [created_timestamp_column])]
        table.require(columns)
        plan = Plan(all_rows_sql(table, columns, timestamp_field, start_date, end_date))
        return DuckDBRetrievalJob(lambda _: plan, repo_path=str(config.repo_path), **_options(config))


def _options(config: RepoConfig) -> dict[str, Any]:
    store = config.offline_store
    return {"memory_limit": getattr(store, "memory_limit", None), "threads": getattr(store, "threads", None)}


def _repo_path(config: RepoConfig) -> Path | None:
    return Path(config.repo_path) if config.repo_path else None


def _source_table(config: RepoConfig, source: DataSource) -> ParquetTable:
    con = connect()
    try:
        return open_table(con, source, _repo_path(config), f"data source {source.name!r}")  # type: ignore[arg-type]
    finally:
        con.close()


def _view_join(
    con: duckdb.DuckDBPyConnection, config: RepoConfig, fv: FeatureView, refs: list[str], full_names: bool
) -> ViewJoin:
    """What to read from ``fv``'s Parquet and what to call it, following stock's naming rules exactly."""
    source = fv.batch_source
    owner = f"feature view {fv.name!r}"
    table = open_table(con, source, _repo_path(config), owner)  # type: ignore[arg-type]
    original = {new: old for old, new in source.field_mapping.items()}  # field_mapping is source -> feature name
    prefix = fv.projection.name_to_use()
    names = [ref.split(":")[1] for ref in refs if ref.startswith(f"{prefix}:")]
    label = fv.projection.name_alias or fv.name
    key_map = fv.projection.join_key_map or {e.name: e.name for e in fv.entity_columns}
    join = ViewJoin(
        name=fv.name,
        table=table,
        keys=[(original.get(key, key), entity) for key, entity in key_map.items()],
        features=[(original.get(n, n), f"{label}__{n}" if full_names else n) for n in names],
        timestamp=original.get(source.timestamp_field, source.timestamp_field),
        created=original.get(source.created_timestamp_column, source.created_timestamp_column) or None,
        ttl_us=int(fv.ttl.total_seconds() * 1_000_000) if fv.ttl else None,
    )
    table.require([src for src, _ in join.keys] + [src for src, _ in join.features] + [join.timestamp])
    if join.created:
        table.require([join.created])
    return join


def _check_names(frame: EntityFrame, joins: list[ViewJoin]) -> None:
    """Fail when an output feature would collide with an entity column or another feature."""
    seen = set(frame.columns)
    for join in joins:
        for _, output in join.features:
            if output in seen:
                raise BadInputError(
                    f"feature view {join.name!r}: output column {output!r} is already an entity column or another "
                    "view's feature; rename the entity column or pass full_feature_names=True"
                )
            seen.add(output)


def _bounds(con: duckdb.DuckDBPyConnection, frame: EntityFrame) -> tuple[datetime | None, datetime | None]:
    """Earliest and latest entity timestamps as DuckDB sees them (microseconds, UTC)."""
    ts = f"CAST({quote(frame.timestamp_column)} AS TIMESTAMPTZ)"
    low, high = con.sql(f"SELECT min({ts}), max({ts}) FROM __skewless_entities").fetchall()[0]
    return (_utc(low), _utc(high))


def _utc(value: datetime | None) -> datetime | None:
    return value.astimezone(UTC) if value is not None else None
