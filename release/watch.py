"""Judging the running canary, and saying where things stand.

``Evaluator.run_once`` is one pass: finish any interrupted move (release/state.py), read the canary's window from
the decision stream (release/window.py), judge it (release/rules.py), and promote or roll back once it is decided.
`skewless canary watch` repeats it; `skewless canary evaluate` runs it once (cron, scripts). Run one watcher per
registered model: the registry is the only state, so a restarted watcher carries on where the last one stopped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

from release import state
from release.rules import Bounds, Verdict, judge
from release.window import Window, read
from skewless.errors import DependencyUnavailableError
from skewless.settings import Settings
from training import registry

WAITING, NONE = "waiting", "none"


@dataclass
class Evaluation:
    outcome: str  # none, waiting, promoted or rolled_back
    canary: state.Canary | None = None
    window: Window | None = None
    verdict: Verdict | None = None


def events_client(settings: Settings) -> redis.Redis:
    return redis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=2)


class Evaluator:
    """Keeps the window between passes, so a watcher reads each stream entry once; a new one rebuilds it."""

    def __init__(self, settings: Settings, client: redis.Redis) -> None:
        self.settings = settings
        self.client = client
        self._window: Window | None = None
        self._key: tuple[int, int, str, int] | None = None

    def run_once(self) -> Evaluation:
        reg = state.Registry(self.settings)
        canary = state.recover_and_read(reg, self.client)
        if canary is None:
            self._window = None
            return Evaluation(NONE)
        bounds = canary.bounds or Bounds.from_settings(self.settings)
        window = self._window_for(canary, bounds)
        read(self.client, self.settings.decision_stream, window)
        verdict = judge(window.champion, window.challenger, bounds)
        if not verdict.decided:
            return Evaluation(WAITING, canary, window, verdict)
        outcome = state.conclude(reg, self.client, canary, verdict)
        self._window = None
        return Evaluation(outcome, canary, window, verdict)

    def _window_for(self, canary: state.Canary, bounds: Bounds) -> Window:
        key = (canary.version, canary.champion, canary.stream_start, bounds.window)
        if self._window is None or self._key != key:
            self._window = Window(canary.champion, canary.version, bounds.window, canary.stream_start)
            self._key = key
        return self._window


def watch(
    settings: Settings,
    *,
    interval: float,
    until_decided: bool,
    timeout: float | None,
    say: Callable[[str], None] = print,
) -> Evaluation | None:
    """Evaluate every ``interval`` seconds. With ``until_decided``: return after the first verdict (or at once
    when no canary runs); None when ``timeout`` passed first."""
    evaluator = Evaluator(settings, events_client(settings))
    deadline = None if timeout is None else time.monotonic() + timeout
    last = ""
    while True:
        try:
            ev = evaluator.run_once()
        except DependencyUnavailableError as exc:
            say(f"canary: {exc}; trying again in {interval:g} s (nothing changes meanwhile)")
        else:
            line = describe(ev)
            if line != last:
                say(line)
                last = line
            if until_decided and ev.outcome != WAITING:
                return ev
        if deadline is not None and time.monotonic() > deadline:
            return None
        time.sleep(interval)


def describe(ev: Evaluation) -> str:
    if ev.outcome == NONE or ev.canary is None:
        return "canary: none running"
    c, v = ev.canary, ev.verdict
    assert v is not None and ev.window is not None
    head = f"canary of v{c.version} against champion v{c.champion} ({ev.window.mode})"
    if ev.outcome == WAITING:
        return f"{head}: {v.progress}"
    if ev.outcome == state.PROMOTED:
        return f"{head}: PROMOTED, v{c.version} is the champion (v{c.champion} kept for rollback). {v.summary()}"
    reasons = "; ".join(v.reasons) if v.reasons else v.summary()
    if c.drill and v.promote:
        reasons = f"a drill is never promoted ({v.summary()})"
    return f"{head}: ROLLED BACK, @challenger removed. Outside bounds: {reasons}"


def status_lines(settings: Settings, client: redis.Redis) -> list[str]:
    """Champion, previous champion, challenger; the running canary's progress against its bounds; the last verdict."""
    reg = state.Registry(settings)
    aliases = reg.aliases()
    tags = reg.model_tags()
    champion = aliases.get(registry.CHAMPION, "none")
    lines = [
        f"{settings.model_name}: champion v{champion}, previous champion v{tags.get('previous_champion', '-')}, "
        f"challenger {('v' + aliases[registry.CHALLENGER]) if registry.CHALLENGER in aliases else 'none'}"
    ]
    canary = state.current(reg)
    if canary is not None:
        bounds = canary.bounds or Bounds.from_settings(settings)
        lines.append(
            f"canary of v{canary.version}: {canary.status or 'starting'} since {canary.started_at}, judged against "
            f"champion v{canary.champion}" + (" (a drill: never promoted)" if canary.drill else "")
        )
        if canary.status == state.RUNNING:
            window = Window(canary.champion, canary.version, bounds.window, canary.stream_start)
            try:
                read(client, settings.decision_stream, window)
                verdict = judge(window.champion, window.challenger, bounds)
                lines.append(f"  window: {verdict.progress}; mode {window.mode}")
                lines += [f"  {'ok  ' if c.passed else 'OUT '} {c.text}" for c in verdict.checks]
            except DependencyUnavailableError as exc:
                lines.append(f"  window: unknown ({exc})")
        else:
            lines.append("  an interrupted move: the next `skewless canary evaluate` or `watch` finishes it")
        lines.append(f"  bounds: {bounds.describe()}")
    else:
        lines.append("canary: none running")
    finished = state.last_finished(reg)
    if finished is not None:
        version, vtags = finished
        lines.append(
            f"last canary: v{version} {vtags.get('canary_status', '?').replace('_', ' ')} at "
            f"{vtags.get('canary_finished_at', '?')}: {vtags.get('canary_reasons', '-')}"
        )
    return lines
