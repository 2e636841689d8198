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
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import redis
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ValidationError
from pydantic_core import to_json
from threadpoolctl import threadpool_limits

from serving.batcher import MicroBatcher
from serving.canary import CanaryRouter, ChallengerHolder, registry_aliases, registry_loader
from serving.events import DecisionLog
from serving.metrics import ServiceMetrics, observe_many
from serving.model import ModelHolder
from serving.schemas import BatchRequest, BatchResponse, Readiness, ScoreResponse, Transaction
from serving.scoring import Decision, Scorer
from skewless.errors import DependencyUnavailableError, SkewlessError
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

    def score_batch(self, transactions: list[dict[str, Any]]) -> list[Decision]:
        """Runs on the scoring thread: score, record metrics, log the decisions."""
        started = time.perf_counter()
        decisions = self.canary.score(transactions) if self.canary else self.scorer.score(transactions)
        elapsed = time.perf_counter() - started
        metrics = self.metrics
        metrics.batch_size.observe(len(transactions))
        # Gathered per label set first, then moved once each: a batch's thousands of metric calls cost ~25 ms.
        counts: Counter[tuple[str, str]] = Counter()
        missing: Counter[str] = Counter()
        scores: dict[str, list[float]] = {}
        ages: dict[str, list[float]] = {}
        for d in decisions:
            version = str(d.model_version)
            scores.setdefault(version, []).append(d.risk_score)
            counts[(d.recommendation, version)] += 1
            missing.update(d.missing_features)
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
        self.decisions.append(decisions, transactions, elapsed)
        self.metrics.decision_log_buffered.set(self.decisions.buffered)
        return decisions


async def _service(request: Request) -> Service:  # async: a sync dependency would cost a thread hop per request
    return request.app.state.service  # type: ignore[no-any-return]


ServiceDep = Annotated[Service, Depends(_service)]


def _as_row(txn: Transaction) -> dict[str, Any]:
    row = dict(txn)  # the fields as validated (model_dump would walk them again)
    row["event_timestamp"] = row.pop("timestamp").astimezone(UTC)
    return row


def _check_clock(settings: Settings, txn: Transaction, loc: list[Any]) -> None:
    """422 for a timestamp further in the future than clocks can disagree (``loc``: where the transaction is)."""
    if txn.timestamp > datetime.now(UTC) + timedelta(seconds=settings.max_future_seconds):
        raise _invalid(
            [
                {
                    "type": "value_error",
                    "loc": [*loc, "timestamp"],
                    "msg": f"timestamp {txn.timestamp.isoformat()} is more than "
                    f"{settings.max_future_seconds} s in the future",
                    "input": txn.timestamp.isoformat(),
                }
            ]
        )


def _response(d: Decision) -> dict[str, Any]:
    """A ``ScoreResponse`` as a plain dict. Built from the scorer's own values, it is not validated again: pydantic
    models for the 1,000 answers of a batch (constructed, even unvalidated) cost ~15% of the call."""
    return {
        "txn_id": d.txn_id,
        "risk_score": d.risk_score,
        "recommendation": d.recommendation,
        "model_version": d.model_version,
        "model_role": d.role,
        "reasons": d.reasons,
        "missing_features": d.missing_features,
        "stale_features": d.stale_features,
        "unknown_entities": d.unknown_entities,
        "policy": None,
    }


def _fail_policy(service: Service, txn: Transaction, reason: str) -> dict[str, Any]:
    model = service.models.current
    return ScoreResponse(
        txn_id=txn.txn_id,
        risk_score=None,
        recommendation=service.settings.fail_policy,  # type: ignore[arg-type]
        model_version=model.version if model else None,
        reasons=[],
        missing_features=[],
        stale_features=[],
        unknown_entities=[],
        policy=f"fail policy {service.settings.fail_policy}: {reason}",
    ).model_dump()


async def _fastapi_answer(answer: Any) -> Response:
    """A scoring answer, serialized by pydantic's JSON encoder in one pass, for FastAPI's routes."""
    try:
        return Response(to_json(await answer), media_type="application/json")
    except _Answer as exc:
        return Response(to_json(exc.body, fallback=str), status_code=exc.status, media_type="application/json")


class _Answer(Exception):  # not an error: an answer other than 200, raised out of the scoring code
    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.body = body


def _invalid(errors: list[Any]) -> _Answer:
    """A 422 as FastAPI words it: ``{"detail": [{"type", "loc", "msg", "input", ...}]}``."""
    return _Answer(422, {"detail": errors})


async def score_one(service: Service, txn: Transaction) -> dict[str, Any]:
    """The answer to ``POST /score``; raises ``_Answer`` for anything but a 200."""
    _check_clock(service.settings, txn, ["body"])
    try:
        return _response(await service.batcher.submit(_as_row(txn)))
    except DependencyUnavailableError as exc:
        if service.settings.fail_policy == "error":
            raise
        return _fail_policy(service, txn, str(exc))


