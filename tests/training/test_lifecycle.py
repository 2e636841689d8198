"""train -> validate-model -> approve -> deploy against a real MLflow store (SQLite here, PostgreSQL below)."""

from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from skewless.errors import BadInputError, ValidationFailedError
from tests.training.conftest import TrainingRepo, settings_for
from training import registry
from training.lifecycle import approve, deploy, models_table, validate_model
from training.train import train

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LINEAGE = [
    "feature_service",
    "feast_project",
    "dataset_fingerprint",
    "git_commit",
    "train_rows",
    "validation_rows",
    "label_window_start",
    "label_window_end",
    "threshold_block",
    "threshold_review",
    "run_id",
]


def _client(repo: TrainingRepo) -> MlflowClient:
    return registry.connect(repo.settings)


def test_full_lifecycle_and_gates(training_repo: TrainingRepo) -> None:
    settings = training_repo.settings
    good = train(settings, seed=1)
    client = _client(training_repo)
    mv = client.get_model_version_by_alias(settings.model_name, "candidate")
    assert int(mv.version) == good.version
    for key in LINEAGE:
        assert mv.tags.get(key), f"lineage tag {key} missing"
    assert mv.tags["feature_service"] == training_repo.settings.feature_service
    assert float(mv.tags["threshold_block"]) >= float(mv.tags["threshold_review"])
    assert set(good.comparison) == {"hist_gradient_boosting", "logistic_regression"}
    assert {a.path for a in client.list_artifacts(good.run_id, "plots")} == {
        "plots/pr_curve.png",
        "plots/calibration.png",
        "plots/feature_importance.png",
    }
    assert good.metrics["pr_auc"] > 0.3

    # An unvalidated version cannot be approved or deployed.
    with pytest.raises(BadInputError, match="has not been validated"):
        approve(settings, good.version, "alice")
    with pytest.raises(BadInputError, match="is not approved"):
        deploy(settings, good.version)

    verdict = validate_model(settings)
    assert verdict.passed, verdict.reasons
    approve(settings, good.version, "alice")
    assert deploy(settings, good.version) is None
    champion = client.get_model_version_by_alias(settings.model_name, "champion")
    assert int(champion.version) == good.version
    assert champion.tags["approved_by"] == "alice"
    assert champion.tags["approved_at"]
    assert champion.tags["validation_status"] == "passed"

    # The served model is the whole Pipeline and scores raw feature frames.
    model = mlflow.sklearn.load_model(f"models:/{settings.model_name}@champion")
    assert hasattr(model, "predict_proba")

    # A model trained on shuffled labels is rejected: below the minimum and worse than the champion.
    bad = train(settings, seed=2, shuffle_labels=True)
    verdict = validate_model(settings, bad.version)
    assert not verdict.passed
    assert any("below the minimum" in r for r in verdict.reasons)
    assert any(f"below champion v{good.version}" in r for r in verdict.reasons)
    tags = client.get_model_version(settings.model_name, str(bad.version)).tags
    assert tags["validation_status"] == "failed"
    assert "below champion" in tags["validation_reasons"]
    with pytest.raises(BadInputError, match="failed validation"):
        approve(settings, bad.version, "mallory")
    with pytest.raises(BadInputError, match="is not approved"):
        deploy(settings, bad.version)
    assert int(client.get_model_version_by_alias(settings.model_name, "champion").version) == good.version

    table = models_table(settings)
    serving = table[table["serving"] == "yes"]
    assert serving["version"].tolist() == [good.version]
    assert table.set_index("version").loc[bad.version, "validation"] == "failed"


def test_unknown_version_and_feature_service_are_named(training_repo: TrainingRepo) -> None:
    with pytest.raises(BadInputError, match="has no version 999"):
        approve(training_repo.settings, 999, "alice")
    with pytest.raises(BadInputError, match="'fraud_model_v9' is not registered"):
        train(training_repo.settings, service_name="fraud_model_v9")


def test_too_small_label_set_registers_nothing(training_repo: TrainingRepo) -> None:
    settings = settings_for(training_repo.root, min_training_rows=10**9)
    before = len(registry.all_versions(_client(training_repo), settings.model_name))
    with pytest.raises(BadInputError, match="label set too small"):
        train(settings)
    assert len(registry.all_versions(_client(training_repo), settings.model_name)) == before


def test_labels_without_any_features_are_refused(
    training_repo: TrainingRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Feature tables that start after every label (wrong data, pipeline not run): nothing to learn from."""
    root = tmp_path / "repo"
    shutil.copytree(training_repo.root, root, ignore=shutil.ignore_patterns("mlflow.db", "mlartifacts"))
    for path in (root / "data" / "features").rglob("*.parquet"):
        frame = pd.read_parquet(path)
        frame["event_timestamp"] += pd.Timedelta(days=3650)
        frame["created_timestamp"] += pd.Timedelta(days=3650)
        frame.to_parquet(path, index=False)
    monkeypatch.chdir(root)
    with pytest.raises(BadInputError, match="has any stored feature"):
        train(settings_for(root))


def test_same_flow_with_postgresql_backend(
    training_repo: TrainingRepo, postgres_tracking_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", postgres_tracking_uri)
    settings = settings_for(training_repo.root)
    assert settings.tracking_uri == postgres_tracking_uri
    outcome = train(settings, seed=3)
    assert validate_model(settings, outcome.version).passed
    approve(settings, outcome.version, "bob")
    deploy(settings, outcome.version)
    client = MlflowClient(tracking_uri=postgres_tracking_uri, registry_uri=postgres_tracking_uri)
    champion = client.get_model_version_by_alias(settings.model_name, "champion")
    assert champion.tags["approved_by"] == "bob"
    for key in LINEAGE:
        assert champion.tags.get(key), f"lineage tag {key} missing in PostgreSQL store"


def test_failing_training_set_is_refused_and_logged(
    training_repo: TrainingRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A label delivered twice makes duplicate entity rows: the gate refuses, MLflow records why, nothing registers."""
    root = tmp_path / "repo"
    shutil.copytree(training_repo.root, root, ignore=shutil.ignore_patterns("mlflow.db", "mlartifacts", "reports"))
    labels = sorted((root / "data" / "raw" / "labels").glob("*.parquet"))
    twice = pd.concat([pd.read_parquet(labels[-1]), pd.read_parquet(labels[-2])])
    twice.to_parquet(labels[-1], index=False)
    monkeypatch.chdir(root)
    settings = settings_for(root)
    with pytest.raises(ValidationFailedError, match="txn_id") as info:
        train(settings)
    assert info.value.report_path is not None and (info.value.report_path / "result.json").exists()
    client = registry.connect(settings)
    assert registry.all_versions(client, settings.model_name) == []
    runs = mlflow.search_runs(experiment_names=[registry.EXPERIMENT])
    assert (runs["tags.training_set_validation"] == "failed").any()
