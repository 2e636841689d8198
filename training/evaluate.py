"""Model quality on a held-out window: ranking metrics, calibration, and decision thresholds with their effect."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure  # a bare Figure: no pyplot state, no display needed
from sklearn.calibration import calibration_curve
from sklearn.inspection import permutation_importance
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)
from sklearn.pipeline import Pipeline


@dataclass(frozen=True)
class Thresholds:
    """Scores at or above ``block`` are blocked, at or above ``review`` reviewed, the rest approved."""

    block: float
    review: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def ranking_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    return {
        "pr_auc": float(average_precision_score(y, p)),
        "roc_auc": float(roc_auc_score(y, p)),
        "recall_at_1pct_fpr": recall_at_fpr(y, p, 0.01),
        "brier": float(brier_score_loss(y, p)),
    }


def recall_at_fpr(y: np.ndarray, p: np.ndarray, max_fpr: float) -> float:
    """Share of fraud caught when at most ``max_fpr`` of legitimate payments are flagged."""
    fpr, tpr, _ = roc_curve(y, p)
    within = fpr <= max_fpr
    return float(tpr[within].max()) if within.any() else 0.0


def choose_thresholds(p: np.ndarray, block_rate: float, review_rate: float) -> Thresholds:
    """Thresholds that flag ``block_rate`` of traffic for blocking and ``review_rate`` more for review."""
    if block_rate + review_rate >= 1:
        raise ValueError(f"block_rate + review_rate must be below 1, got {block_rate} + {review_rate}")
    block = float(np.quantile(p, 1 - block_rate))
    review = float(np.quantile(p, 1 - block_rate - review_rate))
    return Thresholds(block=block, review=min(review, block))


def decision_metrics(y: np.ndarray, p: np.ndarray, thresholds: Thresholds) -> dict[str, float]:
    metrics: dict[str, float] = {}
    positives = max(int(y.sum()), 1)
    for name, cut in (("block", thresholds.block), ("review", thresholds.review)):
        flagged = p >= cut
        caught = int((flagged & (y == 1)).sum())
        metrics[f"{name}_rate"] = float(flagged.mean())
        metrics[f"precision_at_{name}"] = caught / max(int(flagged.sum()), 1)
        metrics[f"recall_at_{name}"] = caught / positives
    return metrics


def decide(p: np.ndarray, thresholds: Thresholds) -> np.ndarray:
    return np.where(p >= thresholds.block, "block", np.where(p >= thresholds.review, "review", "approve"))


def save_plots(
    y: np.ndarray,
    p: np.ndarray,
    model: Pipeline,
    features: pd.DataFrame,
    out_dir: Path,
    seed: int = 0,
) -> list[Path]:
    """PR curve, calibration curve and permutation feature importance, as PNG files in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []

    precision, recall, _ = precision_recall_curve(y, p)
    fig = Figure(figsize=(5, 4))
    ax = fig.subplots()
    ax.plot(recall, precision)
    ax.set(xlabel="recall", ylabel="precision", title=f"PR curve (AP {average_precision_score(y, p):.3f})")
    paths.append(_save(fig, out_dir / "pr_curve.png"))

    observed, predicted = calibration_curve(y, p, n_bins=10, strategy="quantile")
    fig = Figure(figsize=(5, 4))
    ax = fig.subplots()
    ax.plot(predicted, observed, marker="o")
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey")
    ax.set(xlabel="mean predicted score", ylabel="observed fraud rate", title="Calibration")
    paths.append(_save(fig, out_dir / "calibration.png"))

    sample = features.sample(min(len(features), 3_000), random_state=seed)
    y_sample = pd.Series(y, index=features.index).loc[sample.index].to_numpy()
    importance = permutation_importance(
        model, sample, y_sample, scoring="average_precision", n_repeats=2, random_state=seed, n_jobs=1
    )
    order = np.argsort(importance.importances_mean)[-15:]
    fig = Figure(figsize=(6, 5))
    ax = fig.subplots()
    ax.barh(np.array(sample.columns)[order], importance.importances_mean[order])
    ax.set(xlabel="drop in average precision when shuffled", title="Feature importance (permutation)")
    paths.append(_save(fig, out_dir / "feature_importance.png"))
    return paths


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path
