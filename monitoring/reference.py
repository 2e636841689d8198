"""The reference profile: made at training time, stored with the run as an MLflow artifact, read by the monitor.

It profiles the validation window (the newest rows, held out from fitting) with the scores and decisions of the
model being registered, so every model version carries the distributions it was judged on. The monitored columns
are the feature service's features (kinds from its Feast schema: String is categorical) and the request fields
its on-demand views read, such as ``country``; none is named here.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from monitoring.profile import CATEGORICAL, NUMERIC, FeatureSpec, Profile, build_profile
from skewless.errors import MissingDataError

if TYPE_CHECKING:
    from feast import FeatureService, FeatureStore

    from training.evaluate import Thresholds

ARTIFACT = "reference/profile.json"


def feature_specs(store: FeatureStore, service: FeatureService) -> list[FeatureSpec]:
    """The model's features, then the request fields its on-demand views read (timestamps left out)."""
    # Imported here: Feast and scikit-learn take seconds to load, and the monitor needs them only without a profile.
    from feast.types import String, UnixTimestamp

    from training.model import feature_kinds

    kinds = feature_kinds(service)
    specs = [FeatureSpec(n, NUMERIC, "model") for n in kinds.numeric]
    specs += [FeatureSpec(n, CATEGORICAL, "model") for n in kinds.categorical]
    taken = {s.name for s in specs}
    on_demand = {v.name: v for v in store.list_on_demand_feature_views()}
    for projection in service.feature_view_projections:
        view = on_demand.get(projection.name)
        if view is None:
            continue
        for request in view.source_request_sources.values():
            for f in request.schema:
                if f.name in taken or f.dtype == UnixTimestamp:
                    continue
                taken.add(f.name)
                specs.append(FeatureSpec(f.name, CATEGORICAL if f.dtype == String else NUMERIC, "request"))
    return specs


def reference_profile(
    store: FeatureStore, service: FeatureService, frame: pd.DataFrame, scores: np.ndarray, thresholds: Thresholds
) -> Profile:
    """Profile of held-out rows ``frame`` (features and request fields) with the model's ``scores`` on them."""
    from training.evaluate import decide

    times = pd.to_datetime(frame["event_timestamp"], utc=True)
    return build_profile(
        frame,
        feature_specs(store, service),
        scores,
        decide(scores, thresholds),
        source="training validation window",
        feature_service=service.name,
        start=times.min().isoformat(),
        end=times.max().isoformat(),
        thresholds=thresholds.as_dict(),
    )


def log_reference_profile(
    store: FeatureStore, service: FeatureService, frame: pd.DataFrame, scores: np.ndarray, thresholds: Thresholds
) -> Profile:
    """Profile the held-out rows and log the profile to the active MLflow run."""
    profile = reference_profile(store, service, frame, scores, thresholds)
    mlflow.log_dict(profile.to_dict(), ARTIFACT)
    return profile


def load_reference_profile(client: MlflowClient, run_id: str, label: str) -> Profile:
    """The reference profile stored with ``run_id``; MissingDataError (naming ``label``) when there is none."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = Path(client.download_artifacts(run_id, ARTIFACT, tmp))
            data = json.loads(path.read_text())
        except (MlflowException, OSError) as exc:
            raise MissingDataError(
                f"{label} has no reference profile ({ARTIFACT} in run {run_id}); it was trained before "
                "monitoring existed: retrain it, or compare with --against previous-window"
            ) from exc
        except json.JSONDecodeError as exc:
            raise MissingDataError(f"{label}: {ARTIFACT} in run {run_id} is not JSON ({exc})") from exc
    return Profile.from_dict(data, where=f"{label} {ARTIFACT}")
