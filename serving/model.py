"""The model that serves: loaded from the registry by alias, swapped when the alias moves.

A swap builds the new model completely (load, warm-up prediction) before one reference assignment makes it
current, so a request in flight finishes on the model it started with and none fails during the swap.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient
from sklearn.pipeline import Pipeline

from serving.compiled import CompiledModel
from serving.variants import column_drops
from skewless.errors import DependencyUnavailableError, SkewlessError
from skewless.settings import Settings
from training import registry
from training.evaluate import Thresholds

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServedModel:
    version: int
    pipeline: Pipeline
    features: list[str]
    feature_service: str
    thresholds: Thresholds
    medians: dict[str, float] = field(default_factory=dict)  # training medians of numeric features, for reasons
    compiled: CompiledModel | None = None  # the same arithmetic without pandas; None when it could not be built

    @property
    def runtime(self) -> str:
        """What computes the scores: native, gtil or estimator (serving/compiled.py), or pipeline."""
        return self.compiled.runtime if self.compiled is not None else "pipeline"

    def probability(self, columns: Mapping[str, Any], n: int) -> np.ndarray:
        """Fraud probability for ``n`` transactions given as columns (arrays or lists, keyed by feature name)."""
        if self.compiled is not None:
            return self.compiled.probability(columns, n)
        frame = pd.DataFrame({name: columns[name] for name in self.features}, index=range(n))
        return np.asarray(self.pipeline.predict_proba(frame)[:, 1], dtype="float64")

    def drops(self, columns: Mapping[str, Any], n: int, scores: np.ndarray, values: Mapping[str, float]) -> np.ndarray:
        """How much each of ``n`` rows' scores (``scores``, for ``columns``) falls when one feature takes the value
        given (``values``: feature -> value), one feature at a time: an array (features in ``values``' order x
        rows), 0 where that would leave the model's input as it was. All variants go in one prediction."""
        if self.compiled is not None:
            return self.compiled.drops(columns, n, scores, values)
        return column_drops(self.probability, columns, n, scores, values)


def _training_medians(pipeline: Pipeline) -> dict[str, float]:
    try:
        numeric = pipeline.named_steps["features"].named_transformers_["numeric"]
        imputer = numeric.named_steps["impute"]
        names = list(pipeline.named_steps["features"].transformers_[0][2])
        return dict(zip(names, (float(v) for v in imputer.statistics_), strict=False))
    except (KeyError, AttributeError, IndexError):
        return {}


def load_model(settings: Settings, client: MlflowClient, alias: str, version: int | None = None) -> ServedModel:
    """Load ``fraud-detector@alias`` (or the version given) with its thresholds and feature service; warm it up."""
    if version is not None:
        mv = registry.model_version(client, settings.model_name, version)
    else:
        mv = registry.model_version(client, settings.model_name, alias=alias)
    tags = mv.tags
    missing = [t for t in ("feature_service", "threshold_block", "threshold_review") if t not in tags]
    if missing:
        raise SkewlessError(f"{settings.model_name} v{mv.version} lacks tags {missing}; it was not trained here")
    pipeline = mlflow.sklearn.load_model(f"models:/{settings.model_name}/{mv.version}")
    features = [str(f) for f in pipeline.feature_names_in_]
    compiled = CompiledModel.build(pipeline)
    if compiled is None:
        log.warning("%s v%s scores through its Pipeline: the compiled path does not cover it", mv.name, mv.version)
    elif settings.native_trees:
        compiled.start_native(settings.native_model_dir)
    model = ServedModel(
        version=int(mv.version),
        pipeline=pipeline,
        features=features,
        feature_service=tags["feature_service"],
        thresholds=Thresholds(block=float(tags["threshold_block"]), review=float(tags["threshold_review"])),
        medians=_training_medians(pipeline),
        compiled=compiled,
    )
    model.probability({name: [None] for name in features}, 1)  # first call pays any lazy setup
    return model


class ModelHolder:
    """Holds the current model; a background thread follows the alias and swaps in new versions."""

    def __init__(
        self,
        settings: Settings,
        on_reload: Callable[[int | None, int, str], None] | None = None,
        loaded_elsewhere: Callable[[int], ServedModel | None] | None = None,
    ) -> None:
        self._settings = settings
        self._on_reload = on_reload
        self._current: ServedModel | None = None
        # Models already in memory, swapped in without loading: the one served before (a rollback) and, through
        # ``loaded_elsewhere``, the canary's challenger (a promotion).
        self._previous: ServedModel | None = None
        self._loaded_elsewhere = loaded_elsewhere
        self._client: MlflowClient | None = None  # kept between polls; connected again after a failure
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None

    @property
    def current(self) -> ServedModel | None:
        return self._current

    def reload(self) -> bool:
        """Load the alias's version if it differs from the current one. True when the model changed."""
        with self._lock:
            try:
                # A poll costs ~8 ms here; connecting (which also checks the experiment) as much again.
                client = self._client = self._client or registry.connect(self._settings)
                mv = registry.model_version(client, self._settings.model_name, alias=self._settings.model_alias)
                if self._current is not None and int(mv.version) == self._current.version:
                    self.last_error = None
                    return False
                version = int(mv.version)
                model = self._in_memory(version) or load_model(
                    self._settings, client, self._settings.model_alias, version
                )
            except SkewlessError as exc:
                self.last_error = str(exc)
                self._client = None
                raise
            except Exception as exc:  # registry unreachable, artifact missing: keep serving what we have
                self.last_error = f"model registry: {exc}"
                self._client = None
                raise DependencyUnavailableError(self.last_error) from exc
            previous = self._current.version if self._current else None
            self._previous = self._current
            self._current = model
            self.last_error = None
        log.info("serving %s v%s (was v%s)", self._settings.model_name, model.version, previous)
        if self._on_reload:
            self._on_reload(previous, model.version, "ok")
        return True

    def _in_memory(self, version: int) -> ServedModel | None:
        elsewhere = self._loaded_elsewhere(version) if self._loaded_elsewhere else None
        for model in (self._previous, elsewhere):
            if model is not None and model.version == version:
                return model
        return None

    def start_polling(self) -> None:
        self._thread = threading.Thread(target=self._poll, name="model-poller", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.wait(self._settings.model_poll_seconds):
            try:
                self.reload()
            except SkewlessError as exc:
                log.warning("model reload failed, still serving v%s: %s", self._current and self._current.version, exc)
                if self._on_reload:
                    self._on_reload(self._current.version if self._current else None, -1, "failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
