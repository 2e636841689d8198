"""The canary's window, read from the decision stream the service writes (serving/events.py).

The stream is the record: every decision carries the role and version of the model that decided, its model-call
time and, in shadow mode, the challenger's answer. Reading starts at the stream id recorded when the canary
started (a registry tag), so a watcher that crashed rebuilds exactly the same window when it comes back. It stops
at the decision that completes the window: the verdict depends on the stream and the bounds alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import redis

from release.rules import Sample
from serving.events import decisions_of
from skewless.errors import DependencyUnavailableError

PAGE = 2_000


@dataclass
class Window:
    """Champion and challenger samples since ``start_id``, and how far the stream has been read."""

    champion_version: int
    challenger_version: int
    size: int
    last_id: str
    champion: Sample = field(default_factory=Sample)
    challenger: Sample = field(default_factory=Sample)
    shadow_entries: int = 0
    entries: int = 0

    @property
    def full(self) -> bool:
        return self.challenger.attempts >= self.size

    @property
    def mode(self) -> str:
        if not self.challenger.attempts:
            return "no challenger decisions yet"
        return "shadow" if self.shadow_entries else "canary"

    def add(self, payload: dict) -> None:
        """One logged decision: to the champion's sample, the challenger's, or neither (another version)."""
        self.entries += 1
        version, role = payload.get("model_version"), payload.get("role", "champion")
        if role == "challenger":
            if version == self.challenger_version:
                self.challenger.add(float(payload["risk_score"]), payload["recommendation"], payload.get("model_ms"))
            return
        if version != self.champion_version:
            return
        if payload.get("challenger_error"):
            self.challenger.errors += 1  # the champion answered in the challenger's place
        self.champion.add(float(payload["risk_score"]), payload["recommendation"], payload.get("model_ms"))
        if payload.get("shadow_version") == self.challenger_version and payload.get("shadow_score") is not None:
            self.shadow_entries += 1
            self.challenger.add(
                float(payload["shadow_score"]), payload["shadow_recommendation"], payload.get("shadow_model_ms")
            )


def read(client: redis.Redis, stream: str, window: Window) -> Window:
    """Read on from ``window.last_id`` until the window is full or the stream has nothing more."""
    try:
        while not window.full:
            entries: list[Any] = client.xrange(stream, min=f"({window.last_id}", max="+", count=PAGE)  # type: ignore[assignment]
            if not entries:
                break
            for entry_id, data in entries:
                window.last_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                for decision in decisions_of(data):
                    window.add(decision)
                    if window.full:  # mid-entry: a rebuilt window stops at the same decision
                        break
                if window.full:
                    break
    except redis.RedisError as exc:
        raise DependencyUnavailableError(f"decision stream {stream!r} (Redis) unavailable: {exc}") from exc
    return window


def stream_position(client: redis.Redis, stream: str) -> str:
    """The id of the newest entry (``0-0`` for an empty stream): where a canary starting now begins to read."""
    try:
        newest: list[Any] = client.xrevrange(stream, max="+", min="-", count=1)  # type: ignore[assignment]
    except redis.RedisError as exc:
        raise DependencyUnavailableError(f"decision stream {stream!r} (Redis) unavailable: {exc}") from exc
    if not newest:
        return "0-0"
    entry_id = newest[0][0]
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
