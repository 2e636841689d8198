"""Alerts: what the monitor found worth paging about, and their delivery on a Redis Stream.

Each alert is one stream entry with the field ``alert`` holding JSON (kind, subject, message, value, threshold,
baseline, window, model version, report path), so a consumer group can turn them into pages or tickets.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

import redis

from skewless.errors import DependencyUnavailableError

STREAM_MAXLEN = 100_000


@dataclass(frozen=True)
class Alert:
    kind: str  # feature_drift, missing_values, stale_features, score_drift, decision_rate, volume, latency
    subject: str  # the feature, decision or measure concerned
    message: str
    value: float
    threshold: float
    baseline: str  # what it was compared with: reference, previous window, or an absolute limit

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def publish(client: redis.Redis, stream: str, alerts: list[Alert], context: dict[str, Any]) -> list[str]:
    """XADD each alert with ``context`` (window, model version, report); the entry ids, in order."""
    if not alerts:
        return []
    try:
        pipe = client.pipeline(transaction=False)
        for alert in alerts:
            payload = json.dumps({**alert.as_dict(), **context}, default=str)
            pipe.xadd(stream, {"alert": payload}, maxlen=STREAM_MAXLEN, approximate=True)
        ids = pipe.execute()
    except redis.RedisError as exc:
        raise DependencyUnavailableError(
            f"{len(alerts)} alert(s) not published: Redis stream {stream!r} unavailable ({exc})"
        ) from exc
    return [i.decode() if isinstance(i, bytes) else str(i) for i in ids]
