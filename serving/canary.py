"""The canary: a share of transactions decided by ``fraud-detector@challenger``, or the challenger in the shadow.

- **Routing** is by a hash of ``txn_id`` salted with the challenger's version: a retried transaction meets the same
  model, and each canary gets a slice of traffic of its own. ``SKEWLESS_CANARY_SHARE`` says how big.
- **Shadow mode** (``SKEWLESS_CANARY_MODE=shadow``): the champion decides everything; the challenger scores the same
  transactions and its answer goes to the decision log only.
- **The champion is never at risk.** The challenger is loaded on a thread of its own; one that fails to load is
  reported (``/ready``, ``skewless_challenger_reloads{result="failed"}``) and ignored. One that raises or answers a
  score outside [0, 1] is replaced, for those transactions, by the champion's answer, and the failure is logged with
  the decision, where the verdict counts it (release/rules.py).
- **The hot path stays one feature read per micro-batch**: when both models use one feature service they are scored
  on the same columns, and the challenger's share of a micro-batch is scored in one call.

Every decision carries the role and version of the model that decided and ``model_ms``, the time of its model call;
the release stage reads them from the decision stream to judge the challenger against the champion.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from serving.metrics import ServiceMetrics
from serving.model import ServedModel, load_model
from serving.online import EntityFeatures
from serving.scoring import Columns, Decision, FeatureRead, Scorer
from skewless.errors import DependencyUnavailableError
from skewless.settings import Settings
from training import registry

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER = "champion", "challenger"
RETRY_FAILED_S = 60.0  # a version that failed to load is tried again after this long, or when the alias moves

AliasReader = Callable[[], dict[str, str]]  # alias -> version; raises DependencyUnavailableError when unreachable
Loader = Callable[[int], ServedModel]


def routed_to_challenger(txn_id: str, limit: int, salt: int) -> bool:
    """Whether the challenger decides this transaction: the same answer for the same id, every time."""
    return zlib.crc32(txn_id.encode(), salt) < limit


def share_limit(share: float) -> int:
    return round(share * 2**32)


def registry_aliases(settings: Settings) -> AliasReader:
    """Reads the registered model's aliases in one call. An unreachable registry raises; a model that does not
    exist yet has none. The client is kept between calls (connecting costs as much as the read) and made again
    after a failure."""
    clients: list[MlflowClient] = []

    def read() -> dict[str, str]:
        try:
            if not clients:
                clients.append(registry.connect(settings))
            model = clients[0].get_registered_model(settings.model_name)
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return {}
            clients.clear()
            raise DependencyUnavailableError(f"model registry: {exc.message}") from exc
        except DependencyUnavailableError:
            raise
        except Exception as exc:  # the database or server behind the registry
            clients.clear()
            raise DependencyUnavailableError(f"model registry unreachable: {exc}") from exc
        return {alias: str(version) for alias, version in model.aliases.items()}

    return read


def registry_loader(settings: Settings) -> Loader:
    def load(version: int) -> ServedModel:
        return load_model(settings, registry.connect(settings), CHALLENGER, version)

    return load


class ChallengerHolder:
    """Follows the challenger alias on a thread of its own. Never raises to its caller; says what it is doing."""

    def __init__(
        self,
        read_aliases: AliasReader,
        load: Loader,
        poll_seconds: float,
        metrics: ServiceMetrics | None = None,
        alias: str = CHALLENGER,
    ) -> None:
        self._read_aliases = read_aliases
        self._load = load
        self._poll_seconds = poll_seconds
        self._metrics = metrics
        self._alias = alias
        self._current: ServedModel | None = None
        self._failed: tuple[int, float] | None = None  # version, monotonic time of the failure
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None

    @property
    def current(self) -> ServedModel | None:
        return self._current

    def model_for(self, version: int) -> ServedModel | None:
        """The challenger, if it is this version: the champion's holder takes it on promotion instead of loading."""
        model = self._current
        return model if model is not None and model.version == version else None

    def state(self) -> str:
        model = self._current
        if model is not None:
            return f"v{model.version}" + (f" (last check failed: {self.last_error})" if self.last_error else "")
        return f"none ({self.last_error})" if self.last_error else "none"

    def poll_once(self) -> None:
        """Load the version the alias names, drop the challenger when the alias is gone; keep it when the registry
        cannot be read (the verdict, not an outage, ends a canary)."""
        with self._lock:
            try:
                wanted = self._read_aliases().get(self._alias)
            except DependencyUnavailableError as exc:
                self.last_error = str(exc)
                return
            if wanted is None:
                self.last_error = None
                self._failed = None
                if self._current is not None:
                    log.info("canary stopped: @%s removed (was v%s)", self._alias, self._current.version)
                    self._set(None, "removed")
                return
            version = int(wanted)
            if self._current is not None and self._current.version == version:
                self.last_error = None
                return
            if self._failed and self._failed[0] == version and time.monotonic() - self._failed[1] < RETRY_FAILED_S:
                return
            try:
                model = self._load(version)
            except Exception as exc:  # any failure to load is the challenger's problem, never the champion's
                self._failed = (version, time.monotonic())
                self.last_error = f"v{version} failed to load: {exc}"
                log.warning("challenger %s; the champion keeps serving everything", self.last_error)
                if self._current is not None:
                    self._set(None, "failed")
                elif self._metrics:
                    self._metrics.challenger_reloads.labels("failed").inc()
                return
            self._failed = None
            self.last_error = None
            log.info("canary: @%s v%s loaded", self._alias, version)
            self._set(model, "ok")

    def _set(self, model: ServedModel | None, result: str) -> None:
        self._current = model
        if self._metrics:
            self._metrics.challenger_reloads.labels(result).inc()
            self._metrics.challenger_version.set(model.version if model else 0)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._poll, name="challenger-poller", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        self.poll_once()
        while not self._stop.wait(self._poll_seconds):
            self.poll_once()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)


