"""Reading the prediction logs that `skewless worker` writes: ``predictions/day=YYYY-MM-DD/*.parquet``.

Each row is one decision: the served feature vector as a JSON object (``features``), the request fields, the
score, the recommendation, the model version, the missing/stale/unknown lists (JSON arrays) and the batch's
scoring latency. DuckDB reads only the day folders a window touches, filters on ``event_timestamp`` (a window
is half-open, ``[start, end)``), and parses each feature vector once into typed columns.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from monitoring.profile import CATEGORICAL, FeatureSpec
from skewless.errors import BadInputError, MissingDataError

_DAY_DIR = re.compile(r"^day=(\d{4}-\d{2}-\d{2})$")
_DURATION = re.compile(r"^\s*(\d+)\s*([mhdw])\s*$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime

    @classmethod
    def ending(cls, end: datetime, length: timedelta) -> Window:
        return cls(end - length, end)

    @property
    def length(self) -> timedelta:
        return self.end - self.start

    def previous(self) -> Window:
        return Window(self.start - self.length, self.start)

    def days(self) -> list[date]:
        last = (self.end - timedelta(microseconds=1)).date()
        return [self.start.date() + timedelta(days=i) for i in range((last - self.start.date()).days + 1)]

    def __str__(self) -> str:
        return f"[{self.start.isoformat()}, {self.end.isoformat()})"


def parse_duration(text: str) -> timedelta:
    """``30m``, ``6h``, ``1d``, ``2w``. Zero is an empty window and refused."""
    match = _DURATION.match(text)
    if not match:
        raise BadInputError(f"--window {text!r}: expected a number and a unit (m, h, d or w), such as 1d or 6h")
    amount = int(match.group(1))
    if amount == 0:
        raise BadInputError(f"--window {text!r} is an empty window; give a positive length such as 1d")
    return timedelta(**{_UNITS[match.group(2)]: amount})


def parse_until(text: str) -> datetime:
    """An ISO time (UTC when it names no zone) or a day, meaning that day's midnight UTC."""
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(), tzinfo=UTC)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadInputError(f"--until {text!r}: expected YYYY-MM-DD or an ISO time such as 2026-11-26T06:00") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass
class WindowData:
    """One model version's decisions in a window, as typed columns."""

    window: Window
    model_version: int
    rows: int
    columns: dict[str, pa.ChunkedArray]
    scores: np.ndarray
    recommendations: pa.Array
    latency_ms: np.ndarray
    online_missing: dict[str, int] = field(default_factory=dict)
    stale: dict[str, int] = field(default_factory=dict)
    unknown_entities: dict[str, int] = field(default_factory=dict)
    hourly: dict[str, int] = field(default_factory=dict)
    absent: list[str] = field(default_factory=list)  # request fields the log has no column for


