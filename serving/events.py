"""The decision log: every decision goes to a Redis Stream, for the worker to write as Parquet.

The scoring thread only hands decisions over (a deque append); a sender thread of its own serializes them and
sends whatever has gathered in one pipelined write, so neither JSON nor a Redis round trip sits on the request
path. A stream entry holds up to ``PER_ENTRY`` decisions of one model call, as a JSON array in its
``decisions`` field, each decision's served vector a list of values whose names the entry's ``features`` field
lists once: one ``XADD`` per decision cost the sender more than the JSON, and a dict per vector more than
its values. (Readers also take the older entries: vectors as objects, or one decision in a ``decision`` field;
``decisions_of`` gives every kind as dicts with a ``features`` object.) When Redis cannot take them (it
is down, and a fail policy answered) they wait in a bounded in-memory buffer and go out with the next send that
works; shutdown sends what is left.
"""

from __future__ import annotations

import json
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

MAX_BUFFERED = 100_000  # decisions kept while Redis is away; past it the oldest are dropped, with a warning
PER_ENTRY = 100
# The stream keeps this many entries. A flush every SEND_INTERVAL_S makes at most one entry per PER_ENTRY
# decisions, so at up to 5,000 decisions/s that is about 2.8 hours of decisions a stopped worker can catch up on.
MAX_ENTRIES = 500_000
SEND_INTERVAL_S = 0.02


def decisions_of(fields: dict[bytes, bytes]) -> list[dict[str, Any]]:
    """The decisions of one stream entry, in the order they were logged, each vector as a ``features`` object."""
    if b"decisions" not in fields:
        return [json.loads(fields[b"decision"])]
    decisions: list[dict[str, Any]] = json.loads(fields[b"decisions"])
    if b"features" in fields:
        names = json.loads(fields[b"features"])
        for decision in decisions:
            decision["features"] = dict(zip(names, decision["features"], strict=True))
    return decisions


class DecisionLog:
    def __init__(self, client: redis.Redis, stream: str, max_entries: int = MAX_ENTRIES) -> None:
        self._channel = Channel(client, "decision stream (Redis)")
        # "~": Redis trims whole nodes (cheap) once the stream is past the bound, rather than to the entry
        self._xadd: tuple[Any, ...] = ("XADD", stream, "MAXLEN", "~", max_entries, "*")
        self._handed: deque[tuple[list[Decision], list[dict[str, Any]], float, str]] = deque()
        self._pending: deque[tuple[tuple[bytes, ...], int]] = deque()  # entries' fields, and their decisions
        self._pending_count = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def buffered(self) -> int:
        """Decisions not yet in the stream."""
        return self._pending_count + sum(len(d) for d, *_ in list(self._handed))

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
            latency_ms = latency_s * 1000
            by_names: dict[int, tuple[list[str], list[dict[str, Any]]]] = {}  # a canary's two models: two groups
            for decision, txn in zip(decisions, transactions, strict=True):
                group = by_names.get(id(decision.feature_names))
                if group is None:
                    group = by_names[id(decision.feature_names)] = (decision.feature_names, [])
                record = dict(decision.__dict__)  # shallow: asdict's deep copy of the vector costs more than the JSON
                del record["feature_ages"]  # a metric (skewless_online_feature_age_seconds), not a log field
                del record["feature_names"]
                record["features"] = record.pop("vector")
                record["user_id"] = txn["user_id"]
                record["device_id"] = txn["device_id"]
                record["merchant_id"] = txn["merchant_id"]
                record["amount"] = txn["amount"]
                record["currency"] = txn["currency"]
                record["country"] = txn["country"]
                record["channel"] = txn["channel"]
                record["event_timestamp"] = txn["event_timestamp"]  # ISO 8601 by pydantic-core: a third of isoformat()
                record["logged_at"] = logged_at
                record["latency_ms"] = latency_ms
                group[1].append(record)
            for names, records in by_names.values():
                for at in range(0, len(records), PER_ENTRY):
                    part = records[at : at + PER_ENTRY]
                    # NaN (a missing on-demand value, as numpy gives it) is written null, as None is
                    decisions_json = to_json(part, fallback=str, inf_nan_mode="null")
                    fields = (b"features", to_json(names), b"decisions", decisions_json)
                    self._pending.append((fields, len(part)))  # pydantic's serializer: 6x json
                    self._pending_count += len(part)
        dropped = 0
        while self._pending_count > MAX_BUFFERED:
            _, count = self._pending.popleft()
            self._pending_count -= count
            dropped += count
        if dropped:
            log.warning("decision log: buffer full while Redis is away; %d oldest decisions dropped", dropped)

    def flush(self) -> bool:
        """Send what is waiting. False (and kept for later) when Redis does not take it."""
        with self._lock:
            self._serialize_handed()
            if not self._pending:
                return True
            batch = list(self._pending)
            try:
                replies = self._channel.send([(*self._xadd, *fields) for fields, _ in batch])
            except DependencyUnavailableError as exc:
                log.warning("decision log: %d decisions buffered, %s", self._pending_count, exc)
                return False
            self._pending.clear()
            self._pending_count = 0
            for entry, reply in zip(batch, replies, strict=True):
                if isinstance(reply, Exception):
                    self._pending.append(entry)
                    self._pending_count += entry[1]
            if self._pending:
                refused = next(r for r in replies if isinstance(r, Exception))
                log.warning("decision log: %d decisions buffered, Redis refused them: %s", self._pending_count, refused)
                return False
            return True
