"""`skewless skew`: every logged decision's feature vector, rebuilt offline and compared with what was served.

The prediction logs (``data/predictions/day=*/*.parquet``, written by `skewless worker`) hold, per decision, the
vector the model saw and the transaction's entities, fields and time. For each model version, the vectors are
rebuilt through Feast's ``get_historical_features`` with the feature service the version was trained on (its
``feature_service`` tag in MLflow, or ``--feature-service``), as of each logged ``event_timestamp``; batch,
on-demand and windowed features alike. A value matches when both are missing, or both are equal strings, or
both are numbers within ``--rel-tol`` of each other (relative to the larger). The report gives, per feature,
rows compared, mismatches, their rate, the largest absolute difference and a few examples; the command writes it
as JSON (atomically) and exits 1 when any feature's mismatch rate is above ``--max-mismatch-rate``.

A transaction scored before a late event of its window had arrived is a mismatch by design (see
``feature_repo.aggregations``); on an in-order stream there are none.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from data.files import write_text_atomic
from skewless.cli_types import register_command
from skewless.errors import BadInputError, MissingDataError, SchemaMismatchError
from skewless.settings import Settings

# Logged columns that make the entity frame of the rebuild (entities, request fields, time, event id).
ENTITY_COLUMNS = ("txn_id", "user_id", "device_id", "merchant_id", "amount", "currency", "country", "channel")
_EXAMPLES = 3


@dataclass
class FeatureSkew:
    name: str
    compared: int = 0
    mismatches: int = 0
    max_abs_diff: float | None = None
    examples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def mismatch_rate(self) -> float:
        return self.mismatches / self.compared if self.compared else 0.0


@dataclass
class SkewReport:
    since: str | None
    decisions: int
    services: dict[int, str]  # model version -> feature service used for the rebuild
    rel_tol: float
    features: list[FeatureSkew]
    not_logged: list[str] = field(default_factory=list)  # service features absent from the served vectors

    @property
    def mismatches(self) -> int:
        return sum(f.mismatches for f in self.features)

    def to_dict(self) -> dict[str, Any]:
        return {
            "since": self.since,
            "decisions": self.decisions,
            "feature_services": {str(v): s for v, s in self.services.items()},
            "rel_tol": self.rel_tol,
            "mismatches": self.mismatches,
            "not_logged": self.not_logged,
            "features": [asdict(f) | {"mismatch_rate": f.mismatch_rate} for f in self.features],
        }


def parse_since(text: str) -> datetime:
    """An ISO time (UTC when it names no zone) or a day, meaning that day's midnight UTC."""
    try:
        moment = (
            datetime.combine(date.fromisoformat(text), time(), tzinfo=UTC)
            if len(text) == 10
            else datetime.fromisoformat(text)
        )
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected YYYY-MM-DD or an ISO time such as 2026-11-26T06:00, got {text!r}"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def read_decisions(predictions_dir: Path, since: datetime | None) -> pd.DataFrame:
    """Logged decisions (at or after ``since``): entity columns, ``event_timestamp``, version and served vector."""
    days = sorted(p for p in predictions_dir.glob("day=*") if p.is_dir()) if predictions_dir.is_dir() else []
    files = [f for d in days if since is None or d.name[4:] >= since.date().isoformat() for f in d.glob("*.parquet")]
    if not files:
        where = f" from {since.isoformat()} on" if since and days else ""
        raise MissingDataError(
            f"no prediction logs{where} under {predictions_dir}"
            + (f" (logged days {days[0].name[4:]} to {days[-1].name[4:]})" if days else "")
            + ": serve some transactions and run `skewless worker` to write them"
        )
    wanted = [*ENTITY_COLUMNS, "event_timestamp", "model_version", "features"]
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        scan = "read_parquet($files, union_by_name = true)"
        params: dict[str, Any] = {"files": [str(f) for f in sorted(files)]}
        have = {row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {scan}", params).fetchall()}
        missing = [c for c in wanted if c not in have]
        if missing:
            raise SchemaMismatchError(f"prediction logs under {predictions_dir} have no column(s) {missing}")
        where = " WHERE event_timestamp >= $since" if since else ""
        if since:
            params["since"] = since
        columns = ", ".join(f'"{c}"' for c in wanted)
        frame = con.execute(f"SELECT {columns} FROM {scan}{where} ORDER BY event_timestamp, txn_id", params).df()
    if frame.empty:
        raise MissingDataError(f"no logged decisions from {since.isoformat() if since else 'the start'} on")
    return frame


def compare(served: pd.Series, rebuilt: pd.Series, rel_tol: float, txn_ids: pd.Series, name: str) -> FeatureSkew:
    """Per-row match of served and rebuilt values (see the module docstring)."""
    served_values, rebuilt_values = served.to_numpy(dtype=object), rebuilt.to_numpy(dtype=object)
    result = FeatureSkew(name=name, compared=len(served_values))
    diffs = []
    for i, (a, b) in enumerate(zip(served_values, rebuilt_values, strict=True)):
        same, diff = _match(a, b, rel_tol)
        if diff is not None:
            diffs.append(diff)
        if not same:
            result.mismatches += 1
            if len(result.examples) < _EXAMPLES:
                result.examples.append({"txn_id": str(txn_ids.iloc[i]), "served": _plain(a), "rebuilt": _plain(b)})
    result.max_abs_diff = max(diffs) if diffs else None
    return result


def _match(a: Any, b: Any, rel_tol: float) -> tuple[bool, float | None]:
    if _missing(a) or _missing(b):
        return _missing(a) and _missing(b), None
    x, y = _number(a), _number(b)
    if x is None or y is None:
        return str(a) == str(b), None
    diff = abs(x - y)
    return diff <= rel_tol * max(abs(x), abs(y)), diff


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value))


