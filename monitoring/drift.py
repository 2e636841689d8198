"""Comparing a window's values with a baseline summary: PSI, the KS distance and the Jensen-Shannon distance.

The current values are counted on the baseline's own bins (decile edges for PSI, the distinct percentiles for
KS; the baseline's categories plus "other" for categorical features), so a comparison needs only the stored
summary, never the baseline rows.

- **PSI** (population stability index): sum over bins of (cur - ref) * ln(cur / ref), shares floored at 1e-4.
  The usual bands: below 0.1 stable, 0.1 to 0.2 moderate, 0.2 and above significant.
- **KS distance** for numeric features: the largest gap between the two cumulative distributions, on the
  baseline's percentile grid (exact for discrete features, within about 0.01 for continuous ones).
- **Jensen-Shannon distance** (base 2, between 0 and 1) for categorical features.

Both distances are effect sizes: with a million rows every p-value is tiny, so thresholds apply to the size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import numpy as np

from monitoring.profile import (
    OTHER,
    CategoricalSummary,
    NumericSummary,
    as_numeric,
    bin_counts,
    category_counts,
)

EPSILON = 1e-4


def psi(reference: np.ndarray, current: np.ndarray) -> float:
    """PSI between two count (or share) vectors over the same bins."""
    p = _shares(reference)
    q = _shares(current)
    keep = (p > 0) | (q > 0)
    p = np.maximum(p[keep], EPSILON)
    q = np.maximum(q[keep], EPSILON)
    return float(np.sum((q - p) * np.log(q / p)))


def js_distance(reference: np.ndarray, current: np.ndarray) -> float:
    """Jensen-Shannon distance (base 2): 0 for equal distributions, 1 for disjoint ones."""
    p = _shares(reference)
    q = _shares(current)
    m = (p + q) / 2
    divergence = (_kl(p, m) + _kl(q, m)) / 2
    return float(np.sqrt(max(divergence, 0.0)))


def _kl(p: np.ndarray, m: np.ndarray) -> float:
    keep = p > 0
    return float(np.sum(p[keep] * np.log2(p[keep] / m[keep])))


def _shares(counts: np.ndarray) -> np.ndarray:
    counts = np.asarray(counts, dtype="float64")
    total = counts.sum()
    return counts / total if total > 0 else counts


def band(value: float | None, moderate: float, significant: float) -> str:
    if value is None:
        return "not judged"
    if value >= significant:
        return "significant"
    if value >= moderate:
        return "moderate"
    return "stable"


@dataclass
class Comparison:
    """One column, baseline against the window. Shares are of present (non-missing) values."""

    kind: str
    rows: int
    missing: int
    present: int
    psi: float | None
    test: str  # "ks" or "js"
    distance: float | None
    bins: list[str] = field(default_factory=list)  # labels of the PSI bins
    baseline_shares: list[float] = field(default_factory=list)
    current_shares: list[float] = field(default_factory=list)
    baseline_stats: dict[str, Any] = field(default_factory=dict)
    current_stats: dict[str, Any] = field(default_factory=dict)
    new_values: dict[str, int] = field(default_factory=dict)  # categorical: values the baseline never had

    @property
    def missing_share(self) -> float:
        return self.missing / self.rows if self.rows else 0.0


def compare_numeric(baseline: NumericSummary, values: Any) -> Comparison:
    x = as_numeric(values)
    present = x[~np.isnan(x)]
    # One pass over the values: counts on the percentile grid, summed into the decile bins (each decile edge is
    # one of the grid's percentiles) and accumulated into the cumulative shares for KS.
    grid = np.asarray(baseline.grid, dtype="float64")
    on_grid = bin_counts(grid, present)
    current_counts = _regroup(on_grid, grid, np.asarray(baseline.edges, dtype="float64"))
    if current_counts is None:
        current_counts = bin_counts(baseline.edges, present)
    comparison = Comparison(
        kind="numeric",
        rows=len(x),
        missing=len(x) - int(present.size),
        present=int(present.size),
        psi=None,
        test="ks",
        distance=None,
        bins=_edge_labels(baseline.edges),
        baseline_shares=_shares(np.asarray(baseline.counts)).tolist(),
        current_shares=_shares(current_counts).tolist(),
        baseline_stats={"mean": baseline.mean, "median": baseline.median},
        current_stats=_numeric_stats(present),
    )
    if baseline.present and present.size:
        comparison.psi = psi(np.asarray(baseline.counts), current_counts)
        below = np.cumsum(on_grid)[: len(grid)] / present.size
        comparison.distance = float(np.max(np.abs(np.asarray(baseline.cdf) - below)))
    return comparison


def _regroup(on_grid: np.ndarray, grid: np.ndarray, edges: np.ndarray) -> np.ndarray | None:
    """Counts per bin of ``edges`` from counts per bin of ``grid``; None unless every edge is a grid point."""
    if not len(edges):
        return np.asarray([on_grid.sum()])
    cut = np.searchsorted(grid, edges) + 1  # grid bins up to and including each edge
    if not len(grid) or cut[-1] > len(grid) or not np.array_equal(grid[cut - 1], edges):
        return None
    return np.add.reduceat(on_grid, np.concatenate([[0], cut]))


def _numeric_stats(present: np.ndarray) -> dict[str, Any]:
    if not present.size:
        return {"mean": None, "median": None}
    return {"mean": float(present.mean()), "median": float(np.quantile(present, 0.5, method="inverted_cdf"))}


def compare_categorical(baseline: CategoricalSummary, values: Any) -> Comparison:
    counts, missing, rows = category_counts(values)
    known = [v for v in baseline.counts if v != OTHER]
    current = [counts.get(v, 0) for v in known]
    unknown = {v: c for v, c in counts.items() if v not in baseline.counts}
    reference = [baseline.counts[v] for v in known]
    labels = list(known)
    if OTHER in baseline.counts or unknown:
        labels.append("(other)")
        reference.append(baseline.counts.get(OTHER, 0))
        current.append(sum(unknown.values()))
    ref = np.asarray(reference, dtype="float64")
    cur = np.asarray(current, dtype="float64")
    present = rows - missing
    # Values outside the baseline's top list are new only if the baseline had no "other" to hold them.
    new_values = {} if OTHER in baseline.counts else dict(sorted(unknown.items(), key=lambda p: -p[1])[:5])
    comparison = Comparison(
        kind="categorical",
        rows=rows,
        missing=missing,
        present=present,
        psi=None,
        test="js",
        distance=None,
        bins=labels,
        baseline_shares=_shares(ref).tolist(),
        current_shares=_shares(cur).tolist(),
        baseline_stats={"top": _top(dict(zip(known, reference, strict=False)))},
        current_stats={"top": _top(counts)},
        new_values=new_values,
    )
    if baseline.present and present:
        comparison.psi = psi(ref, cur)
        comparison.distance = js_distance(ref, cur)
    return comparison


def _top(counts: dict[str, int]) -> str | None:
    total = sum(counts.values())
    if not total:
        return None
    value, count = max(counts.items(), key=lambda p: p[1])
    return f"{value} ({count / total:.0%})"


def _edge_labels(edges: list[float]) -> list[str]:
    if not edges:
        return ["all"]
    labels = [f"<= {_short(edges[0])}"]
    labels += [f"{_short(lo)} - {_short(hi)}" for lo, hi in pairwise(edges)]
    labels.append(f"> {_short(edges[-1])}")
    return labels


def _short(value: float) -> str:
    if value == int(value) and abs(value) < 1e6:
        return str(int(value))
    return f"{value:.3g}"


def proportion_z(base_hits: int, base_n: int, cur_hits: int, cur_n: int) -> float:
    """Two-proportion z statistic of cur against base (0 when either side is empty or the pool is 0 or 1)."""
    if base_n == 0 or cur_n == 0:
        return 0.0
    pooled = (base_hits + cur_hits) / (base_n + cur_n)
    if pooled in (0.0, 1.0):
        return 0.0
    se = np.sqrt(pooled * (1 - pooled) * (1 / base_n + 1 / cur_n))
    return float((cur_hits / cur_n - base_hits / base_n) / se)
