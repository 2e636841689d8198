"""The decision log: every decision goes to a Redis Stream, for the worker to write as Parquet.

The scoring thread only hands decisions over (a deque append); a sender thread of its own serializes them and
sends whatever has gathered in one pipelined write, so neither JSON nor a Redis round trip sits on the request
path. A stream entry holds up to ``PER_ENTRY`` decisions of one model (one feature list), from every batch handed
since the last send, as columns: a JSON object of per-decision lists in its ``columns`` field (each served vector
a list of values; when each was logged and its batch's latency too), the vectors' feature names once in
``features``, and ``{}`` in ``batch``. One ``XADD`` per decision cost the sender more than the JSON, and a JSON
object per decision half as much again as these columns; an entry per micro-batch of a few requests, most of the
sender's time under load. (Readers also take the older entry kinds: ``batch`` holding what a whole entry shares,
a JSON array of decisions in ``decisions``, or one in ``decision``; ``decisions_of`` gives every kind as dicts
with a ``features`` object.) When Redis cannot take them (it is down, and a fail policy answered) they wait in a
bounded in-memory buffer and go out with the next send that works; shutdown sends what is left.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from datetime import UTC, datetime
from operator import attrgetter, itemgetter
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
    if b"columns" in fields:
        columns: dict[str, list[Any]] = json.loads(fields[b"columns"])
        shared, names = json.loads(fields[b"batch"]), json.loads(fields[b"features"])
        keys = list(columns)
        decisions = [dict(zip(keys, row, strict=True)) for row in zip(*columns.values(), strict=True)]
        for decision in decisions:
            decision["features"] = dict(zip(names, decision["features"], strict=True))
            decision.update(shared)
        return decisions
    if b"decisions" in fields:
        return list(json.loads(fields[b"decisions"]))
    return [json.loads(fields[b"decision"])]


# What a logged decision holds besides its vector: the Decision's own fields (its per-view feature ages are a
# metric, not a log field) and the request's.
_DECIDED = [
    (f.name, attrgetter(f.name))
    for f in dataclass_fields(Decision)
    if f.name not in ("feature_ages", "feature_names", "vector")
]
_REQUESTED = [
    (name, itemgetter(name))
    for name in ("user_id", "device_id", "merchant_id", "amount", "currency", "country", "channel", "event_timestamp")
]


@dataclass
class _Group:
    """Decisions of one feature list on their way into entries, with the request, log time and latency of each."""

    names: list[str]
    decided: list[Decision] = field(default_factory=list)
    requested: list[dict[str, Any]] = field(default_factory=list)
    logged_at: list[str] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)


class DecisionLog:
    def __init__(
        self,
        client: redis.Redis,
        stream: str,
        max_entries: int = MAX_ENTRIES,
        interval_s: float = SEND_INTERVAL_S,
        observe: Callable[[list[Decision]], None] | None = None,
    ) -> None:
        self._interval_s = interval_s
        self._observe = observe  # given what was handed since the last send, before it is serialized
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
        while not self._stop.wait(self._interval_s):
            self.flush()

    def _serialize_handed(self) -> None:
        # Everything handed since the last send, grouped by feature list (a canary's two models: two groups), in
        # the order handed. Micro-batches of a few requests would otherwise cost an entry each.
        groups: dict[int, _Group] = {}
        handed: list[Decision] = []
        while self._handed:
            decisions, transactions, latency_s, logged_at = self._handed.popleft()
            handed += decisions
            latency_ms = latency_s * 1000
            for decision, txn in zip(decisions, transactions, strict=True):
                group = groups.get(id(decision.feature_names))
                if group is None:
                    group = groups[id(decision.feature_names)] = _Group(decision.feature_names)
                group.decided.append(decision)
                group.requested.append(txn)
                group.logged_at.append(logged_at)
                group.latency_ms.append(latency_ms)
        if self._observe is not None and handed:
            try:
                self._observe(handed)
            except Exception:  # metrics must never cost a logged decision
                log.exception("decision log: recording the decisions' metrics failed")
        for group in groups.values():
            names_json = to_json(group.names)
            for at in range(0, len(group.decided), PER_ENTRY):
                part, txns = group.decided[at : at + PER_ENTRY], group.requested[at : at + PER_ENTRY]
                columns = {name: list(map(get, part)) for name, get in _DECIDED}
                columns["features"] = [d.vector for d in part]
                columns.update((name, list(map(get, txns))) for name, get in _REQUESTED)
                columns["logged_at"] = group.logged_at[at : at + PER_ENTRY]
                columns["latency_ms"] = group.latency_ms[at : at + PER_ENTRY]
                # pydantic's serializer (6x json; event times as ISO 8601); NaN (a missing on-demand value, as
                # numpy gives it) is written null, as None is
                payload = to_json(columns, fallback=str, inf_nan_mode="null")
                self._pending.append(((b"features", names_json, b"columns", payload, b"batch", b"{}"), len(part)))
                self._pending_count += len(part)
        dropped = 0
        while self._pending_count > MAX_BUFFERED:
            _, count = self._pending.popleft()
            self._pending_count -= count
            dropped += count
        if dropped:
            log.warning("decision log: buffer full while Redis is away; %d oldest decisions dropped", dropped)

    def account(self) -> None:
        """Serialize what was handed (and record its metrics: ``observe``) now, without sending it."""
        with self._lock:
            self._serialize_handed()

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