class CanaryRouter:
    """Scores a micro-batch with the champion, and the challenger's share (or shadow) with the challenger."""

    def __init__(
        self, scorer: Scorer, challenger: ChallengerHolder, settings: Settings, metrics: ServiceMetrics
    ) -> None:
        self._scorer = scorer
        self._challenger = challenger
        self._shadow_mode = settings.canary_mode == "shadow"
        self._limit = share_limit(settings.canary_share)
        self._metrics = metrics
        metrics.canary_share.set(0.0 if self._shadow_mode else settings.canary_share)

    def challenger_state(self) -> str:
        state = self._challenger.state()
        if self._challenger.current is None:
            return state
        return f"{state}, shadow" if self._shadow_mode else f"{state}, {self._limit / 2**32:.1%} of transactions"

    def reload_challenger(self) -> None:
        self._challenger.poll_once()

    def score(self, transactions: list[dict[str, Any]], read: FeatureRead | None = None) -> list[Decision]:
        """The decisions of a batch. ``read``: its features, already read for the champion it names (the
        micro-batches read them asynchronously); without it the champion of the moment reads them."""
        champion = read.model if read else self._scorer.model()
        challenger = self._challenger.current
        if challenger is None or challenger.version == champion.version or (self._limit == 0 and not self._shadow_mode):
            return self._champion_alone(transactions, champion, read)
        if self._shadow_mode:
            return self._shadow(transactions, champion, challenger, read)
        return self._canary(transactions, champion, challenger, read)

    def _champion_alone(
        self, transactions: list[dict[str, Any]], champion: ServedModel, read: FeatureRead | None
    ) -> list[Decision]:
        if read is None:
            decisions, seconds = self._scorer.score_timed(transactions, champion)
        else:
            decisions, seconds = self._decide(transactions, read.columns, read.stored, champion)
        self._record(decisions, CHAMPION, champion, seconds)
        return decisions

    def _canary(
        self,
        transactions: list[dict[str, Any]],
        champion: ServedModel,
        challenger: ServedModel,
        read: FeatureRead | None,
    ) -> list[Decision]:
        picked = [
            i
            for i, txn in enumerate(transactions)
            if routed_to_challenger(str(txn["txn_id"]), self._limit, challenger.version)
        ]
        if not picked:
            return self._champion_alone(transactions, champion, read)
        n = len(transactions)
        out: list[Decision | None] = [None] * n
        batch = (read.columns, read.stored) if read else None
        if batch is None and champion.feature_service == challenger.feature_service:
            batch = self._scorer.features(transactions, champion)

        def inputs(index: list[int], model: ServedModel) -> tuple[Columns, list[EntityFeatures]]:
            if batch is None or model.feature_service != champion.feature_service:
                return self._scorer.features(_take(transactions, index), model)  # a feature service of its own
            return batch if len(index) == n else _slice(*batch, index, model)

        def decide(index: list[int], model: ServedModel, role: str) -> list[Decision]:
            decisions, seconds = self._decide(_take(transactions, index), *inputs(index, model), model)
            if role == CHALLENGER:
                _check_scores(decisions, model)
            self._record(decisions, role, model, seconds)
            for i, d in zip(index, decisions, strict=True):
                out[i] = d
            return decisions

        if len(picked) < n:
            picked_set = set(picked)
            decide([i for i in range(n) if i not in picked_set], champion, CHAMPION)
        try:
            decide(picked, challenger, CHALLENGER)
        except DependencyUnavailableError:
            raise  # Redis, not the challenger: the request gets the service's answer for that
        except Exception as exc:  # the challenger failed: the champion answers, and the failure is logged
            error = _describe(exc)
            log.warning("challenger v%s failed on %d transaction(s): %s", challenger.version, len(picked), error)
            self._metrics.challenger_errors.labels(str(challenger.version)).inc(len(picked))
            for d in decide(picked, champion, CHAMPION):
                d.challenger_error = error
        return out  # type: ignore[return-value]

    def _shadow(
        self,
        transactions: list[dict[str, Any]],
        champion: ServedModel,
        challenger: ServedModel,
        read: FeatureRead | None,
    ) -> list[Decision]:
        columns, stored = (read.columns, read.stored) if read else self._scorer.features(transactions, champion)
        decisions, seconds = self._decide(transactions, columns, stored, champion)
        self._record(decisions, CHAMPION, champion, seconds)
        try:
            if challenger.feature_service != champion.feature_service:
                columns, stored = self._scorer.features(transactions, challenger)
            shadow, seconds = self._decide(transactions, columns, stored, challenger)
            _check_scores(shadow, challenger)
        except Exception as exc:  # a shadow never fails a request
            error = _describe(exc)
            self._metrics.challenger_errors.labels(str(challenger.version)).inc(len(decisions))
            for d in decisions:
                d.challenger_error = error
            return decisions
        ms = seconds * 1000
        counts: dict[str, int] = {}
        for d, s in zip(decisions, shadow, strict=True):
            d.shadow_version = challenger.version
            d.shadow_score = s.risk_score
            d.shadow_recommendation = s.recommendation
            d.shadow_model_ms = ms
            counts[s.recommendation] = counts.get(s.recommendation, 0) + 1
        version = str(challenger.version)
        self._metrics.child(self._metrics.model_call_seconds, "shadow", version).observe(seconds)
        for recommendation, k in counts.items():
            self._metrics.child(self._metrics.shadow_recommendations, version, recommendation).inc(k)
        return decisions

    def _decide(
        self, transactions: list[dict[str, Any]], columns: Columns, stored: list[EntityFeatures], model: ServedModel
    ) -> tuple[list[Decision], float]:
        started = time.perf_counter()
        decisions = self._scorer.decisions(transactions, columns, stored, model)
        return decisions, time.perf_counter() - started

    def _record(self, decisions: list[Decision], role: str, model: ServedModel, seconds: float) -> None:
        ms = seconds * 1000
        counts: dict[str, int] = {}
        for d in decisions:
            d.role = role
            d.model_ms = ms
            counts[d.recommendation] = counts.get(d.recommendation, 0) + 1
        version = str(model.version)
        self._metrics.child(self._metrics.model_call_seconds, role, version).observe(seconds)
        for recommendation, k in counts.items():
            self._metrics.child(self._metrics.decisions, role, version, recommendation).inc(k)


def _take(values: Any, index: list[int]) -> Any:
    if isinstance(values, np.ndarray):
        return values[index]
    return [values[i] for i in index]


def _slice(
    columns: Columns, stored: list[EntityFeatures], index: list[int], model: ServedModel
) -> tuple[Columns, list[EntityFeatures]]:
    """The rows ``index`` of the columns ``model`` reads (all a decision uses), and of what was missing."""
    return {name: _take(columns[name], index) for name in model.features}, _take(stored, index)


def _check_scores(decisions: list[Decision], model: ServedModel) -> None:
    scores = np.fromiter((d.risk_score for d in decisions), dtype="float64", count=len(decisions))
    bad = ~((scores >= 0) & (scores <= 1))  # NaN fails both
    if bad.any():
        raise ValueError(f"v{model.version} gave {int(bad.sum())} score(s) outside [0, 1], e.g. {scores[bad][0]!r}")


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]
