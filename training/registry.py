"""The MLflow tracking store and model registry: where runs go, how the registered model is found.

Embedded by default (SQLite under data/, artifacts under data/mlartifacts, no server); PostgreSQL or a tracking
server when ``MLFLOW_TRACKING_URI`` says so. Nothing here connects at import time.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import mlflow
import pandas as pd
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from feature_repo import transformations
from skewless.errors import BadInputError, DependencyUnavailableError
from skewless.settings import Settings

if TYPE_CHECKING:  # Feast takes seconds to import; commands that only read the registry do without it
    from feast import FeatureService, FeatureStore, OnDemandFeatureView

EXPERIMENT = "skewless-fraud"
CANDIDATE, CHALLENGER, CHAMPION = "candidate", "challenger", "champion"


def connect(settings: Settings) -> MlflowClient:
    """Point MLflow at the project's store and make sure the experiment exists."""
    uri = settings.tracking_uri
    if uri.startswith("sqlite:///"):
        settings.data_path.mkdir(parents=True, exist_ok=True)
    _use_store(uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    try:
        if client.get_experiment_by_name(EXPERIMENT) is None:
            location = settings.artifact_root.resolve().as_uri() if _is_local(uri) else None
            client.create_experiment(EXPERIMENT, artifact_location=location)
    except MlflowException as exc:
        raise DependencyUnavailableError(f"MLflow tracking store {uri}: {exc.message}") from exc
    except Exception as exc:  # SQLAlchemy / network errors from an unreachable database
        raise DependencyUnavailableError(f"MLflow tracking store {uri} is unreachable: {exc}") from exc
    mlflow.set_experiment(EXPERIMENT)
    return client


def _use_store(uri: str) -> None:
    """Point MLflow's fluent API at ``uri``, keeping the environment as the user set it.

    ``mlflow.set_tracking_uri`` also exports MLFLOW_TRACKING_URI; left alone, the next ``Settings()`` in this
    process would read the last store used instead of the user's choice.
    """
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _is_local(uri: str) -> bool:
    return uri.startswith(("sqlite:", "postgresql:", "postgresql+", "mysql:", "file:")) or "://" not in uri


def model_version(
    client: MlflowClient, name: str, version: int | None = None, alias: str | None = None
) -> ModelVersion:
    """A version by number or alias, with an error that says which is missing and what exists."""
    try:
        if alias is not None:
            return client.get_model_version_by_alias(name, alias)
        return client.get_model_version(name, str(version))
    except MlflowException as exc:
        what = f"alias @{alias}" if alias is not None else f"version {version}"
        existing = ", ".join(str(v) for v in sorted(int(v.version) for v in _versions(client, name))) or "none"
        raise BadInputError(f"model {name!r} has no {what} (versions: {existing})") from exc


def _versions(client: MlflowClient, name: str) -> list[ModelVersion]:
    try:
        return list(client.search_model_versions(f"name = '{name}'"))
    except MlflowException:
        return []


def all_versions(client: MlflowClient, name: str) -> list[ModelVersion]:
    return sorted(_versions(client, name), key=lambda v: int(v.version))


def aliases(client: MlflowClient, name: str) -> dict[str, str]:
    """alias -> version for the registered model (empty when it does not exist yet)."""
    try:
        return {alias: str(v) for alias, v in client.get_registered_model(name).aliases.items()}
    except MlflowException:
        return {}


def dataset_fingerprint(entities: pd.DataFrame, store: FeatureStore, service: FeatureService) -> str:
    """Hash of the entity frame (keys, times, labels) and of the definitions of every view the service uses."""
    digest = hashlib.sha256()
    columns = [
        c for c in ("txn_id", "user_id", "device_id", "merchant_id", "event_timestamp", "is_fraud") if c in entities
    ]
    digest.update(pd.util.hash_pandas_object(entities[columns], index=False).to_numpy().tobytes())
    on_demand = {v.name: v for v in store.list_on_demand_feature_views()}
    for projection in sorted(service.feature_view_projections, key=lambda p: p.name):
        digest.update(projection.name.encode())
        if projection.name in on_demand:
            digest.update(_on_demand_definition(on_demand[projection.name]))
        else:
            # any kind of feature view: batch views and the stream feature views of windowed aggregations
            spec = store.registry.get_any_feature_view(projection.name, store.project).to_proto().spec
            digest.update(spec.SerializeToString(deterministic=True))
    return digest.hexdigest()


def _on_demand_definition(view: OnDemandFeatureView) -> bytes:
    """An on-demand view's definition as stable bytes: schema, sources, the function's source and the shared
    transformations it calls. (Its pickled function differs from one process to the next, so it is left out.)"""
    parts = [view.name]
    parts += [f"{f.name}:{f.dtype}" for f in view.features]
    parts += sorted(view.source_feature_view_projections) + sorted(view.source_request_sources)
    parts.append(view.feature_transformation.udf_string or "")
    parts.append(inspect.getsource(transformations))
    return "\n".join(parts).encode()


def git_commit(repo_root: Path) -> str:
    """The commit the code was at, with ``-dirty`` when the tree had changes; ``unknown`` outside git."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo_root, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo_root,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit
