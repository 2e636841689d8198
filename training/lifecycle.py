"""Lifecycle of the registered model: validate -> approve -> deploy, each step recorded on the version's tags.

A version moves forward only through these functions; each refuses a version that skipped the step before it,
so the registry can always answer which model is serving, which data produced it and who approved it.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime

import mlflow
import pandas as pd
from mlflow.tracking import MlflowClient

from skewless.errors import BadInputError
from skewless.settings import Settings
from skewless.store import open_store
from training import registry
from training.dataset import LABEL, build_training_frame
from training.evaluate import ranking_metrics
from training.model import fraud_probability

PASSED, FAILED = "passed", "failed"


@dataclass(frozen=True)
class Verdict:
    version: int
    passed: bool
    reasons: list[str]
    metrics: dict[str, float]
    champion_version: int | None
    champion_metrics: dict[str, float] | None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _score_on_holdout(
    settings: Settings, client: MlflowClient, version: int, holdout: pd.DataFrame
) -> dict[str, float]:
    """Rebuild the holdout's features through the version's own feature service and score them."""
    mv = registry.model_version(client, settings.model_name, version)
    service = mv.tags.get("feature_service")
    if not service:
        raise BadInputError(f"{settings.model_name} v{version} has no feature_service tag; it was not trained here")
    store = open_store(settings.repo_root)
    frame = build_training_frame(store, service, holdout.copy()).frame
    model = mlflow.sklearn.load_model(f"models:/{settings.model_name}/{version}")
    features = list(model.feature_names_in_)
    return ranking_metrics(frame[LABEL].to_numpy(), fraud_probability(model, frame[features]))


def _holdout(client: MlflowClient, run_id: str) -> pd.DataFrame:
    with tempfile.TemporaryDirectory() as tmp:
        path = client.download_artifacts(run_id, "holdout/holdout_entities.parquet", tmp)
        return pd.read_parquet(path)


def validate_model(settings: Settings, version: int | None = None) -> Verdict:
    """Gate a version: absolute minimums, and not worse than the champion on the same holdout."""
    client = registry.connect(settings)
    name = settings.model_name
    mv = (
        registry.model_version(client, name, version)
        if version is not None
        else registry.model_version(client, name, alias=registry.CANDIDATE)
    )
    number = int(mv.version)
    holdout = _holdout(client, mv.run_id)
    metrics = _score_on_holdout(settings, client, number, holdout)
    reasons = []
    if metrics["pr_auc"] < settings.min_pr_auc:
        reasons.append(f"PR-AUC {metrics['pr_auc']:.4f} below the minimum {settings.min_pr_auc:.4f}")
    if metrics["recall_at_1pct_fpr"] < settings.min_recall_at_1pct_fpr:
        reasons.append(
            f"recall at 1% FPR {metrics['recall_at_1pct_fpr']:.4f} below the minimum "
            f"{settings.min_recall_at_1pct_fpr:.4f}"
        )
    champion_alias = registry.aliases(client, name).get(registry.CHAMPION)
    champion_version = int(champion_alias) if champion_alias else None
    champion_metrics = None
    if champion_version is not None and champion_version != number:
        champion_metrics = _score_on_holdout(settings, client, champion_version, holdout)
        drop = champion_metrics["pr_auc"] - metrics["pr_auc"]
        if drop > settings.max_pr_auc_drop:
            reasons.append(
                f"PR-AUC {metrics['pr_auc']:.4f} is {drop:.4f} below champion v{champion_version} "
                f"({champion_metrics['pr_auc']:.4f}) on the same holdout; allowed drop {settings.max_pr_auc_drop:.4f}"
            )
    passed = not reasons
    tags = {
        "validation_status": PASSED if passed else FAILED,
        "validation_reasons": "; ".join(reasons) if reasons else "all checks passed",
        "validated_at": _now(),
        "validation_holdout_rows": str(len(holdout)),
        "validation_pr_auc": f"{metrics['pr_auc']:.6f}",
        "validation_recall_at_1pct_fpr": f"{metrics['recall_at_1pct_fpr']:.6f}",
        "validation_champion_version": str(champion_version) if champion_metrics else "none",
    }
    if champion_metrics:
        tags["validation_champion_pr_auc"] = f"{champion_metrics['pr_auc']:.6f}"
    for key, value in tags.items():
        client.set_model_version_tag(name, str(number), key, value)
    return Verdict(number, passed, reasons, metrics, champion_version if champion_metrics else None, champion_metrics)


def approve(settings: Settings, version: int, by: str) -> None:
    """Record who approved a validated version, and when. Refuses versions that failed or skipped validation."""
    by = by.strip()
    if not by:
        raise BadInputError("--by must name the approver")
    client = registry.connect(settings)
    mv = registry.model_version(client, settings.model_name, version)
    status = mv.tags.get("validation_status")
    if status is None:
        raise BadInputError(f"{settings.model_name} v{version} has not been validated; run `skewless validate-model`")
    if status != PASSED:
        reason = mv.tags.get("validation_reasons", "")
        raise BadInputError(f"{settings.model_name} v{version} failed validation ({reason}); it cannot be approved")
    client.set_model_version_tag(settings.model_name, str(version), "approved_by", by)
    client.set_model_version_tag(settings.model_name, str(version), "approved_at", _now())


def deploy(settings: Settings, version: int, alias: str = registry.CHAMPION) -> int | None:
    """Point ``alias`` (champion by default) at an approved version; record the previous one for rollback."""
    client = registry.connect(settings)
    name = settings.model_name
    mv = registry.model_version(client, name, version)
    if not mv.tags.get("approved_by"):
        raise BadInputError(f"{name} v{version} is not approved; run `skewless approve --version {version} --by NAME`")
    previous = registry.aliases(client, name).get(alias)
    if previous == str(version):
        return int(previous)
    if previous:
        client.set_model_version_tag(name, str(version), f"previous_{alias}", previous)
        client.set_registered_model_tag(name, f"previous_{alias}", previous)
    client.set_registered_model_alias(name, alias, str(version))
    client.set_model_version_tag(name, str(version), f"deployed_{alias}_at", _now())
    return int(previous) if previous else None


def models_table(settings: Settings) -> pd.DataFrame:
    """One row per version: aliases, metrics, lineage, validation, approver, and which one is serving."""
    client = registry.connect(settings)
    by_version: dict[str, list[str]] = {}
    for alias, v in registry.aliases(client, settings.model_name).items():
        by_version.setdefault(v, []).append(alias)
    rows = []
    for mv in registry.all_versions(client, settings.model_name):
        tags = mv.tags
        names = sorted(by_version.get(str(mv.version), []))
        rows.append(
            {
                "version": int(mv.version),
                "aliases": ",".join(names) or "-",
                "serving": "yes" if registry.CHAMPION in names else "",
                "model": tags.get("model_type", "?"),
                "feature_service": tags.get("feature_service", "?"),
                "pr_auc": _float(tags.get("metric.pr_auc")),
                "recall@1%fpr": _float(tags.get("metric.recall_at_1pct_fpr")),
                "validation": tags.get("validation_status", "not run"),
                "approved_by": tags.get("approved_by", "-"),
                "dataset": tags.get("dataset_fingerprint", "?")[:12],
                "created": datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC).strftime("%Y-%m-%d %H:%M"),
            }
        )
    return pd.DataFrame(rows)


def _float(value: str | None) -> float | None:
    return round(float(value), 4) if value else None
