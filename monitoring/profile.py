"""Distribution profiles: what a feature, the score and the decisions looked like over some rows.

A profile is the baseline a window of prediction logs is compared with. The reference profile is made at training
time from the validation window (held-out rows, scored by the model being registered); a previous-window profile
is made the same way from logged decisions. Both are plain JSON, so a profile from last month still reads.

Per numeric feature it keeps percentiles (as observed values, so counts and flags stay exact), the cumulative
share at each distinct percentile (for the KS distance), decile bin edges with the count per bin (for PSI), the
missing share and the moments. Per categorical feature it keeps the most frequent values with their counts and
lumps the rest as "other". Everything is computed from the values given; nothing here knows a feature's name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from skewless.errors import BadInputError

FORMAT = 1
Kind = Literal["numeric", "categorical"]
NUMERIC: Kind = "numeric"
CATEGORICAL: Kind = "categorical"
PERCENTILES = np.linspace(0, 1, 101)
FEATURE_BINS = tuple(i / 10 for i in range(1, 10))  # deciles
# Scores are skewed towards 0 and the decisions live in the top few percent, so the tail gets bins of its own.
SCORE_BINS = (*FEATURE_BINS, 0.95, 0.98, 0.995)
MAX_CATEGORIES = 50
OTHER = "__other__"
DECISIONS = ("block", "review", "approve")


@dataclass(frozen=True)
class NumericSummary:
    rows: int
    missing: int
    quantiles: list[float]  # at PERCENTILES, observed values
    grid: list[float]  # the distinct quantiles
    cdf: list[float]  # share of present values <= grid[i]
    edges: list[float]  # PSI bins: (-inf, e0], (e0, e1], ..., (e_last, inf)
    counts: list[int]  # present values per bin, len(edges) + 1
    mean: float | None
    std: float | None
    kind: Kind = NUMERIC

    @property
    def present(self) -> int:
        return self.rows - self.missing

    @property
    def missing_share(self) -> float:
        return self.missing / self.rows if self.rows else 0.0

    @property
    def median(self) -> float | None:
        return self.quantiles[50] if self.quantiles else None


@dataclass(frozen=True)
class CategoricalSummary:
    rows: int
    missing: int
    counts: dict[str, int]  # the most frequent values, then OTHER for the rest
    kind: Kind = CATEGORICAL

    @property
    def present(self) -> int:
        return self.rows - self.missing

    @property
    def missing_share(self) -> float:
        return self.missing / self.rows if self.rows else 0.0


Summary = NumericSummary | CategoricalSummary


@dataclass(frozen=True)
class FeatureSpec:
    """A monitored column: a model feature (in the logged feature vector) or a request field (a log column)."""

    name: str
    kind: Kind
    origin: Literal["model", "request"]


@dataclass(frozen=True)
class Profile:
    source: str
    rows: int
    start: str | None
    end: str | None
    feature_service: str
    features: dict[str, Summary]
    origins: dict[str, str]
    score: NumericSummary | None
    decisions: dict[str, int]
    thresholds: dict[str, float] = field(default_factory=dict)

    @property
    def specs(self) -> list[FeatureSpec]:
        return [FeatureSpec(n, s.kind, self.origins.get(n, "model")) for n, s in self.features.items()]  # type: ignore[arg-type]

    def decision_share(self, recommendation: str) -> float:
        total = sum(self.decisions.values())
        return self.decisions.get(recommendation, 0) / total if total else 0.0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["format"] = FORMAT
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "profile") -> Profile:
        """Read a profile written by ``to_dict``; a clear error naming ``where`` when it is not one."""
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            found = data.get("format") if isinstance(data, Mapping) else type(data).__name__
            raise BadInputError(f"{where}: not a monitoring profile of format {FORMAT} (format: {found!r})")
        try:
            features = {name: _summary_from(s) for name, s in data["features"].items()}
            score = NumericSummary(**data["score"]) if data.get("score") else None
            return cls(
                source=str(data["source"]),
                rows=int(data["rows"]),
                start=data.get("start"),
                end=data.get("end"),
                feature_service=str(data["feature_service"]),
                features=features,
                origins=dict(data.get("origins", {})),
                score=score,
                decisions={str(k): int(v) for k, v in data.get("decisions", {}).items()},
                thresholds={str(k): float(v) for k, v in data.get("thresholds", {}).items()},
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise BadInputError(f"{where}: malformed monitoring profile ({type(exc).__name__}: {exc})") from exc


def _summary_from(data: Mapping[str, Any]) -> Summary:
    if data.get("kind") == CATEGORICAL:
        return CategoricalSummary(**data)
    return NumericSummary(**data)


def as_numeric(values: Any) -> np.ndarray:
    """float64 with NaN for missing, whatever came in (ints, nullable ints, objects holding None, Arrow)."""
    if isinstance(values, pa.ChunkedArray | pa.Array):
        if pa.types.is_floating(values.type) or pa.types.is_integer(values.type) or pa.types.is_boolean(values.type):
            return np.asarray(values.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype="float64")
        values = values.to_pandas()
    series = pd.Series(values)
    if not pd.api.types.is_numeric_dtype(series):
        series = pd.to_numeric(series, errors="coerce")
    out = series.to_numpy(dtype="float64", na_value=np.nan, copy=True)  # written below: never Arrow's read-only view
    out[~np.isfinite(out)] = np.nan
    return out


def as_text(values: Any) -> pa.Array:
    """Strings with nulls for missing, whatever came in."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        return values if pa.types.is_string(values.type) else values.cast(pa.string())
    series = pd.Series(values, dtype="object")
    present = series.notna()
    return pa.array(series.where(present, None).map(lambda v: None if v is None else str(v)), type=pa.string())


