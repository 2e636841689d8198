"""The decision log: every decision goes to a Redis Stream, for the worker to write as Parquet.

The scoring thread only hands decisions over (a deque append); a sender thread of its own serializes them and
sends whatever has gathered in one pipelined XADD, so neither JSON nor a Redis round trip sits on the request
path. When Redis cannot take them (it is down, and a fail policy answered) they wait in a bounded in-memory
buffer and go out with the next send that works; shutdown sends what is left.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from datetime import UTC, datetime
from typing import Any

import redis
from pydantic_core import to_json

from serving.pipeline_calls import Channel
from serving.scoring import Decision
from skewless.errors import DependencyUnavailableError

log = logging.getLogger(__name__)

MAX_BUFFERED = 100_000
SEND_INTERVAL_S = 0.02


class DecisionLog:
    def __init__(self, client: redis.Redis, stream: str, maxlen: int = 5_000_000) -> None:
        self._channel = Channel(client, "decision stream (Redis)")
        self._xadd: tuple[Any, ...] = ("XADD", stream, "MAXLEN", "~", maxlen, "*", "decision")
        self._handed: deque[tuple[list[Decision], list[dict[str, Any]], float, str]] = deque()
        self._pending: deque[bytes] = deque(maxlen=MAX_BUFFERED)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def buffered(self) -> int:
        """Decisions not yet in the stream."""
        return len(self._pending) + sum(len(d) for d, *_ in list(self._handed))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._send_loop, name="decision-log", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the sender and send what is left."""
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)
        self.flush()

    def append(self, decisions: list[Decision], transactions: list[dict[str, Any]], latency_s: float) -> None:
        """Hand a scored batch over; without a running sender (tests, tools) it is sent right away."""
        self._handed.append((decisions, transactions, latency_s, datetime.now(UTC).isoformat()))
        if self._thread is None:
            self.flush()
        # else the sender picks it up within SEND_INTERVAL_S; waking it per batch costs the scorer a GIL hand-off

    def _send_loop(self) -> None:
        while not self._stop.wait(SEND_INTERVAL_S):
            self.flush()

    def _serialize_handed(self) -> None:
        while self._handed:
            decisions, transactions, latency_s, logged_at = self._handed.popleft()
            for decision, txn in zip(decisions, transactions, strict=True):
                record = dict(decision.__dict__)  # shallow: asdict's deep copy of the vector costs more than the JSON
                record.pop("feature_ages", None)  # a metric (skewless_online_feature_age_seconds), not a log field
                record.update(
                    {
                        "user_id": txn["user_id"],
                        "device_id": txn["device_id"],
                        "merchant_id": txn["merchant_id"],
                        "amount": txn["amount"],
                        "currency": txn["currency"],
                        "country": txn["country"],
                        "channel": txn["channel"],
                        "event_timestamp": _iso(txn["event_timestamp"]),
                        "logged_at": logged_at,
                        "latency_ms": latency_s * 1000,
                    }
                )
                self._pending.append(to_json(record, fallback=str))  # pydantic's serializer: 6x json.dumps

    def flush(self) -> bool:
        """Send what is waiting. False (and kept for later) when Redis does not take it."""
        with self._lock:
            self._serialize_handed()
            if not self._pending:
                return True
            batch = list(self._pending)
            commands = [(*self._xadd, payload) for payload in batch]
            try:
                replies = self._channel.send(commands)
            except DependencyUnavailableError as exc:
                log.warning("decision log: %d decisions buffered, %s", len(batch), exc)
                return False
            refused = [r for r in replies if isinstance(r, Exception)]
            kept = [payload for payload, r in zip(batch, replies, strict=True) if isinstance(r, Exception)]
            self._pending.clear()
            self._pending.extend(kept)
            if refused:
                log.warning("decision log: %d decisions buffered, Redis refused them: %s", len(kept), refused[0])
            return not refused


def _iso(value: Any) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)
