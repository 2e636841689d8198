"""The canary's state in the model registry: start, promote, roll back, and finish what a crash interrupted.

The registry is the only state. The registered model's tag ``canary_version`` points at the version under canary;
that version's tags say how far it got (``canary_status``), from where in the decision stream its window is read,
which champion it is judged against, the bounds, and in the end the verdict and its reasons. Each move is a short
sequence of registry writes ordered so that every prefix is safe to stop at:

- start:     pointer -> status ``running`` (+ champion, stream position, bounds) -> alias ``challenger``
- promote:   status ``promoting`` (+ verdict) -> ``champion`` moves (the commit point; ``previous_champion`` kept)
             -> ``challenger`` removed -> event -> status ``promoted`` -> pointer removed
- roll back: status ``rolling_back`` (+ verdict) -> ``challenger`` removed -> event -> status ``rolled_back``
             -> pointer removed

The service only ever serves whole versions by alias, so between any two writes it serves the old champion or the
new one, never half of a promotion. ``recover`` finishes any interrupted sequence from the tags alone; the watcher
calls it before each evaluation, so a crash anywhere is repaired by the next run of any `skewless canary` command.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import redis
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from release.rules import Bounds, Verdict
from skewless.errors import BadInputError, DependencyUnavailableError, SkewlessError
from skewless.settings import Settings
from training import registry

RUNNING, PROMOTING, PROMOTED = "running", "promoting", "promoted"
ROLLING_BACK, ROLLED_BACK = "rolling_back", "rolled_back"
FINAL = (PROMOTED, ROLLED_BACK)
POINTER = "canary_version"
EVENTS_MAXLEN = 100_000

T = TypeVar("T")


@dataclass(frozen=True)
class Canary:
    """A canary as the registry records it."""

    version: int
    status: str | None
    champion: int
    stream_start: str
    bounds: Bounds | None
    started_at: str
    drill: bool
    tags: dict[str, str]


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _registry(call: Callable[[], T], what: str) -> T:
    """A registry call; an unreachable registry is a DependencyUnavailableError, so callers retry later."""
    try:
        return call()
    except SkewlessError:
        raise
    except MlflowException as exc:
        raise DependencyUnavailableError(f"model registry, {what}: {exc.message}") from exc
    except Exception as exc:  # the database or server behind the registry
        raise DependencyUnavailableError(f"model registry unreachable, {what}: {exc}") from exc


class Registry:
    """The few registry reads and writes a release makes, each named; connection failures become
    DependencyUnavailableError."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.name = settings.model_name
        self.client: MlflowClient = registry.connect(settings)

    def model(self) -> tuple[dict[str, str], dict[str, str]]:
        """The registered model's aliases (alias -> version) and tags, in one read; both empty before it exists."""

        def read() -> tuple[dict[str, str], dict[str, str]]:
            try:
                model = self.client.get_registered_model(self.name)
            except MlflowException as exc:
                if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                    return {}, {}
                raise
            return {a: str(v) for a, v in model.aliases.items()}, dict(model.tags)

        return _registry(read, "reading the registered model")

    def aliases(self) -> dict[str, str]:
        return self.model()[0]

    def model_tags(self) -> dict[str, str]:
        return self.model()[1]

    def version_tags(self, version: int) -> dict[str, str]:
        def read() -> dict[str, str]:
            try:
                return dict(self.client.get_model_version(self.name, str(version)).tags)
            except MlflowException as exc:
                if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                    raise BadInputError(f"model {self.name!r} has no version {version}") from exc
                raise

        return _registry(read, f"reading v{version}")

    def tag_model(self, key: str, value: str | None) -> None:
        if value is None:
            if key in self.model_tags():
                _registry(lambda: self.client.delete_registered_model_tag(self.name, key), f"removing tag {key}")
        else:
            _registry(lambda: self.client.set_registered_model_tag(self.name, key, value), f"setting tag {key}")

    def tag_version(self, version: int, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            _registry(
                lambda k=key, v=value: self.client.set_model_version_tag(self.name, str(version), k, v),  # type: ignore[misc]
                f"tagging v{version}",
            )

    def set_alias(self, alias: str, version: int) -> None:
        _registry(lambda: self.client.set_registered_model_alias(self.name, alias, str(version)), f"@{alias}")

    def remove_alias(self, alias: str, only_if: int) -> None:
        """Remove ``alias`` if it still points at ``only_if`` (another version there is someone else's)."""
        if self.aliases().get(alias) == str(only_if):
            _registry(lambda: self.client.delete_registered_model_alias(self.name, alias), f"removing @{alias}")

    def versions(self) -> list[Any]:
        return _registry(lambda: list(self.client.search_model_versions(f"name = '{self.name}'")), "listing versions")


def current(reg: Registry) -> Canary | None:
    """The canary the pointer names, whatever its status; None when there is none."""
    pointer = reg.model_tags().get(POINTER)
    if not pointer:
        return None
    version = int(pointer)
    tags = reg.version_tags(version)
    bounds = tags.get("canary_bounds")
    return Canary(
        version=version,
        status=tags.get("canary_status"),
        champion=int(tags.get("canary_champion", "0")),
        stream_start=tags.get("canary_stream_start", "0-0"),
        bounds=Bounds.from_json(bounds) if bounds else None,
        started_at=tags.get("canary_started_at", "?"),
        drill=tags.get("canary_drill") == "true",
        tags=tags,
    )


def last_finished(reg: Registry) -> tuple[int, dict[str, str]] | None:
    """The most recently finished canary: its version and tags."""
    finished = [
        (v.tags.get("canary_finished_at", ""), int(v.version), dict(v.tags))
        for v in reg.versions()
        if v.tags.get("canary_status") in FINAL
    ]
    if not finished:
        return None
    _, version, tags = max(finished)
    return version, tags


def start(
    reg: Registry, events: redis.Redis, version: int, stream_start: str, *, by: str, drill: bool = False
) -> Canary:
    """Make ``version`` the challenger, judged against today's champion from ``stream_start`` on."""
    running = current(reg)
    if running is not None and running.status not in FINAL:
        raise BadInputError(
            f"a canary of v{running.version} is {running.status or 'starting'} (since {running.started_at}); "
            "wait for its verdict or stop it with `skewless canary stop`"
        )
    aliases = reg.aliases()
    champion = aliases.get(registry.CHAMPION)
    if champion is None:
        raise BadInputError(f"{reg.name} has no @champion to judge a challenger against; deploy one first")
    if int(champion) == version:
        raise BadInputError(f"v{version} is already the champion")
    tags = reg.version_tags(version)
    if not drill and not tags.get("approved_by"):
        raise BadInputError(
            f"v{version} is not approved (validation: {tags.get('validation_status', 'not run')}); "
            "only approved versions go to a canary (a drill may use --drill)"
        )
    bounds = Bounds.from_settings(reg.settings)
    reg.tag_model(POINTER, str(version))
    reg.tag_version(
        version,
        {
            "canary_status": RUNNING,
            "canary_started_at": now(),
            "canary_started_by": by,
            "canary_champion": champion,
            "canary_stream_start": stream_start,
            "canary_bounds": bounds.to_json(),
            "canary_drill": str(drill).lower(),
            "canary_verdict": "pending",
            "canary_reasons": "-",
            "canary_finished_at": "-",
        },
    )
    reg.set_alias(registry.CHALLENGER, version)
    _send(
        events, reg.settings, "canary_started", version, strict=False, champion=int(champion), bounds=bounds.describe()
    )
    started = current(reg)
    assert started is not None
    return started


def conclude(reg: Registry, events: redis.Redis, canary: Canary, verdict: Verdict) -> str:
    """Act on a decided verdict: promote or roll back. Returns the final status."""
    promote = verdict.promote
    reasons = verdict.reasons or [verdict.summary()]
    if promote and canary.drill:
        promote = False
        reasons = [f"within bounds ({verdict.summary()}), but a drill challenger is never promoted"]
    reg.tag_version(
        canary.version,
        {
            "canary_status": PROMOTING if promote else ROLLING_BACK,
            "canary_verdict": "promote" if promote else "rollback",
            "canary_decided_at": now(),
            "canary_reasons": "; ".join(reasons)[:5000],
            "canary_metrics": json.dumps(verdict.metrics(), sort_keys=True),
            "canary_window": verdict.progress,
        },
    )
    return _finish(reg, events, canary.version)


def stop(reg: Registry, events: redis.Redis, reason: str) -> int | None:
    """Roll back the running canary for ``reason`` (an operator's stop). Returns its version, None if none."""
    canary = recover_and_read(reg, events)
    if canary is None:
        return None
    reg.tag_version(
        canary.version,
        {
            "canary_status": ROLLING_BACK,
            "canary_verdict": "rollback",
            "canary_decided_at": now(),
            "canary_reasons": reason[:5000],
        },
    )
    _finish(reg, events, canary.version)
    return canary.version


def recover_and_read(reg: Registry, events: redis.Redis) -> Canary | None:
    """Finish an interrupted move, then return the running canary (None if none runs)."""
    canary = current(reg)
    if canary is None:
        return None
    if canary.status == RUNNING:
        if reg.aliases().get(registry.CHALLENGER) != str(canary.version):
            reg.set_alias(registry.CHALLENGER, canary.version)  # the start stopped before its last write
        return canary
    if canary.status is None:  # the start stopped after its first write
        reg.tag_version(
            canary.version,
            {
                "canary_status": ROLLING_BACK,
                "canary_verdict": "rollback",
                "canary_decided_at": now(),
                "canary_reasons": "the canary's start was interrupted before it was recorded",
            },
        )
    _finish(reg, events, canary.version)
    return None


def _finish(reg: Registry, events: redis.Redis, version: int) -> str:
    """Carry a promoting or rolling-back canary to its end; safe to repeat from any point."""
    tags = reg.version_tags(version)
    status = tags.get("canary_status")
    if status == PROMOTING:
        if reg.aliases().get(registry.CHAMPION) != str(version):
            from training.lifecycle import deploy

            deploy(reg.settings, version)  # the commit point; records previous_champion
        reg.remove_alias(registry.CHALLENGER, only_if=version)
        previous = reg.version_tags(version).get("previous_champion")
        _send(
            events,
            reg.settings,
            "promoted",
            version,
            champion=version,
            previous_champion=int(previous) if previous else None,
            reasons=tags.get("canary_reasons", ""),
        )
        reg.tag_version(version, {"canary_status": PROMOTED, "canary_finished_at": now()})
        status = PROMOTED
    elif status == ROLLING_BACK:
        reg.remove_alias(registry.CHALLENGER, only_if=version)
        champion = tags.get("canary_champion")
        _send(
            events,
            reg.settings,
            "rolled_back",
            version,
            champion=int(champion) if champion else None,
            reasons=tags.get("canary_reasons", ""),
        )
        reg.tag_version(version, {"canary_status": ROLLED_BACK, "canary_finished_at": now()})
        status = ROLLED_BACK
    if reg.model_tags().get(POINTER) == str(version):
        reg.tag_model(POINTER, None)
    return status or "unknown"


@dataclass(frozen=True)
class Rollback:
    leaving: int
    restored: int
    stopped_canary: int | None
    event_sent: bool


def rollback_champion(reg: Registry, events: redis.Redis, *, to: int | None, reason: str, by: str) -> Rollback:
    """Point @champion back at the previous champion (or ``to``).

    A running canary is rolled back first: it was being judged against the champion that is leaving. The
    version rolled back from is tagged with when, why and by whom; ``previous_champion`` moves one step back, so
    rolling back again walks further back through the champions."""
    aliases, model_tags = reg.model()
    champion = aliases.get(registry.CHAMPION)
    if champion is None:
        raise BadInputError(f"{reg.name} has no @champion to roll back")
    leaving = int(champion)
    leaving_tags = reg.version_tags(leaving)
    target = to
    if target is None:
        recorded = leaving_tags.get("previous_champion") or model_tags.get("previous_champion")
        if not recorded or int(recorded) == leaving:
            raise BadInputError(f"no previous champion is recorded for v{leaving}; name one with --to VERSION")
        target = int(recorded)
    if target == leaving:
        raise BadInputError(f"v{target} is already the champion")
    target_tags = reg.version_tags(target)  # raises, naming the versions, when it does not exist
    stopped = None
    if model_tags.get(POINTER):  # only a running canary costs a round of writes before the alias moves
        stopped = stop(reg, events, f"the champion v{leaving} was rolled back to v{target}: {reason}")
    reg.set_alias(registry.CHAMPION, target)  # the commit point: the service swaps within its poll interval
    reg.tag_version(
        leaving,
        {"rolled_back_at": now(), "rolled_back_to": str(target), "rolled_back_by": by, "rolled_back_reason": reason},
    )
    earlier = target_tags.get("previous_champion")
    reg.tag_model("previous_champion", earlier if earlier and int(earlier) != target else None)
    reg.tag_version(target, {"restored_at": now(), "restored_from": str(leaving)})
    sent = _send(
        events, reg.settings, "champion_rolled_back", leaving, strict=False, champion=target, reasons=reason, by=by
    )
    return Rollback(leaving, target, stopped, sent)


def _send(
    events: redis.Redis,
    settings: Settings,
    kind: str,
    version: int,
    *,
    strict: bool = True,
    **details: object,
) -> bool:
    """One event on the release stream. ``strict``: a failure stops the move here, to be finished (and the event
    sent) by the next ``recover``; otherwise the caller is told (False) and reports it."""
    event = {"kind": kind, "version": version, **details, "at": now()}
    try:
        events.xadd(settings.release_stream, {"event": json.dumps(event)}, maxlen=EVENTS_MAXLEN, approximate=True)
    except redis.RedisError as exc:
        if strict:
            raise DependencyUnavailableError(
                f"release stream {settings.release_stream!r} (Redis) unavailable, {kind} of v{version} will be "
                f"finished by the next `skewless canary` run: {exc}"
            ) from exc
        return False
    return True
