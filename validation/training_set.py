"""The training-set suite: run on a point-in-time training frame before any model sees it.

What is checked, precisely:

- size and shape: at least ``min_rows`` rows; every column of a raw transaction and the label present and never
  null; ``txn_id`` unique (one row per labelled payment, no duplicated entity rows); every feature of the
  service present as a column;
- labels: ``is_fraud`` is 0 or 1 and the fraud rate (class balance) is within ``fraud_rate`` bounds;
- features: each feature's share of nulls is at most ``max_feature_null_share`` (a join that silently failed
  leaves a column mostly empty);
- no leakage (only when the feature tables are given): Feast's output carries no feature timestamps, so the
  point-in-time join is re-derived independently. For every row and every batch view, DuckDB picks the view's
  newest snapshot whose ``event_timestamp`` is not after the row's ``event_timestamp`` and not older than the
  view's TTL (Feast's own rule), and every feature value in the frame must equal that snapshot's value (both
  missing counts as equal). A value taken from a later snapshot, from no snapshot, or computed some other way
  shows up as a mismatch, with the share of rows and sample pairs. A leak that happens to produce the same value
  as the honest join cannot be seen, and changes nothing the model learns. On-demand features are not re-derived:
  they are functions of the row's own fields and of the batch features checked here.

Thresholds are in ``thresholds/training_set.json``, set by hand; the file says why each value is what it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from data import schemas
from data.files import list_days
from validation.features import entity_fields, table_folder
from validation.runner import expectations

LABEL = "is_fraud"
AS_OF_SUFFIX = "__as_of"  # suffix of the re-derived columns set beside each batch feature


def training_suite(features: Sequence[str], thresholds: dict[str, Any], rederived: Sequence[str] = ()) -> Any:
    """The expectation suite for a training frame with ``features``; ``rederived`` features get a leakage check."""
    gxe = expectations()
    from great_expectations import ExpectationSuite

    rate = thresholds["fraud_rate"]
    found: list[Any] = [
        gxe.ExpectTableRowCountToBeBetween(min_value=int(thresholds["min_rows"]), notes="Enough rows to learn from."),
        gxe.ExpectColumnValuesToBeUnique(column="txn_id", notes="One row per labelled payment."),
        gxe.ExpectColumnValuesToBeInSet(column=LABEL, value_set=[0, 1]),
        gxe.ExpectColumnMeanToBeBetween(
            column=LABEL, min_value=rate["min"], max_value=rate["max"], notes="Class balance: the fraud rate."
        ),
    ]
    for name in [*schemas.TRANSACTIONS.names, LABEL]:
        found.append(gxe.ExpectColumnValuesToNotBeNull(column=name))
    ceiling = float(thresholds["max_feature_null_share"])
    for feature in features:
        found.append(gxe.ExpectColumnToExist(column=feature))
        found.append(gxe.ExpectColumnValuesToNotBeNull(column=feature, mostly=round(1 - ceiling, 6)))
    for feature in rederived:
        found.append(
            gxe.ExpectColumnPairValuesToBeEqual(
                column_A=feature,
                column_B=feature + AS_OF_SUFFIX,
                ignore_row_if="both_values_are_missing",
                notes="The value as of the row's own timestamp, re-derived from the feature tables (no leakage).",
            )
        )
    return ExpectationSuite(name="training_set", expectations=found)


def with_as_of_values(
    frame: pd.DataFrame, features: Sequence[str], features_dir: Path, views: Sequence[Any]
) -> tuple[pd.DataFrame, list[str]]:
    """A copy of ``frame`` with ``<feature>__as_of`` beside every batch feature it holds, re-derived point in time
    from the tables in ``features_dir``; and the names of those features. Numbers are compared as float64."""
    wanted = set(features) & set(frame.columns)
    out = frame.copy()
    rederived: list[str] = []
    for view in views:
        names = [f.name for f in view.features if f.name in wanted]
        keys = [key for key, _ in entity_fields(view)]
        if not names or not set(keys) <= set(frame.columns) or "event_timestamp" not in frame.columns:
            continue
        values = _as_of(frame, keys, names, features_dir, view)
        for name in names:
            mine, theirs = out[name], values[name]
            if pd.api.types.is_numeric_dtype(mine) or pd.api.types.is_numeric_dtype(theirs):
                out[name] = pd.to_numeric(mine, errors="coerce").astype("float64")
                theirs = pd.to_numeric(theirs, errors="coerce").astype("float64")
            out[name + AS_OF_SUFFIX] = theirs.to_numpy()
            rederived.append(name)
    return out, rederived


def _as_of(frame: pd.DataFrame, keys: list[str], names: list[str], features_dir: Path, view: Any) -> pd.DataFrame:
    """Per row of ``frame``, the view's feature values as of the row's timestamp (Feast's point-in-time rule)."""
    folder = table_folder(features_dir, view)
    files = [str(folder / f"{d.isoformat()}.parquet") for d in list_days(folder)]
    rows = frame[[*keys, "event_timestamp"]].copy()
    rows["_row"] = np.arange(len(frame))
    if not files:
        return pd.DataFrame({name: pd.Series([None] * len(frame), dtype="object") for name in names})
    ts, created = view.batch_source.timestamp_field, view.batch_source.created_timestamp_column
    ttl = view.ttl or timedelta(0)
    on = " AND ".join(f"r.{_q(k)} = s.{_q(k)}" for k in keys)
    within_ttl = f"s.{_q(ts)} >= r.event_timestamp - INTERVAL {int(ttl.total_seconds())} SECOND" if ttl else "TRUE"
    picked = ", ".join(f"CASE WHEN {within_ttl} THEN s.{_q(n)} END AS {_q(n)}" for n in names)
    # Two rows of a key at one event time: Feast keeps the one created last.
    newest = f"ORDER BY {_q(created)} DESC" if created else ""
    partition = ", ".join(_q(k) for k in [*keys, ts])
    sql = f"""
        WITH s AS (
            SELECT * FROM read_parquet($files)
            QUALIFY row_number() OVER (PARTITION BY {partition} {newest}) = 1
        )
        SELECT r._row, {picked}
        FROM rows r ASOF LEFT JOIN s ON {on} AND r.event_timestamp >= s.{_q(ts)}
        ORDER BY r._row
    """
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        con.register("rows", rows)
        result = con.execute(sql, {"files": files}).df()
    return result.drop(columns="_row").reset_index(drop=True)


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
