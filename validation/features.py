"""Feature-table suites: one per batch feature view, with every column taken from the Feast view.

Nothing here names a feature. The expected schema of a view's daily table is the view's entity join keys, its
source's timestamp columns and its feature fields, with their Feast types; the value checks walk the same fields
and look their bounds up in ``thresholds/features.json``. A snapshot of day D (``<view>/D.parquet``) passes when:

- its Parquet schema is exactly that (checked with ``data.files.check_schema``, so a renamed, dropped, retyped or
  extra column is named precisely);
- it has rows, its entity key is never null and unique, and every row is stamped with the snapshot time, D+1
  00:00 UTC (``event_timestamp`` and ``created_timestamp``);
- it is fresh: its newest ``event_timestamp`` is not after ``as_of`` and not older than the view's TTL allows,
  so what gets materialized would still be served;
- every feature's share of nulls is under its ceiling and its values are in range (numbers) or in the known set
  (strings).
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from data import schemas
from data.files import check_schema, day_file, list_days
from skewless.errors import BadInputError, SchemaMismatchError
from validation.runner import expectations


def batch_views() -> list[Any]:
    """The batch feature views defined in feature_repo/ (on-demand and windowed views have no table to check)."""
    from feast import FeatureView

    from feature_repo.windows import is_windowed
    from skewless.store import definitions

    return [obj for obj in definitions() if isinstance(obj, FeatureView) and not is_windowed(obj)]


def table_folder(features_dir: Path, view: Any) -> Path:
    """Where the pipeline writes the view's daily tables: the last part of its source's path, under features_dir."""
    return features_dir / Path(view.batch_source.path).name


def snapshot_time(day: date) -> pd.Timestamp:
    """Tables of day D are snapshots as of the end of D: D+1 00:00 UTC."""
    return pd.Timestamp(datetime.combine(day + timedelta(days=1), time()), tz="UTC")


def latest_snapshot_day(features_dir: Path, view: Any, as_of: datetime) -> date | None:
    """The newest day whose snapshot exists and is not after ``as_of``."""
    days = [d for d in list_days(table_folder(features_dir, view)) if snapshot_time(d) <= pd.Timestamp(as_of)]
    return days[-1] if days else None


def table_schema(view: Any) -> pa.Schema:
    """The exact Parquet schema of the view's daily table, from the view's entities, source and fields."""
    from feast.types import from_feast_to_pyarrow_type

    source = view.batch_source
    fields = [pa.field(name, from_feast_to_pyarrow_type(dtype)) for name, dtype in entity_fields(view)]
    fields += [pa.field(source.timestamp_field, schemas.TS)]
    if source.created_timestamp_column:
        fields.append(pa.field(source.created_timestamp_column, schemas.TS))
    fields += [pa.field(f.name, from_feast_to_pyarrow_type(f.dtype)) for f in view.features]
    return pa.schema(fields)


def read_table(features_dir: Path, view: Any, day: date) -> pd.DataFrame:
    """The view's table of ``day``, schema checked first; errors name the file."""
    path = day_file(table_folder(features_dir, view), day)
    label = f"{table_folder(features_dir, view).name}/{path.name}"
    check_schema(path, table_schema(view), label=label)
    try:
        return pq.read_table(path).to_pandas()
    except (pa.ArrowException, OSError) as exc:
        raise SchemaMismatchError(f"{label}: not a readable Parquet file ({exc})") from exc


def feature_suite(view: Any, day: date, as_of: datetime, thresholds: dict[str, Any]) -> Any:
    """The expectation suite for the view's snapshot of ``day``, judged fresh or stale as of ``as_of``."""
    gxe = expectations()
    from great_expectations import ExpectationSuite

    source = view.batch_source
    stamp = snapshot_time(day)
    keys = [name for name, _ in entity_fields(view)]
    found: list[Any] = [gxe.ExpectTableRowCountToBeBetween(min_value=1, notes="An empty snapshot serves nothing.")]
    for key in keys:
        found += [gxe.ExpectColumnValuesToNotBeNull(column=key), gxe.ExpectColumnValuesToBeUnique(column=key)]
    for column in filter(None, [source.timestamp_field, source.created_timestamp_column]):
        found.append(
            gxe.ExpectColumnValuesToBeBetween(
                column=column, min_value=stamp, max_value=stamp, notes=f"Snapshot of {day}: every row as of {stamp}."
            )
        )
    as_of_ts = pd.Timestamp(as_of)
    found.append(
        gxe.ExpectColumnMaxToBeBetween(
            column=source.timestamp_field,
            min_value=as_of_ts - pd.Timedelta(view.ttl),
            max_value=as_of_ts,
            notes=f"Fresh: the newest snapshot is within the view's TTL ({view.ttl}) before {as_of_ts}.",
        )
    )
    bounds = thresholds.get(view.name, {})
    for feature in view.features:
        found += _feature_rules(gxe, view.name, feature.name, bounds.get(feature.name))
    return ExpectationSuite(name=f"features.{view.name}.{day.isoformat()}", expectations=found)


def _feature_rules(gxe: Any, view_name: str, feature: str, bounds: dict[str, Any] | None) -> list[Any]:
    if not bounds:
        raise BadInputError(
            f"validation/thresholds/features.json: no thresholds for feature `{feature}` of view `{view_name}`; "
            "run `skewless validate profile features --day D --write` on good data"
        )
    rules = []
    ceiling = float(bounds.get("max_null_share", 0.0))
    if ceiling < 1:
        rules.append(
            gxe.ExpectColumnValuesToNotBeNull(
                column=feature, mostly=round(1 - ceiling, 6), notes=f"At most {ceiling:.0%} of values missing."
            )
        )
    if "values" in bounds:
        rules.append(gxe.ExpectColumnValuesToBeInSet(column=feature, value_set=list(bounds["values"])))
    elif "min" in bounds or "max" in bounds:
        rules.append(
            gxe.ExpectColumnValuesToBeBetween(column=feature, min_value=bounds.get("min"), max_value=bounds.get("max"))
        )
    return rules


def entity_fields(view: Any) -> list[tuple[str, Any]]:
    """(join key, Feast type) of the view's entities: from the view when it came from the registry, else from
    the entity definitions in feature_repo/."""
    if view.entity_columns:
        return [(f.name, f.dtype) for f in view.entity_columns]
    from feast import Entity
    from feast.types import from_value_type

    from skewless.store import definitions

    entities = {e.name: e for e in definitions() if isinstance(e, Entity)}
    try:
        return [(entities[name].join_key, from_value_type(entities[name].value_type)) for name in view.entities]
    except KeyError as exc:
        raise BadInputError(
            f"feature view `{view.name}` names entity {exc} that feature_repo/ does not define"
        ) from None
