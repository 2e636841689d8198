"""The decision log: every decision goes to a Redis Stream, for the worker to write as Parquet.

Decisions are appended in one pipelined XADD per scored batch. When Redis cannot take them (it is down, and a
fail policy answered) they wait in a bounded in-memory buffer and go out with the next batch that can.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import redis

from serving.scoring import Decision

log = logging.getLogger(__name__)

MAX_BUFFERED = 100_000


class DecisionLog:
    def __init__(self, client: redis.Redis, stream: str, maxlen: int = 5_000_000) -> None:
        self._client = client
        self._stream = stream
        self._maxlen = maxlen
        self._pending: deque[str] = deque(maxlen=MAX_BUFFERED)
        self._lock = threading.Lock()

    @property
    def buffered(self) -> int:
        return len(self._pending)

    def append(self, decisions: list[Decision], transactions: list[dict[str, Any]], latency_s: float) -> None:
        logged_at = datetime.now(UTC).isoformat()
        for decision, txn in zip(decisions, transactions, strict=True):
            record = asdict(decision)
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
            self._pending.append(json.dumps(record, default=str))
        self.flush()

    def flush(self) -> bool:
        """Send what is buffered. False (and kept for later) when Redis does not take it."""
        with self._lock:
            if not self._pending:
                return True
            batch = list(self._pending)
            try:
                pipe = self._client.pipeline(transaction=False)
                for payload in batch:
                    pipe.xadd(self._stream, {"decision": payload}, maxlen=self._maxlen, approximate=True)
                pipe.execute()
            except redis.RedisError as exc:
                log.warning("decision log: %d decisions buffered, Redis unavailable: %s", len(batch), exc)
                return False
            for _ in batch:
                self._pending.popleft()
            return True


def _iso(value: Any) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)