def _number(value: Any) -> float | None:
    if isinstance(value, bool | np.bool_):
        return float(value)
    if isinstance(value, int | float | np.integer | np.floating):
        return float(value)
    return None


def _plain(value: Any) -> Any:
    if _missing(value):
        return None
    return value.item() if hasattr(value, "item") else value if isinstance(value, int | float | str) else str(value)


def skew_report(settings: Settings, since: datetime | None, service_name: str | None, rel_tol: float) -> SkewReport:
    """Rebuild every logged vector through Feast and compare it with what was served."""
    from skewless.store import feature_service, open_store, service_features

    decisions = read_decisions(settings.predictions_dir, since)
    store = open_store(settings.repo_root)
    services = {int(v): service_name or _trained_service(settings, int(v)) for v in decisions["model_version"].unique()}
    by_feature: dict[str, FeatureSkew] = {}
    not_logged: set[str] = set()
    for version, name in services.items():
        logged = decisions[decisions["model_version"] == version].reset_index(drop=True)
        served = pd.DataFrame.from_records([json.loads(v) for v in logged["features"]])
        service = feature_service(store, name)
        entities = logged[[*ENTITY_COLUMNS, "event_timestamp"]].copy()
        entities["txn_id"] = _event_ids(entities["txn_id"])
        rebuilt = store.get_historical_features(entity_df=entities, features=service).to_df()
        for feature in service_features(service):
            if feature not in served.columns:
                not_logged.add(feature)
                continue
            part = compare(served[feature], rebuilt[feature], rel_tol, logged["txn_id"], feature)
            total = by_feature.setdefault(feature, FeatureSkew(name=feature))
            total.compared += part.compared
            total.mismatches += part.mismatches
            diffs = [d for d in (total.max_abs_diff, part.max_abs_diff) if d is not None]
            total.max_abs_diff = max(diffs) if diffs else None
            total.examples = (total.examples + part.examples)[:_EXAMPLES]
    return SkewReport(
        since=since.isoformat() if since else None,
        decisions=len(decisions),
        services=services,
        rel_tol=rel_tol,
        features=list(by_feature.values()),
        not_logged=sorted(not_logged),
    )


def _trained_service(settings: Settings, version: int) -> str:
    from training import registry

    client = registry.connect(settings)
    model = registry.model_version(client, settings.model_name, version=version)
    name = model.tags.get("feature_service")
    if not name:
        raise MissingDataError(
            f"{settings.model_name} v{version} has no feature_service tag; pass --feature-service to rebuild with one"
        )
    return str(name)


def _event_ids(ids: pd.Series) -> pd.Series:
    """Logged ids are strings; the raw transactions' are integers. Non-numeric ids stay strings (no match)."""
    numeric = pd.to_numeric(ids, errors="coerce")
    return numeric.astype("int64") if numeric.notna().all() else ids.astype(str)


def format_table(report: SkewReport) -> str:
    lines = [f"{'feature':<30} {'compared':>9} {'mismatch':>9} {'rate':>8} {'max |diff|':>12}"]
    for f in sorted(report.features, key=lambda f: (-f.mismatch_rate, f.name)):
        diff = "-" if f.max_abs_diff is None else f"{f.max_abs_diff:.6g}"
        lines.append(f"{f.name:<30} {f.compared:>9,} {f.mismatches:>9,} {f.mismatch_rate:>8.2%} {diff:>12}")
    return "\n".join(lines)


def _skew(args: argparse.Namespace, settings: Settings) -> int:
    if not 0 <= args.rel_tol < 1:
        raise BadInputError(f"--rel-tol must be in [0, 1), got {args.rel_tol}")
    if not 0 <= args.max_mismatch_rate <= 1:
        raise BadInputError(f"--max-mismatch-rate must be in [0, 1], got {args.max_mismatch_rate}")
    report = skew_report(settings, args.since, args.feature_service, args.rel_tol)
    out = args.out or settings.reports_dir / "skew" / f"skew-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    write_text_atomic(json.dumps(report.to_dict(), indent=2, default=str) + "\n", out)
    services = ", ".join(f"v{v}: {s}" for v, s in report.services.items())
    print(f"{report.decisions:,} logged decisions rebuilt offline ({services}), rel. tolerance {report.rel_tol:g}")
    print(format_table(report))
    if report.not_logged:
        print(f"not in the served vectors (not compared): {', '.join(report.not_logged)}")
    worst = max((f.mismatch_rate for f in report.features), default=0.0)
    print(f"{report.mismatches:,} mismatches; report: {out}")
    if worst > args.max_mismatch_rate:
        print(f"skew above tolerance: worst mismatch rate {worst:.4%} > {args.max_mismatch_rate:.4%}")
        return 1
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    skew = register_command(
        sub, "skew", "rebuild logged feature vectors offline and compare with what was served", _skew
    )
    skew.add_argument("--since", type=parse_since, default=None, help="decisions at or after T (ISO time or day)")
    skew.add_argument("--feature-service", default=None, help="rebuild with this service (default: the model's tag)")
    skew.add_argument("--rel-tol", type=float, default=1e-6, help="relative tolerance of numbers (default 1e-6)")
    skew.add_argument(
        "--max-mismatch-rate", type=float, default=0.0, help="exit 1 above this share of mismatches in any feature"
    )
    skew.add_argument("--out", type=Path, default=None, help="JSON report (default data/reports/skew/skew-<time>.json)")
