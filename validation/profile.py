"""Re-profiling thresholds from data known to be good, so a suite changes only on purpose.

``profile_raw`` reads every raw file up to a day; ``profile_features`` reads each batch view's snapshot of a day.
Both compute the observed statistics with DuckDB and turn them into thresholds with the rules documented in
``validation.thresholds``, in the same layout as the committed file (keeping its ``about`` text). The CLI shows
the difference and writes only when asked.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

import duckdb

from data.files import day_file, list_days
from skewless.errors import MissingDataError
from validation import thresholds
from validation.features import table_folder
from validation.raw import FILE_DAY_SQL, MEASURES


def profile_raw(raw_dir: Path, day: date) -> dict[str, Any]:
    """Proposed ``raw.json`` from every raw file up to and including ``day``."""
    proposal: dict[str, Any] = {"about": thresholds.load("raw").get("about", "")}
    for source, measures in MEASURES.items():
        files = [day_file(raw_dir / source, d) for d in list_days(raw_dir / source) if d <= day]
        if not files:
            raise MissingDataError(f"{raw_dir / source}: no raw files up to {day} to profile")
        selects = ", ".join(f"min({sql}), max({sql})" for sql in measures.values())
        sql = f"""
            WITH t AS (
                SELECT *, CAST({FILE_DAY_SQL} + INTERVAL 1 DAY AS TIMESTAMPTZ) AS _day_end
                FROM read_parquet($files, filename = true)
            )
            SELECT {selects} FROM t
        """
        row = _query(sql, files)
        proposal[source] = {}
        for i, name in enumerate(measures):
            lo, hi = row[2 * i], row[2 * i + 1]
            if lo is not None:
                proposal[source][name] = thresholds.widen(float(lo), float(hi))
    return thresholds.keep_pinned(thresholds.load("raw"), proposal)


def profile_features(features_dir: Path, day: date, views: Sequence[Any]) -> dict[str, Any]:
    """Proposed ``features.json`` from each view's snapshot of ``day``."""
    proposal: dict[str, Any] = {"about": thresholds.load("features").get("about", "")}
    for view in views:
        path = day_file(table_folder(features_dir, view), day)
        if not path.exists():
            raise MissingDataError(f"{path}: no snapshot of {day} to profile; run `skewless pipeline` first")
        proposal[view.name] = {}
        for feature in view.features:
            proposal[view.name][feature.name] = _feature_profile(path, feature.name)
    return thresholds.keep_pinned(thresholds.load("features"), proposal)


def _feature_profile(path: Path, column: str) -> dict[str, Any]:
    col = '"' + column.replace('"', '""') + '"'
    kind, nulls, rows = _query(
        f"SELECT typeof(any_value({col})), count(*) - count({col}), count(*) FROM read_parquet($files)", [path]
    )
    share = nulls / rows if rows else 0.0
    if kind == "VARCHAR":
        values = [v for (v,) in _query_all(f"SELECT DISTINCT {col} FROM read_parquet($files)", [path]) if v]
        entry: dict[str, Any] = {"values": sorted(values)}
    else:
        lo, hi = _query(f"SELECT min({col}), max({col}) FROM read_parquet($files)", [path])
        entry = thresholds.widen(float(lo), float(hi)) if lo is not None else {}
    entry["max_null_share"] = thresholds.null_ceiling(share)
    return entry


def _query(sql: str, files: Sequence[Path]) -> tuple[Any, ...]:
    rows = _query_all(sql, files)
    return rows[0]


def _query_all(sql: str, files: Sequence[Path]) -> list[tuple[Any, ...]]:
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        return con.execute(sql, {"files": [str(f) for f in files]}).fetchall()
