"""The FastAPI app, built by ``create_app(settings)``. Its lifespan opens Feast, Redis and the model, and closes them.

Nothing connects at import time. When Redis or the registry is down the app still starts, reports not ready,
answers 503 with the reason (or the configured fail policy), and recovers by itself when they come back.
"""

from __future__ import annotations

import gc
import logging
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Any

import redis
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from threadpoolctl import threadpool_limits

from serving.batcher import MicroBatcher
from serving.canary import CanaryRouter, ChallengerHolder, registry_aliases, registry_loader
from serving.events import DecisionLog
from serving.front import ScoringApp, encoded, score_many, score_one
from serving.metrics import ServiceMetrics, observe_many
from serving.model import ModelHolder
from serving.schemas import BatchRequest, BatchResponse, Readiness, ScoreResponse, Transaction
from serving.scoring import Decision, Scorer
from skewless.errors import SkewlessError
from skewless.settings import Settings
from skewless.store import open_store

log = logging.getLogger(__name__)


@dataclass
class Service:
    settings: Settings
    redis: redis.Redis
    models: ModelHolder
    scorer: Scorer
    batcher: MicroBatcher[dict[str, Any], Decision]
    decisions: DecisionLog
    metrics: ServiceMetrics
    canary: CanaryRouter | None = None  # the challenger's share; without it the champion scores alone
    in_flight: int = 0  # scoring requests being answered (``ScoringApp``)

    def score_batch(self, transactions: list[dict[str, Any]]) -> list[Decision]:
        """Runs on the scoring thread: score, record metrics, log the decisions."""
        started = time.perf_counter()
        decisions = self.canary.score(transactions) if self.canary else self.scorer.score(transactions)
        return self._account(transactions, decisions, time.perf_counter() - started)

    async def score_micro_batch(self, transactions: list[dict[str, Any]]) -> list[Decision]:
        """``score_batch`` on the event loop: while Redis computes the features, the loop reads the next requests
        (they form the next micro-batch) instead of waiting in a socket read; scoring itself stays one call."""
        started = time.perf_counter()
        # Alone (every request being answered is in this batch), the loop has nothing to do while Redis answers: it
        # watches for the answer rather than sleep and wait to be woken (serving.pipeline_calls._answered_within),
        # and serializes the decisions logged before meanwhile, which would otherwise take the log's thread the GIL.
        alone = self.in_flight <= len(transactions)
        spin_s = self.settings.redis_spin_us / 1e6 if alone else 0.0
        read = await self.scorer.features_async(
            transactions, self.scorer.model(), spin_s, self.decisions.serialize_next
        )
        if self.canary:
            decisions = self.canary.score(transactions, read)
        else:
            decisions = self.scorer.decisions(transactions, read.columns, read.stored, read.model)
        return self._account(transactions, decisions, time.perf_counter() - started)

    def _account(self, transactions: list[dict[str, Any]], decisions: list[Decision], elapsed: float) -> list[Decision]:
        """Hand a scored batch's decisions to the log; their metrics are recorded there (``observe_decisions``)."""
        self.metrics.batch_size.observe(len(transactions))
        self.decisions.append(decisions, transactions, elapsed)
        self.metrics.decision_log_buffered.set(self.decisions.buffered)
        return decisions


def observe_decisions(metrics: ServiceMetrics, decisions: list[Decision]) -> None:
    """The decisions' metrics (scores, recommendations, missing and stale features, stored features' ages).

    The decision log's sender records them for everything handed since its last send, off the request path
    (``/metrics`` brings them up to date first). Gathered per label set first, then moved once each: a batch's
    thousands of metric calls cost ~25 ms here one at a time, and a micro-batch's ~60 µs on the request path."""
    counts: Counter[tuple[str, str]] = Counter()
    missing: Counter[str] = Counter()
    scores: dict[str, list[float]] = {}
    ages: dict[str, list[float]] = {}
    for d in decisions:
        version = str(d.model_version)
        scores.setdefault(version, []).append(d.risk_score)
        counts[(d.recommendation, version)] += 1
        if d.missing_features:  # most decisions miss nothing: an update with an empty list still costs ~1 µs
            missing.update(d.missing_features)
        if d.stale_features:
            missing.update(d.stale_features)
        for view, age in d.feature_ages.items():
            ages.setdefault(view, []).append(age)
    for version, values in scores.items():
        observe_many(metrics.child(metrics.scores, version), values)
    for view, values in ages.items():
        observe_many(metrics.child(metrics.feature_age, view), values)
    for labels, n in counts.items():
        metrics.child(metrics.recommendations, *labels).inc(n)
    for name, n in missing.items():
        metrics.child(metrics.missing_features, name).inc(n)


async def _service(request: Request) -> Service:  # async: a sync dependency would cost a thread hop per request
    return request.app.state.service  # type: ignore[no-any-return]


ServiceDep = Annotated[Service, Depends(_service)]