async def score_many(service: Service, body: BatchRequest) -> dict[str, Any]:
    """The answer to ``POST /score/batch``; raises ``_Answer`` for anything but a 200."""
    if len(body.transactions) > service.settings.max_batch_size:
        raise _invalid(
            [
                {
                    "type": "too_long",
                    "loc": ["body", "transactions"],
                    "msg": f"{len(body.transactions)} transactions; at most {service.settings.max_batch_size}",
                    "input": len(body.transactions),
                }
            ]
        )
    for i, txn in enumerate(body.transactions):
        _check_clock(service.settings, txn, ["body", "transactions", i])
    try:
        decisions = await service.batcher.run_batch([_as_row(t) for t in body.transactions])
    except DependencyUnavailableError as exc:
        if service.settings.fail_policy == "error":
            raise
        return {"results": [_fail_policy(service, t, str(exc)) for t in body.transactions]}
    return {"results": [_response(d) for d in decisions]}


_SCORING: dict[str, tuple[type[BaseModel], Any, int]] = {  # path -> request model, answer, largest body in bytes
    "/score": (Transaction, score_one, 64 * 1024),
    "/score/batch": (BatchRequest, score_many, 16 * 1024),  # per transaction allowed (max_batch_size)
}


class _ScoringEndpoints:
    """``POST /score`` and ``POST /score/batch`` as plain ASGI, timed, in front of FastAPI's routing.

    The same request through FastAPI's route cost ~250 µs more here: its middleware and routing, dependency
    solving, a JSON parse then a validation, and its response handling (measured: 2,700 against 7,300 req/s
    for a constant answer at concurrency 8). Here pydantic validates the raw body in one pass and the answer
    goes out as one message. Errors read as FastAPI's do (422 ``detail`` with ``loc`` from ``body``; domain
    errors as ``{"detail": reason}`` with their status). FastAPI's routes of the same paths, which call the same
    ``score_one``/``score_many``, document the API in OpenAPI; other methods and paths go on to FastAPI.
    """

    def __init__(self, app: Any, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        service = getattr(getattr(scope.get("app"), "state", None), "service", None)  # set by the lifespan
        if scope["type"] != "http" or path not in _SCORING or scope["method"] != "POST" or service is None:
            await self.app(scope, receive, send)  # a label per path would grow with callers' typos
            return
        started = time.perf_counter()
        status = 500
        try:
            status, body = await self._answer(service, path, receive)
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))],
                }
            )
            await send({"type": "http.response.body", "body": body})
        finally:
            self.metrics.child(self.metrics.request_seconds, path).observe(time.perf_counter() - started)
            self.metrics.child(self.metrics.requests, path, str(status)).inc()

    async def _answer(self, service: Service, path: str, receive: Any) -> tuple[int, bytes]:
        model, answer, limit = _SCORING[path]
        if path == "/score/batch":
            limit *= service.settings.max_batch_size
        try:
            request = model.model_validate_json(await _body(receive, limit))
            return 200, to_json(await answer(service, request))
        except ValidationError as exc:
            errors = exc.errors(include_url=False)
            for error in errors:
                error["loc"] = ["body", *error["loc"]]
            return 422, to_json({"detail": errors}, fallback=str)
        except _Answer as exc:
            return exc.status, to_json(exc.body, fallback=str)
        except SkewlessError as exc:
            return exc.http_status, to_json({"detail": str(exc)})


async def _body(receive: Any, limit: int) -> bytes:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Answer(499, {"detail": "client disconnected"})
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _Answer(413, {"detail": f"request body over {limit:,} bytes"})
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


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
            settings, client, models, scorer, None, DecisionLog(client, settings.decision_stream), metrics
        )  # type: ignore[arg-type]
        service.canary = CanaryRouter(scorer, challenger, settings, metrics)
        challenger.start()  # loads on its own thread: a challenger never delays or endangers the champion
        service.batcher = MicroBatcher(
            service.score_batch,
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

    app = FastAPI(
        title="Skewless fraud scoring",
        description="Online features from Feast plus the registry's champion model: a score and a recommendation.",
        version="1",
        lifespan=lifespan,
    )

    @app.exception_handler(SkewlessError)
    async def _domain_error(request: Request, exc: SkewlessError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=exc.http_status)

    app.add_middleware(_ScoringEndpoints, metrics=metrics)

    # Answered by _ScoringEndpoints before FastAPI routes them; declared here for the OpenAPI schema (and
    # answering the same way should anything route them here).
    @app.post("/score", response_model=ScoreResponse)
    async def score(txn: Transaction, service: ServiceDep) -> Response:
        """Score one transaction. Requests arriving together are scored in one model call."""
        return await _fastapi_answer(score_one(service, txn))

    @app.post("/score/batch", response_model=BatchResponse)
    async def score_batch(body: BatchRequest, service: ServiceDep) -> Response:
        """Score up to SKEWLESS_MAX_BATCH_SIZE transactions together."""
        return await _fastapi_answer(score_many(service, body))

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
    async def prometheus_metrics() -> Response:
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