def summarize_numeric(values: Any, bins: Sequence[float] = FEATURE_BINS) -> NumericSummary:
    x = as_numeric(values)
    rows = len(x)
    present = np.sort(x[~np.isnan(x)])
    if present.size == 0:
        return NumericSummary(rows, rows, [], [], [], [], [0], None, None)
    # One set of observed quantiles serves the percentiles, the KS grid and the PSI edges (a subset of the grid).
    probabilities = np.unique(np.round(np.concatenate([PERCENTILES, bins]), 6))
    observed = np.quantile(present, probabilities, method="inverted_cdf")
    quantiles = observed[np.isin(probabilities, np.round(PERCENTILES, 6))]
    grid = np.unique(observed)
    cdf = np.searchsorted(present, grid, side="right") / present.size
    edges = np.unique(observed[np.isin(probabilities, np.round(np.asarray(bins), 6))])
    counts = bin_counts(edges, present)
    return NumericSummary(
        rows=rows,
        missing=rows - int(present.size),
        quantiles=quantiles.tolist(),
        grid=grid.tolist(),
        cdf=cdf.tolist(),
        edges=edges.tolist(),
        counts=counts.tolist(),
        mean=float(present.mean()),
        std=float(present.std()),
    )


def bin_counts(edges: Sequence[float] | np.ndarray, present: np.ndarray) -> np.ndarray:
    """Values per bin (-inf, e0], (e0, e1], ..., (e_last, inf). ``present`` holds no NaN."""
    index = np.searchsorted(np.asarray(edges, dtype="float64"), present, side="left")
    return np.bincount(index, minlength=len(edges) + 1)


def category_counts(values: Any) -> tuple[dict[str, int], int, int]:
    """(count per value, most frequent first; missing; rows)."""
    text = as_text(values)
    counted = pc.value_counts(text.drop_null())
    pairs = sorted(
        zip(counted.field("values").to_pylist(), counted.field("counts").to_pylist(), strict=True),
        key=lambda p: (-p[1], p[0]),
    )
    return {str(v): int(c) for v, c in pairs}, text.null_count, len(text)


def summarize_categorical(values: Any, max_categories: int = MAX_CATEGORIES) -> CategoricalSummary:
    counts, missing, rows = category_counts(values)
    kept = dict(list(counts.items())[:max_categories])
    other = sum(counts.values()) - sum(kept.values())
    if other:
        kept[OTHER] = other
    return CategoricalSummary(rows=rows, missing=missing, counts=kept)


def summarize(values: Any, kind: str) -> Summary:
    return summarize_categorical(values) if kind == CATEGORICAL else summarize_numeric(values)


def decision_counts(recommendations: Any) -> dict[str, int]:
    counts, _, _ = category_counts(recommendations)
    return {d: counts.get(d, 0) for d in DECISIONS} | {k: v for k, v in counts.items() if k not in DECISIONS}


def build_profile(
    columns: Mapping[str, Any],
    specs: Sequence[FeatureSpec],
    scores: Any,
    recommendations: Any,
    *,
    source: str,
    feature_service: str,
    start: str | None = None,
    end: str | None = None,
    thresholds: Mapping[str, float] | None = None,
) -> Profile:
    """Profile ``columns`` (a frame or a mapping of name -> values) for the features in ``specs``."""
    rows = len(scores)
    features: dict[str, Summary] = {}
    for spec in specs:
        if spec.name not in columns:
            raise BadInputError(f"{source}: no column {spec.name!r} to profile")
        features[spec.name] = summarize(columns[spec.name], spec.kind)
    return Profile(
        source=source,
        rows=rows,
        start=start,
        end=end,
        feature_service=feature_service,
        features=features,
        origins={s.name: s.origin for s in specs},
        score=summarize_numeric(scores, SCORE_BINS),
        decisions=decision_counts(recommendations),
        thresholds=dict(thresholds or {}),
    )