def _json(status: int, body: bytes) -> Response:
    return Response(body, status_code=status, media_type="application/json")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    metrics = ServiceMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = redis.Redis.from_url(
            settings.redis_url, socket_timeout=2, socket_connect_timeout=1, health_check_interval=5
        )
        store = open_store(settings.repo_root)

        def on_reload(previous: int | None, version: int, result: str) -> None:
            metrics.model_reloads.labels(result).inc()
            if result == "ok":
                metrics.model_version.set(version)

        challenger = ChallengerHolder(
            registry_aliases(settings), registry_loader(settings), settings.model_poll_seconds, metrics
        )
        models = ModelHolder(settings, on_reload=on_reload, loaded_elsewhere=challenger.model_for)
        try:
            models.reload()
        except SkewlessError as exc:  # start anyway: /ready says why, the poller keeps trying
            log.warning("starting without a model: %s", exc)
        models.start_polling()
        scorer = Scorer(store, client, models, settings.reasons_count)
        service = Service(
            settings,
            client,
            models,
            scorer,
            None,  # type: ignore[arg-type]
            DecisionLog(
                client,
                settings.decision_stream,
                observe=partial(observe_decisions, metrics),
                busy=lambda: service.in_flight > 0,  # the log's sender waits a little while requests are answered
            ),
            metrics,
        )
        service.canary = CanaryRouter(scorer, challenger, settings, metrics)
        challenger.start()  # loads on its own thread: a challenger never delays or endangers the champion
        service.batcher = MicroBatcher(
            service.score_batch,
            service.score_micro_batch,
            settings.microbatch_max,
            settings.microbatch_wait_ms / 1000,
            # One OpenMP/BLAS thread where scoring runs (the loop and the batch thread): a tree model's
            # per-call thread start-up otherwise costs more than the prediction itself (2 ms per tree here).
            thread_setup=lambda: threadpool_limits(settings.train_threads),
            inline=settings.microbatch_inline,
        )
        threadpool_limits(settings.train_threads)
        # The loop shares the GIL with the decision-log, poller and batch threads; by default a thread that holds
        # it keeps it up to 5 ms, which showed up as a 4-5 ms p99 for single requests.
        sys.setswitchinterval(settings.gil_switch_ms / 1000)
        # Feast, MLflow and the model leave ~500k long-lived objects; a full collection walking them stalls every
        # request for ~0.4 s here. Frozen, collections walk only what was made since.
        gc.collect()
        gc.freeze()
        # A batch keeps its thousands of new objects until it answers: at Python's default threshold (700) the
        # youngest generation was collected ~15 times per 1,000-transaction batch (2-3 ms of walking them).
        thresholds = gc.get_threshold()
        gc.set_threshold(settings.gc_young_threshold, *thresholds[1:])
        service.batcher.start()
        service.decisions.start()
        app.state.service = service
        try:
            yield
        finally:
            await service.batcher.stop()
            models.stop()
            challenger.stop()
            service.decisions.stop()
            client.close()
            gc.set_threshold(*thresholds)

    app = ScoringApp(
        metrics,
        title="Skewless fraud scoring",
        description="Online features from Feast plus the registry's champion model: a score and a recommendation.",
        version="1",
        lifespan=lifespan,
    )

    @app.exception_handler(SkewlessError)
    async def _domain_error(request: Request, exc: SkewlessError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=exc.http_status)

    # Answered by ScoringApp (serving/front.py) before FastAPI routes them; declared here for the OpenAPI
    # schema, and answering the same way should anything route them here.
    @app.post("/score", response_model=ScoreResponse)
    async def score(txn: Transaction, service: ServiceDep) -> Response:
        """Score one transaction. Requests arriving together are scored in one model call."""
        return _json(*await encoded(score_one(service, txn)))

    @app.post("/score/batch", response_model=BatchResponse)
    async def score_batch(body: BatchRequest, service: ServiceDep) -> Response:
        """Score up to SKEWLESS_MAX_BATCH_SIZE transactions together."""
        return _json(*await encoded(score_many(service, {"transactions": [dict(t) for t in body.transactions]})))

    @app.get("/health")
    async def health() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok"}

    @app.get("/ready", response_model=Readiness)
    def ready(service: ServiceDep) -> JSONResponse:
        """Redis answers and a model is loaded; 503 otherwise, with the reason."""
        try:
            service.redis.ping()
            redis_state = "ok"
            service.decisions.flush()
        except redis.RedisError as exc:
            redis_state = f"unavailable: {exc}"
        model = service.models.current
        model_state = "ok" if model else (service.models.last_error or "not loaded")
        body = Readiness(
            ready=redis_state == "ok" and model is not None,
            redis=redis_state,
            model=model_state,
            model_version=model.version if model else None,
            model_runtime=model.runtime if model else None,
            challenger=service.canary.challenger_state() if service.canary else "none",
        )
        return JSONResponse(body.model_dump(), status_code=200 if body.ready else 503)

    @app.get("/metrics")
    def prometheus_metrics(service: ServiceDep) -> Response:
        """Prometheus metrics, with every decision made so far counted (off the event loop)."""
        service.decisions.account()
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/admin/reload")
    def reload(service: ServiceDep) -> dict[str, Any]:
        """Load the versions the aliases point at now, without waiting for the pollers (off the event loop)."""
        changed = service.models.reload()
        if service.canary:
            service.canary.reload_challenger()
        model = service.models.current
        return {
            "changed": changed,
            "model_version": model.version if model else None,
            "challenger": service.canary.challenger_state() if service.canary else "none",
        }

    return app


def app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory`: settings from the environment."""
    return create_app(Settings())
