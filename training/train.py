"""`skewless train`: labels -> training set through Feast -> candidates -> the better one -> registered as candidate."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import infer_signature
from threadpoolctl import threadpool_limits

from feature_repo.windows import service_windows
from monitoring.reference import log_reference_profile
from skewless.errors import BadInputError, ValidationFailedError
from skewless.settings import Settings
from skewless.store import feature_service, open_store
from training import registry
from training.dataset import (
    LABEL,
    TrainingFrame,
    build_training_frame,
    labelled_transactions,
    mature_labels,
    split_by_time,
)
from training.evaluate import choose_thresholds, decision_metrics, ranking_metrics, save_plots
from training.model import TRUSTED_TYPES, candidate_models, feature_kinds, fraud_probability, model_requirements
from validation.gates import training_set_gate
from validation.report import ValidationReport


@dataclass(frozen=True)
class TrainOutcome:
    version: int
    run_id: str
    model_type: str
    metrics: dict[str, float]
    comparison: dict[str, dict[str, float]]


def check_label_set(entities: pd.DataFrame, settings: Settings) -> None:
    """Refuse label sets no model can learn from, before any feature is fetched."""
    if entities.empty:
        raise BadInputError("label set is empty: no labelled transactions older than the maturity cutoff")
    positives = int(entities[LABEL].sum())
    if positives == 0 or positives == len(entities):
        raise BadInputError(f"label set has a single class ({len(entities):,} rows, {positives:,} fraud)")
    if len(entities) < settings.min_training_rows:
        raise BadInputError(
            f"label set too small: {len(entities):,} rows, need at least {settings.min_training_rows:,} "
            "(SKEWLESS_MIN_TRAINING_ROWS)"
        )
    if positives < settings.min_positive_labels:
        raise BadInputError(
            f"label set has {positives} fraud labels, need at least {settings.min_positive_labels} "
            "(SKEWLESS_MIN_POSITIVE_LABELS)"
        )


def check_features_found(training: TrainingFrame, batch_features: list[str]) -> None:
    """Refuse a training set whose entities found no stored features at all (wrong project, no pipeline run)."""
    if not batch_features:
        return
    found = training.frame[batch_features].notna().any(axis=1)
    if not found.any():
        raise BadInputError(
            f"none of the {len(training.frame):,} labelled transactions has any stored feature in "
            f"{training.feature_service!r}: run `skewless pipeline` and `feast apply` for this data"
        )


def train(
    settings: Settings, service_name: str | None = None, seed: int = 0, shuffle_labels: bool = False
) -> TrainOutcome:
    """Train, evaluate and register a new version as @candidate.

    ``shuffle_labels`` trains on randomly permuted labels (evaluation still uses the true ones): a deliberately
    useless model, for rehearsing that the gates and the canary stop it. It is recorded as a tag.
    """
    with threadpool_limits(settings.train_threads):
        return _train(settings, service_name, seed, shuffle_labels)


def _train(settings: Settings, service_name: str | None, seed: int, shuffle_labels: bool) -> TrainOutcome:
    service_name = service_name or settings.feature_service
    store = open_store(settings.repo_root)
    service = feature_service(store, service_name)
    kinds = feature_kinds(service)

    entities = mature_labels(labelled_transactions(settings.raw_dir), settings.label_maturity_days)
    check_label_set(entities, settings)
    training = build_training_frame(store, service_name, entities)
    on_demand = {p.name for p in service.feature_view_projections if _is_on_demand(store, p.name)}
    computed = set(on_demand) | {w.name for w in service_windows(store, service)}  # never "missing" when empty
    batch_features = [f.name for p in service.feature_view_projections if p.name not in computed for f in p.features]
    check_features_found(training, batch_features)
    gate = _validate_training_set(settings, training)

    train_frame, valid_frame = split_by_time(training.frame, settings.validation_share)
    x_train, y_train = train_frame[kinds.all], train_frame[LABEL].to_numpy()
    y_fit = np.random.default_rng(seed).permutation(y_train) if shuffle_labels else y_train
    x_valid, y_valid = valid_frame[kinds.all], valid_frame[LABEL].to_numpy()

    comparison: dict[str, dict[str, float]] = {}
    fitted = {}
    for name, model in candidate_models(kinds, seed).items():
        model.fit(x_train, y_fit)
        comparison[name] = ranking_metrics(y_valid, fraud_probability(model, x_valid))
        fitted[name] = model
    best = max(comparison, key=lambda n: (comparison[n]["pr_auc"], n))
    model = fitted[best]
    p_valid = fraud_probability(model, x_valid)
    thresholds = choose_thresholds(p_valid, settings.block_rate, settings.review_rate)
    metrics = {**comparison[best], **decision_metrics(y_valid, p_valid, thresholds)}

    client = registry.connect(settings)
    tags = {
        "feature_service": service_name,
        "feast_project": store.project,
        "dataset_fingerprint": registry.dataset_fingerprint(entities, store, service),
        "git_commit": registry.git_commit(settings.repo_root),
        "model_type": best,
        "train_rows": str(len(train_frame)),
        "validation_rows": str(len(valid_frame)),
        "train_fraud": str(int(y_train.sum())),
        "validation_fraud": str(int(y_valid.sum())),
        "label_window_start": _iso(training.frame["event_timestamp"].min()),
        "label_window_end": _iso(training.frame["event_timestamp"].max()),
        "validation_window_start": _iso(valid_frame["event_timestamp"].min()),
        "threshold_block": repr(thresholds.block),
        "threshold_review": repr(thresholds.review),
        "shuffled_labels": str(shuffle_labels).lower(),
        "training_set_validation": "passed",
        "training_set_checks": "; ".join(gate.checked)[:5000],
    }
    with mlflow.start_run(run_name=f"train-{service_name}-{datetime.now(UTC):%Y%m%dT%H%M%S}") as run:
        mlflow.set_tags(tags)
        mlflow.log_params(
            {
                "feature_service": service_name,
                "model_type": best,
                "seed": seed,
                "label_maturity_days": settings.label_maturity_days,
                "validation_share": settings.validation_share,
                "block_rate": settings.block_rate,
                "review_rate": settings.review_rate,
                **{f"model__{k}": v for k, v in model.named_steps["model"].get_params().items() if _loggable(v)},
            }
        )
        mlflow.log_metrics(metrics)
        for name, values in comparison.items():
            mlflow.log_metrics({f"{name}.{k}": v for k, v in values.items()})
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp)
            for path in save_plots(y_valid, p_valid, model, x_valid, out / "plots", seed):
                mlflow.log_artifact(str(path), "plots")
            (out / "comparison.json").write_text(json.dumps({"chosen": best, "candidates": comparison}, indent=2))
            (out / "decision.json").write_text(json.dumps(thresholds.as_dict(), indent=2))
            mlflow.log_artifact(str(out / "comparison.json"))
            mlflow.log_artifact(str(out / "decision.json"))
            holdout = valid_frame[entities.columns.intersection(valid_frame.columns)]
            holdout.to_parquet(out / "holdout_entities.parquet", index=False)
            mlflow.log_artifact(str(out / "holdout_entities.parquet"), "holdout")
        if gate.path is not None:
            mlflow.log_artifacts(str(gate.path), "training_set_validation")
        log_reference_profile(store, service, valid_frame, p_valid, thresholds)  # the monitor's baseline
        example = x_valid.head(5)
        signature = infer_signature(example, fraud_probability(model, example))
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=signature,
            input_example=example,
            registered_model_name=settings.model_name,
            skops_trusted_types=TRUSTED_TYPES,
            pip_requirements=model_requirements(),
        )
        run_id = run.info.run_id
    version = int(info.registered_model_version)
    for key, value in {**tags, "run_id": run_id, **{f"metric.{k}": f"{v:.6f}" for k, v in metrics.items()}}.items():
        client.set_model_version_tag(settings.model_name, str(version), key, value)
    client.set_registered_model_alias(settings.model_name, registry.CANDIDATE, str(version))
    return TrainOutcome(version=version, run_id=run_id, model_type=best, metrics=metrics, comparison=comparison)


def _validate_training_set(settings: Settings, training: TrainingFrame) -> ValidationReport:
    """The training-set gate. A refusal is recorded as a failed MLflow run holding the report, then raised."""
    try:
        return training_set_gate(
            training.frame, training.features, settings.reports_dir, features_dir=settings.features_dir
        )
    except ValidationFailedError as exc:
        registry.connect(settings)
        with mlflow.start_run(run_name=f"refused-{training.feature_service}-{datetime.now(UTC):%Y%m%dT%H%M%S}"):
            mlflow.set_tags(
                {
                    "feature_service": training.feature_service,
                    "training_set_validation": "failed",
                    "refusal": str(exc)[:5000],
                }
            )
            if exc.report_path is not None:
                mlflow.log_artifacts(str(exc.report_path), "training_set_validation")
        raise


def _is_on_demand(store, name: str) -> bool:  # type: ignore[no-untyped-def]
    return name in {v.name for v in store.list_on_demand_feature_views()}


def _iso(value: pd.Timestamp) -> str:
    return pd.Timestamp(value).isoformat()


def _loggable(value: object) -> bool:
    return isinstance(value, str | int | float | bool | type(None)) and not isinstance(value, np.ndarray)