class PredictionLogs:
    """The log folder, queried with an embedded DuckDB."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._con = duckdb.connect()
        self._con.execute("SET TimeZone = 'UTC'")
        self._con.execute("SET enable_object_cache = true")  # Parquet footers read once, not once per query

    def close(self) -> None:
        self._con.close()

    def logged_days(self) -> list[date]:
        if not self.root.is_dir():
            return []
        days = []
        for child in self.root.iterdir():
            match = _DAY_DIR.match(child.name)
            if match and child.is_dir():
                days.append(date.fromisoformat(match.group(1)))
        return sorted(days)

    def files(self, window: Window) -> list[str]:
        return [
            str(p) for day in window.days() for p in sorted((self.root / f"day={day.isoformat()}").glob("*.parquet"))
        ]

    def require(self, window: Window, what: str = "window") -> list[str]:
        """The window's files; MissingDataError saying what is there instead when there are none."""
        files = self.files(window)
        if files:
            return files
        days = self.logged_days()
        if not self.root.is_dir() or not days:
            raise MissingDataError(
                f"no prediction logs under {self.root}: run `skewless worker` to write the logged decisions"
            )
        raise MissingDataError(
            f"no prediction logs in the {what} {window} under {self.root} "
            f"(logged days: {days[0]} to {days[-1]}, {len(days)} in all)"
        )

    def versions(self, window: Window, what: str = "window") -> dict[int, int]:
        """Decisions per model version in the window (empty when the window has no rows)."""
        files = self.require(window, what)
        rows = self._rows(
            f"SELECT model_version, count(*) FROM {{scan}} WHERE {_in_window()} GROUP BY 1 ORDER BY 1",
            _params(files, window),
        )
        return {int(v): int(n) for v, n in rows if v is not None}

    def decisions(self, window: Window, version: int) -> dict[str, int]:
        """Recommendation counts of one version in a window, without reading the feature vectors."""
        files = self.files(window)
        if not files:
            return {}
        rows = self._rows(
            f"SELECT recommendation, count(*) FROM {{scan}} WHERE {_in_window()} AND model_version = $version "
            "GROUP BY 1",
            _params(files, window) | {"version": version},
        )
        return {str(r): int(n) for r, n in rows}

    def read(self, window: Window, version: int, specs: list[FeatureSpec]) -> WindowData:
        """One scan of the files: typed feature columns (each vector parsed once), scores, decisions, lists."""
        files = self.require(window)
        logged = self._logged_columns(files)
        model = [s for s in specs if s.origin == "model"]
        request = [s for s in specs if s.origin == "request" and s.name in logged]
        absent = [s.name for s in specs if s.origin == "request" and s.name not in logged]
        structure = json.dumps({s.name: "VARCHAR" if s.kind == CATEGORICAL else "DOUBLE" for s in model})
        request_cols = "".join(f", {_ident(s.name)} AS {_ident('r:' + s.name)}" for s in request)
        vector = f", from_json(features, {_literal(structure)}) AS _f" if model else ""
        table = self._table(
            "SELECT risk_score, recommendation, latency_ms, missing_features, stale_features, unknown_entities, "
            f"date_trunc('hour', event_timestamp) AS _hour{request_cols}{vector} "
            f"FROM {{scan}} WHERE {_in_window()} AND model_version = $version",
            _params(files, window) | {"version": version},
        )
        columns: dict[str, pa.ChunkedArray] = {}
        if model:
            chunks, struct = table.column("_f").chunks, table.schema.field("_f").type
            for i, spec in enumerate(model):
                columns[spec.name] = pa.chunked_array([c.field(i) for c in chunks], type=struct.field(i).type)
        for spec in request:
            columns[spec.name] = table.column(f"r:{spec.name}")
        # The lists and the hourly counts are counted from the rows already in memory, not from the files again.
        lists = table.select(["missing_features", "stale_features", "unknown_entities", "_hour"])
        self._con.register("_window", lists)
        try:
            counted = self._rows(
                """
                SELECT kind, name, count(*) FROM (
                    SELECT 'missing' AS kind, unnest(from_json(missing_features, '["VARCHAR"]')) AS name FROM _window
                    UNION ALL SELECT 'stale', unnest(from_json(stale_features, '["VARCHAR"]')) FROM _window
                    UNION ALL SELECT 'unknown', unnest(from_json(unknown_entities, '["VARCHAR"]')) FROM _window
                ) GROUP BY 1, 2
                """,
                {},
            )
            hourly = self._rows(
                "SELECT strftime(_hour, '%Y-%m-%dT%H:00Z'), count(*) FROM _window GROUP BY 1 ORDER BY 1", {}
            )
        finally:
            self._con.unregister("_window")
        per_kind: dict[str, dict[str, int]] = {"missing": {}, "stale": {}, "unknown": {}}
        for kind, name, count in counted:
            if name is not None:
                per_kind[kind][str(name)] = int(count)
        return WindowData(
            window=window,
            model_version=version,
            rows=table.num_rows,
            columns=columns,
            scores=_floats(table.column("risk_score")),
            recommendations=table.column("recommendation").combine_chunks(),
            latency_ms=_floats(table.column("latency_ms")),
            online_missing=per_kind["missing"],
            stale=per_kind["stale"],
            unknown_entities=per_kind["unknown"],
            hourly={str(h): int(n) for h, n in hourly},
            absent=absent,
        )

    def _logged_columns(self, files: list[str]) -> set[str]:
        """Columns of the window's first and last files (reading every footer costs a second per 1,000 files).
        A column that appears between them reads as null in the files without it."""
        try:
            return {name for path in {files[0], files[-1]} for name in pq.read_schema(path).names}
        except (OSError, pa.ArrowInvalid) as exc:
            raise BadInputError(f"prediction log file unreadable: {exc}") from exc

    def _rows(self, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        return self._run(sql, params, arrow=False)  # type: ignore[no-any-return]

    def _table(self, sql: str, params: dict[str, Any]) -> pa.Table:
        return self._run(sql, params, arrow=True)

    def _run(self, sql: str, params: dict[str, Any], arrow: bool) -> Any:
        """Run ``sql`` with ``{scan}`` reading the files; unreadable logs become an error naming the folder.

        The files are first read as sharing one schema, which binds in a fraction of the time; when they do not
        (the log format changed inside the window), the query runs again matching their columns by name.
        """
        for union in (False, True):
            try:
                relation = self._con.sql(sql.replace("{scan}", _scan(union)), params=params)
                return relation.to_arrow_table() if arrow else relation.fetchall()
            except duckdb.Error as exc:
                if not union and "{scan}" in sql:
                    continue
                raise BadInputError(f"prediction logs under {self.root} cannot be read: {exc}") from exc


def _scan(union: bool) -> str:
    return f"read_parquet($files, union_by_name = {str(union).lower()})"


def _in_window() -> str:
    return "event_timestamp >= $start AND event_timestamp < $end"


def _params(files: list[str], window: Window) -> dict[str, Any]:
    return {"files": files, "start": window.start, "end": window.end}


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _floats(column: pa.ChunkedArray) -> np.ndarray:
    return np.asarray(column.cast(pa.float64()).to_numpy(), dtype="float64")
