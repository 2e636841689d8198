"""`skewless retrain`: the weekly release, unattended, from new raw days to a challenger under canary.

pipeline (raw gate) -> materialize (feature-table gate) -> train (training-set gate) -> validate-model against the
champion -> approve (by the retrain policy, recorded) -> @challenger and its canary -> optionally, wait for the
verdict. The first stage that refuses stops the run: its reason is printed, sent to the release stream, and the
exit code is non-zero. Nothing before the canary touches @champion or @challenger, so a stopped run deploys
nothing; the canary itself promotes or rolls back by rule (release/rules.py).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import redis

from release import state
from release.watch import Evaluation, events_client, watch
from release.window import stream_position
from skewless.errors import SkewlessError
from skewless.settings import Settings

log = logging.getLogger(__name__)

MODEL_GATE_EXIT = 1  # validate-model refused the new version: the data was fine, the model was not good enough


@dataclass
class RetrainOutcome:
    stages: list[tuple[str, str, float]] = field(default_factory=list)  # name, what happened, seconds
    version: int | None = None
    stopped_at: str | None = None
    reason: str | None = None
    exit_code: int = 0
    verdict: Evaluation | None = None

    @property
    def ok(self) -> bool:
        return self.stopped_at is None


class _Stopped(Exception):
    def __init__(self, reason: str, exit_code: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.exit_code = exit_code


def retrain(
    settings: Settings,
    *,
    seed: int = 0,
    feature_service: str | None = None,
    wait_seconds: float | None = None,
    say: Callable[[str], None] = print,
) -> RetrainOutcome:
    """Run every stage in order; stop at the first refusal. See the module docstring."""
    outcome = RetrainOutcome()
    events = events_client(settings)

    def stage(name: str, run: Callable[[], str]) -> None:
        started = time.perf_counter()
        try:
            detail = run()
        except _Stopped:
            raise
        except SkewlessError as exc:
            raise _Stopped(str(exc), exc.exit_code) from exc
        except Exception as exc:  # a failure of a library under a stage: still a clear stop, never a traceback
            raise _Stopped(f"{type(exc).__name__}: {exc}", 1) from exc
        seconds = time.perf_counter() - started
        outcome.stages.append((name, detail, seconds))
        say(f"retrain: {name:<15} {detail} ({seconds:.1f} s)")

    current = "preflight"
    try:
        for current, run in (
            ("preflight", lambda: _preflight(settings, events)),
            ("pipeline", lambda: _pipeline(settings)),
            ("materialize", lambda: _materialize(settings)),
            ("train", lambda: _train(settings, seed, feature_service, outcome)),
            ("validate-model", lambda: _validate(settings, outcome)),
            ("approve", lambda: _approve(settings, outcome)),
            ("canary", lambda: _canary(settings, events, outcome)),
        ):
            stage(current, run)
    except _Stopped as stop:
        outcome.stopped_at, outcome.reason, outcome.exit_code = current, stop.reason, stop.exit_code
        say(f"retrain: stopped at {current}: {stop.reason}")
        say("retrain: nothing deployed; @champion and @challenger are as they were")
        _event(events, settings, {"kind": "retrain_stopped", "stage": current, "reason": stop.reason[:2000]})
        return outcome
    if wait_seconds:
        say(f"retrain: waiting up to {wait_seconds:g} s for the canary's verdict")
        outcome.verdict = watch(settings, interval=2.0, until_decided=True, timeout=wait_seconds, say=say)
        if outcome.verdict is None:
            say("retrain: no verdict yet; the canary keeps running (`skewless canary status`)")
    return outcome


def _preflight(settings: Settings, events: redis.Redis) -> str:
    reg = state.Registry(settings)
    canary = state.recover_and_read(reg, events)
    if canary is not None:
        raise _Stopped(
            f"a canary of v{canary.version} is still running (since {canary.started_at}); one release at a time",
            1,
        )
    champion = reg.aliases().get("champion")
    if champion is None:
        raise _Stopped(f"{settings.model_name} has no @champion to compare with; deploy the first one by hand", 2)
    return f"champion v{champion}, no canary running"


def _pipeline(settings: Settings) -> str:
    from pipeline.run import run_pipeline

    result = run_pipeline(settings.raw_dir, settings.features_dir, reports_dir=settings.reports_dir)
    if not result.days:
        return "no new raw days; feature tables up to date"
    return f"{len(result.days)} new day(s) {result.days[0]}..{result.days[-1]} validated and computed"


def _materialize(settings: Settings) -> str:
    from skewless.store import apply_definitions, open_store

    store = open_store(settings.repo_root)
    apply_definitions(store)
    end = datetime.now(UTC)
    store.materialize_incremental(end_date=end)
    return f"feature tables checked and pushed online up to {end:%Y-%m-%d %H:%M} UTC"


def _train(settings: Settings, seed: int, feature_service: str | None, outcome: RetrainOutcome) -> str:
    from training.train import train

    trained = train(settings, service_name=feature_service, seed=seed)
    outcome.version = trained.version
    m = trained.metrics
    return (
        f"v{trained.version} ({trained.model_type}) registered @candidate: PR-AUC {m['pr_auc']:.4f}, "
        f"recall@1%FPR {m['recall_at_1pct_fpr']:.4f}"
    )


def _validate(settings: Settings, outcome: RetrainOutcome) -> str:
    from training.lifecycle import validate_model

    verdict = validate_model(settings, outcome.version)
    line = f"PR-AUC {verdict.metrics['pr_auc']:.4f}"
    if verdict.champion_metrics:
        line += f" vs champion v{verdict.champion_version} {verdict.champion_metrics['pr_auc']:.4f}"
    if not verdict.passed:
        raise _Stopped(f"v{verdict.version} failed validation ({line}): " + "; ".join(verdict.reasons), MODEL_GATE_EXIT)
    return f"v{verdict.version} passed ({line})"


def _approve(settings: Settings, outcome: RetrainOutcome) -> str:
    from training.lifecycle import approve

    assert outcome.version is not None
    approve(settings, outcome.version, settings.retrain_approver)
    return f"v{outcome.version} approved by {settings.retrain_approver!r} (the canary still has to pass)"


def _canary(settings: Settings, events: redis.Redis, outcome: RetrainOutcome) -> str:
    assert outcome.version is not None
    reg = state.Registry(settings)
    position = stream_position(events, settings.decision_stream)
    canary = state.start(reg, events, outcome.version, position, by=settings.retrain_approver)
    assert canary.bounds is not None
    return f"v{canary.version} is @challenger; canary against champion v{canary.champion} ({canary.bounds.describe()})"


def _event(events: redis.Redis, settings: Settings, event: dict[str, object]) -> None:
    try:
        events.xadd(
            settings.release_stream,
            {"event": json.dumps({**event, "at": state.now()})},
            maxlen=state.EVENTS_MAXLEN,
            approximate=True,
        )
    except redis.RedisError as exc:  # the stop itself is what matters; the event is a courtesy to alerting
        log.warning("release stream unavailable, retrain_stopped event not sent: %s", exc)
