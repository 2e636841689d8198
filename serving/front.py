"""The scoring paths: ``POST /score`` and ``POST /score/batch``, answered as plain ASGI in front of FastAPI.

``score_one`` and ``score_many`` turn validated requests into answers (micro-batched or as one batch, with the
fail policy when a dependency is down); ``ScoringApp`` reads and validates the raw body, calls them, and
sends the answer, timing each request. FastAPI's routes of the same paths (``serving.app``) call the same two
functions and document the API.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from pydantic import ValidationError
from pydantic_core import to_json

from serving.metrics import ServiceMetrics
from serving.schemas import BATCH_ROWS, ScoreResponse, Transaction
from serving.scoring import Decision
from skewless.errors import DependencyUnavailableError, SkewlessError
from skewless.settings import Settings

if TYPE_CHECKING:
    from serving.app import Service


def _as_row(txn: Transaction) -> dict[str, Any]:
    # The fields as validated: a copy of the model's own dict (``dict(txn)`` walks pydantic's ``__iter__``, ~4 µs a
    # transaction here, ~40x the copy; ``model_dump`` walks them again).
    return _scored_row(txn.__dict__.copy())


def _scored_row(row: dict[str, Any]) -> dict[str, Any]:
    """A validated transaction's fields (a dict of its own) as the scorer takes them: its time as
    ``event_timestamp``, in UTC."""
    row["event_timestamp"] = row.pop("timestamp").astimezone(UTC)
    return row


def _latest_allowed(settings: Settings) -> datetime:
    """The latest timestamp accepted now: clocks may disagree by ``max_future_seconds``."""
    return datetime.now(UTC) + timedelta(seconds=settings.max_future_seconds)


def _check_clock(settings: Settings, timestamp: datetime, loc: list[Any], latest: datetime) -> None:
    """422 for a transaction's timestamp after ``latest`` (``_latest_allowed``; ``loc``: where the transaction is)."""
    if timestamp > latest:
        raise _invalid(
            [
                {
                    "type": "value_error",
                    "loc": [*loc, "timestamp"],
                    "msg": f"timestamp {timestamp.isoformat()} is more than "
                    f"{settings.max_future_seconds} s in the future",
                    "input": timestamp.isoformat(),
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


def _fail_policy(service: Service, txn_id: str, reason: str) -> dict[str, Any]:
    model = service.models.current
    return ScoreResponse(
        txn_id=txn_id,
        risk_score=None,
        recommendation=service.settings.fail_policy,  # type: ignore[arg-type]
        model_version=model.version if model else None,
        reasons=[],
        missing_features=[],
        stale_features=[],
        unknown_entities=[],
        policy=f"fail policy {service.settings.fail_policy}: {reason}",
    ).model_dump()


async def encoded(answer: Awaitable[dict[str, Any]]) -> tuple[int, bytes]:
    """Status and JSON body of a scoring answer (``score_one``/``score_many``), serialized by pydantic-core in one
    pass: 200 with the answer, the status of an ``_Answer``, or a domain error as ``{"detail": reason}``."""
    try:
        return 200, to_json(await answer)
    except _Answer as exc:
        return exc.status, to_json(exc.body, fallback=str)
    except SkewlessError as exc:
        return exc.http_status, to_json({"detail": str(exc)})


class _Answer(Exception):  # not an error: an answer other than 200, raised out of the scoring code
    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.body = body


def _invalid(errors: list[Any]) -> _Answer:
    """A 422 as FastAPI words it: ``{"detail": [{"type", "loc", "msg", "input", ...}]}``."""
    return _Answer(422, {"detail": errors})


async def score_one(service: Service, txn: Transaction) -> dict[str, Any]:
    """The answer to ``POST /score``; raises ``_Answer`` for anything but a 200."""
    _check_clock(service.settings, txn.timestamp, ["body"], _latest_allowed(service.settings))
    try:
        return _response(await service.batcher.submit(_as_row(txn)))
    except DependencyUnavailableError as exc:
        if service.settings.fail_policy == "error":
            raise
        return _fail_policy(service, txn.txn_id, str(exc))


async def score_many(service: Service, body: dict[str, Any]) -> dict[str, Any]:
    """The answer to ``POST /score/batch`` (``body`` as ``BATCH_ROWS`` validates it: each transaction a dict); raises
    ``_Answer`` for anything but a 200."""
    rows: list[dict[str, Any]] = body["transactions"]
    if len(rows) > service.settings.max_batch_size:
        raise _invalid(
            [
                {
                    "type": "too_long",
                    "loc": ["body", "transactions"],
                    "msg": f"{len(rows)} transactions; at most {service.settings.max_batch_size}",
                    "input": len(rows),
                }
            ]
        )
    latest = _latest_allowed(service.settings)
    if max(row["timestamp"] for row in rows) > latest:  # one pass in C; then find which, for the error
        for i, row in enumerate(rows):
            _check_clock(service.settings, row["timestamp"], ["body", "transactions", i], latest)
    try:
        decisions = await service.batcher.run_batch([_scored_row(row) for row in rows])  # the request's own dicts
    except DependencyUnavailableError as exc:
        if service.settings.fail_policy == "error":
            raise
        return {"results": [_fail_policy(service, row["txn_id"], str(exc)) for row in rows]}
    return {"results": [_response(d) for d in decisions]}


_SCORING: dict[str, tuple[Callable[[bytes], Any], Any, int]] = {  # path -> validation, answer, largest body in bytes
    "/score": (Transaction.model_validate_json, score_one, 64 * 1024),
    "/score/batch": (BATCH_ROWS.validate_json, score_many, 16 * 1024),  # per transaction allowed (max_batch_size)
}


class ScoringApp(FastAPI):
    """FastAPI, with ``POST /score`` and ``POST /score/batch`` answered as plain ASGI, timed, before its middleware
    and routing.

    The same request through FastAPI's route cost ~250 µs more here: its middleware and routing, dependency
    solving, a JSON parse then a validation, and its response handling (measured: 2,700 against 7,300 req/s
    for a constant answer at concurrency 8). Here pydantic validates the raw body in one pass and the answer
    goes out as one message. Errors read as FastAPI's do (422 ``detail`` with ``loc`` from ``body``; domain
    errors as ``{"detail": reason}`` with their status). FastAPI's routes of the same paths, which call the same
    ``score_one``/``score_many``, document the API in OpenAPI; other methods and paths go on to FastAPI.
    Answered here rather than in a middleware of the app, a request also skips the middleware FastAPI wraps around
    the app's own (server errors, telemetry, body limit): ~4% of the service's time at concurrency 8 (py-spy).
    """

    def __init__(self, metrics: ServiceMetrics, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        service = getattr(self.state, "service", None)  # set by the lifespan
        if scope["type"] != "http" or path not in _SCORING or scope["method"] != "POST" or service is None:
            await super().__call__(scope, receive, send)  # a label per path would grow with callers' typos
            return
        started = time.perf_counter()
        status = 500
        service.in_flight += 1
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
            service.in_flight -= 1
            self.metrics.child(self.metrics.request_seconds, path).observe(time.perf_counter() - started)
            self.metrics.child(self.metrics.requests, path, str(status)).inc()

    async def _answer(self, service: Service, path: str, receive: Any) -> tuple[int, bytes]:
        validate, answer, limit = _SCORING[path]
        if path == "/score/batch":
            limit *= service.settings.max_batch_size
        try:
            request = validate(await _body(receive, limit))
        except ValidationError as exc:
            errors = exc.errors(include_url=False)
            for error in errors:
                error["loc"] = ["body", *error["loc"]]
            return 422, to_json({"detail": errors}, fallback=str)
        except _Answer as exc:
            return exc.status, to_json(exc.body, fallback=str)
        return await encoded(answer(service, request))


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
