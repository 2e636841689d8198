"""The checks: a window of decisions against a baseline profile, as results and alerts. Pure: no I/O.

- **feature drift**: PSI band, plus KS (numeric) or Jensen-Shannon (categorical) distance; drift when PSI is
  significant or the distance reaches its threshold, judged only with enough present values on both sides;
- **missing values**: a feature's missing share rising by ``missing_increase`` (and beyond noise), and the
  share of decisions that read a feature past its TTL online (``stale_share``);
- **predictions**: score distribution PSI, block and review shares against the baseline (ratio and noise);
- **volume and latency**: decisions against the previous window, p99 of the logged scoring latency.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from monitoring.alerts import Alert
from monitoring.drift import Comparison, band, compare_categorical, compare_numeric, proportion_z
from monitoring.logs import WindowData
from monitoring.profile import CATEGORICAL, CategoricalSummary, NumericSummary, Profile, decision_counts
from monitoring.thresholds import MonitorThresholds


@dataclass
class FeatureResult:
    name: str
    kind: str
    origin: str
    status: str  # drift, moderate, stable, too few values, ignored
    psi: float | None
    psi_band: str
    test: str
    distance: float | None
    distance_threshold: float
    baseline_missing: float
    current_missing: float
    online_missing: float  # share of decisions with no stored value online
    stale: float  # share of decisions that read it past its TTL
    comparison: Comparison

    @property
    def drifted(self) -> bool:
        return self.status == "drift"


@dataclass
class Predictions:
    score: Comparison | None
    score_psi_band: str
    decisions: dict[str, dict[str, float | None]] = field(default_factory=dict)


@dataclass
class Assessment:
    features: list[FeatureResult]
    predictions: Predictions
    volume: dict[str, Any]
    latency_ms: dict[str, float | None]
    unknown_entities: dict[str, float]
    alerts: list[Alert]


@dataclass(frozen=True)
class PreviousWindow:
    """The window before, for the same model version: its decision count and recommendation counts."""

    rows: int
    decisions: dict[str, int]


def assess(
    current: WindowData,
    baseline: Profile,
    baseline_label: str,
    thresholds: MonitorThresholds,
    reference: Profile | None = None,
    previous: PreviousWindow | None = None,
) -> Assessment:
    # Features are compared on threads: the counting is NumPy and Arrow work that runs without the GIL.
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        per_feature = list(
            pool.map(
                lambda item: _feature(item[0], item[1], baseline, current, thresholds, baseline_label),
                baseline.features.items(),
            )
        )
    features = [result for result, _ in per_feature]
    alerts = [alert for _, found in per_feature for alert in found]
    predictions = _predictions(current, baseline, baseline_label, thresholds, reference, previous, alerts)
    volume = _volume(current, previous, thresholds, alerts)
    latency = _latency(current.latency_ms, thresholds, alerts)
    unknown = {k: v / current.rows for k, v in sorted(current.unknown_entities.items())} if current.rows else {}
    return Assessment(features, predictions, volume, latency, unknown, alerts)


def _feature(
    name: str,
    summary: NumericSummary | CategoricalSummary,
    baseline: Profile,
    current: WindowData,
    thresholds: MonitorThresholds,
    baseline_label: str,
) -> tuple[FeatureResult, list[Alert]]:
    alerts: list[Alert] = []
    limits = thresholds.for_feature(name)
    values = current.columns.get(name)
    if values is None:  # a request field the log does not record
        values = np.full(current.rows, np.nan)
    if isinstance(summary, CategoricalSummary):
        comparison = compare_categorical(summary, values)
        distance_limit = float(limits.js or thresholds.js)
    else:
        comparison = compare_numeric(summary, values)
        distance_limit = float(limits.ks or thresholds.ks)
    psi_limit = float(limits.psi_significant or thresholds.psi_significant)
    rows = max(current.rows, 1)
    result = FeatureResult(
        name=name,
        kind=summary.kind,
        origin=baseline.origins.get(name, "model"),
        status="stable",
        psi=comparison.psi,
        psi_band=band(comparison.psi, thresholds.psi_moderate, psi_limit),
        test=comparison.test,
        distance=comparison.distance,
        distance_threshold=distance_limit,
        baseline_missing=summary.missing_share,
        current_missing=comparison.missing_share,
        online_missing=current.online_missing.get(name, 0) / rows,
        stale=current.stale.get(name, 0) / rows,
        comparison=comparison,
    )
    if limits.ignore:
        result.status = "ignored"
        return result, alerts
    if min(summary.present, comparison.present) < thresholds.min_values or comparison.psi is None:
        result.status = "too few values"
    elif comparison.psi >= psi_limit or (comparison.distance or 0.0) >= distance_limit:
        result.status = "drift"
        alerts.append(_drift_alert(result, psi_limit, baseline_label))
    elif comparison.psi >= thresholds.psi_moderate:
        result.status = "moderate"
    missing_limit = float(limits.missing_increase or thresholds.missing_increase)
    rise = result.current_missing - result.baseline_missing
    z = proportion_z(summary.missing, summary.rows, comparison.missing, comparison.rows)
    if rise >= missing_limit and z >= thresholds.min_z:
        alerts.append(
            Alert(
                "missing_values",
                name,
                f"{name} missing {_pct(result.baseline_missing)} -> {_pct(result.current_missing)} "
                f"(+{rise * 100:.1f} points, limit +{missing_limit * 100:.1f}) against the {baseline_label}",
                round(result.current_missing, 6),
                missing_limit,
                baseline_label,
            )
        )
    if result.stale >= thresholds.stale_share:
        alerts.append(
            Alert(
                "stale_features",
                name,
                f"{name} was past its TTL online for {_pct(result.stale)} of decisions "
                f"(limit {_pct(thresholds.stale_share)})",
                round(result.stale, 6),
                thresholds.stale_share,
                "absolute",
            )
        )
    return result, alerts


def _drift_alert(result: FeatureResult, psi_limit: float, baseline_label: str) -> Alert:
    c = result.comparison
    test = "KS" if result.test == "ks" else "JS"
    parts = [f"PSI {result.psi:.3f} ({result.psi_band})", f"{test} {result.distance:.3f}"]
    if result.kind == CATEGORICAL:
        shift = f"top value {c.baseline_stats.get('top')} -> {c.current_stats.get('top')}"
        if c.new_values:
            shift += "; values never seen: " + ", ".join(f"{v!r} x{n:,}" for v, n in c.new_values.items())
    else:
        shift = (
            f"mean {_num(c.baseline_stats.get('mean'))} -> {_num(c.current_stats.get('mean'))}, "
            f"median {_num(c.baseline_stats.get('median'))} -> {_num(c.current_stats.get('median'))}"
        )
    return Alert(
        "feature_drift",
        result.name,
        f"{result.name} drifted against the {baseline_label}: {', '.join(parts)} "
        f"(limits PSI {psi_limit:g}, {test} {result.distance_threshold:g}); {shift}",
        round(float(result.psi or 0.0), 6),
        psi_limit,
        baseline_label,
    )


def _predictions(
    current: WindowData,
    baseline: Profile,
    baseline_label: str,
    thresholds: MonitorThresholds,
    reference: Profile | None,
    previous: PreviousWindow | None,
    alerts: list[Alert],
) -> Predictions:
    score = compare_numeric(baseline.score, current.scores) if baseline.score else None
    score_band = band(score.psi if score else None, thresholds.psi_moderate, thresholds.score_psi)
    if score and score.psi is not None and score.psi >= thresholds.score_psi:
        alerts.append(
            Alert(
                "score_drift",
                "risk_score",
                f"score distribution shifted against the {baseline_label}: PSI {score.psi:.3f} "
                f"(limit {thresholds.score_psi:g}), KS {score.distance:.3f}; mean "
                f"{_num(score.baseline_stats.get('mean'))} -> {_num(score.current_stats.get('mean'))}",
                round(score.psi, 6),
                thresholds.score_psi,
                baseline_label,
            )
        )
    counts = decision_counts(current.recommendations)
    decisions: dict[str, dict[str, float | None]] = {}
    for name in ("block", "review", "approve"):
        hits = counts.get(name, 0)
        row: dict[str, float | None] = {"current": hits / current.rows if current.rows else None}
        row["reference"] = reference.decision_share(name) if reference and reference.rows else None
        prev_total = sum(previous.decisions.values()) if previous else 0
        row["previous_window"] = previous.decisions.get(name, 0) / prev_total if previous and prev_total else None
        decisions[name] = row
        if name == "approve":
            continue
        base_n = sum(baseline.decisions.values())
        base_hits = baseline.decisions.get(name, 0)
        if not base_n or not current.rows:
            continue
        base_share, share = base_hits / base_n, hits / current.rows
        ratio = share / base_share if base_share else float("inf") if share else 1.0
        z = proportion_z(base_hits, base_n, hits, current.rows)
        out_of_range = ratio >= thresholds.decision_ratio or ratio <= 1 / thresholds.decision_ratio
        if out_of_range and abs(z) >= thresholds.min_z:
            alerts.append(
                Alert(
                    "decision_rate",
                    name,
                    f"{name} share {_pct(base_share)} in the {baseline_label} -> {_pct(share)} now "
                    f"({f'x{ratio:.1f}' if base_share else 'none before'}; "
                    f"alerts beyond x{thresholds.decision_ratio:g} either way)",
                    round(share, 6),
                    thresholds.decision_ratio,
                    baseline_label,
                )
            )
    return Predictions(score, score_band, decisions)


def _volume(
    current: WindowData, previous: PreviousWindow | None, thresholds: MonitorThresholds, alerts: list[Alert]
) -> dict[str, Any]:
    hours = max(current.window.length.total_seconds() / 3600, 1e-9)
    volume: dict[str, Any] = {
        "decisions": current.rows,
        "per_hour": current.rows / hours,
        "previous_window": previous.rows if previous else None,
        "change": None,
        "hourly": current.hourly,
    }
    if previous and previous.rows:
        ratio = current.rows / previous.rows
        volume["change"] = ratio
        if ratio >= thresholds.volume_ratio or ratio <= 1 / thresholds.volume_ratio:
            alerts.append(
                Alert(
                    "volume",
                    "decisions",
                    f"{current.rows:,} decisions against {previous.rows:,} in the previous window "
                    f"(x{ratio:.2f}; alerts beyond x{thresholds.volume_ratio:g} either way)",
                    round(ratio, 6),
                    thresholds.volume_ratio,
                    "previous window",
                )
            )
    return volume


def _latency(latency_ms: np.ndarray, thresholds: MonitorThresholds, alerts: list[Alert]) -> dict[str, float | None]:
    present = latency_ms[~np.isnan(latency_ms)]
    if not present.size:
        return {"mean": None, "p50": None, "p95": None, "p99": None, "max": None}
    p50, p95, p99 = (float(v) for v in np.quantile(present, [0.5, 0.95, 0.99]))
    summary: dict[str, float | None] = {
        "mean": float(present.mean()),
        "p50": p50,
        "p95": p95,
        "p99": p99,
        "max": float(present.max()),
    }
    if p99 > thresholds.latency_p99_ms:
        alerts.append(
            Alert(
                "latency",
                "latency_ms",
                f"p99 scoring latency {p99:.1f} ms (limit {thresholds.latency_p99_ms:g} ms)",
                round(p99, 3),
                thresholds.latency_p99_ms,
                "absolute",
            )
        )
    return summary


def _pct(share: float) -> str:
    return f"{share * 100:.1f}%" if share >= 0.001 or share == 0 else f"{share * 100:.2f}%"


def _num(value: Any) -> str:
    if value is None:
        return "n/a"
    value = float(value)
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
