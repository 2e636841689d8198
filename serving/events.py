"""The decision log: every decision goes to a Redis Stream, for the worker to write as Parquet.

The scoring path only hands decisions over (a deque append). Each batch handed is then serialized on its own
(``serialize_next``): its metrics recorded (``observe``) and each of its columns written as a JSON array. The
event loop does that for the batches before while it watches Redis for a micro-batch's features
(``serving.pipeline_calls``), time it would otherwise spend spinning, a part at a time: a batch, or the next
``PER_ENTRY`` decisions of a larger one (a caller's batch of 1,000 took ~5 ms, which a micro-batch whose answer
came meanwhile waited for). A sender thread of its own serializes whatever is left (a caller's own large batch,
or when no micro-batch watched) and, every ``SEND_INTERVAL_S``, sends what has gathered in one pipelined write, so
neither JSON nor a Redis round trip sits on the request path. While requests are being answered, the sender leaves
what was handed for later, up to ``DEFER_S`` or ``DEFER_MAX`` decisions: its GIL would otherwise be the next
request's wait (with the wait, a caller's batch of 1,000 answered right after another took 0.83-0.87x the time).

A stream entry holds the decisions of whole batches of one model (one feature list), up to ``PER_ENTRY`` (a
larger batch is cut into entries of ``PER_ENTRY``), as columns: a JSON object of per-decision lists in its
``columns`` field (each served vector a list of values; when each was logged and its batch's latency too), the
vectors' feature names once in ``features``, and ``{}`` in ``batch``. A batch's arrays are joined into an entry's
as bytes. One ``XADD`` per decision cost the sender more than the JSON, and a JSON object per decision half as
much again as these columns; an entry per micro-batch of a few requests, most of the sender's time under load.
(Readers also take the older entry kinds: ``batch`` holding what a whole entry shares, a JSON array of decisions
in ``decisions``, or one in ``decision``; ``decisions_of`` gives every kind as dicts with a ``features`` object.)
When Redis cannot take them (it is down, and a fail policy answered) they wait in a bounded in-memory buffer and
go out with the next send that works; shutdown sends what is left.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import fields as dataclass_fields
from datetime import UTC, datetime
from operator import attrgetter, itemgetter
from typing import Any

import orjson
import redis
from pydantic_core import to_json

from serving.pipeline_calls import Channel
from serving.scoring import Decision
from skewless.errors import DependencyUnavailableError

log = logging.getLogger(__name__)

MAX_BUFFERED = 100_000  # decisions kept while Redis is away; past it the oldest are dropped, with a warning
PER_ENTRY = 100
# The stream keeps this many entries. A flush every SEND_INTERVAL_S makes an entry per PER_ENTRY decisions or so
# (whole micro-batches of up to 64), so at up to 5,000 decisions/s that is about 2.8 hours of decisions a stopped
# worker can catch up on.
MAX_ENTRIES = 500_000
SEND_INTERVAL_S = 0.02
# While requests are being answered (``busy``), the sender leaves what was handed unserialized, for up to DEFER_S or
# DEFER_MAX decisions: a caller's batch of 1,000 costs the sender ~6 ms of the GIL, which the next request would
# otherwise wait for. Past either bound it serializes the oldest anyway, a piece at a time.
DEFER_S = 0.5
DEFER_MAX = 5_000


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


# An entry's columns, in order, and each one's key in its JSON object.
_COLUMNS = (
    [name for name, _ in _DECIDED] + ["features"] + [name for name, _ in _REQUESTED] + ["logged_at", "latency_ms"]
)
_KEYS = [to_json(name) + b":" for name in _COLUMNS]


@dataclass
class _Piece:
    """Decisions of one batch and one feature list, serialized: per column of ``_COLUMNS``, a JSON array."""

    names: bytes  # the vectors' feature names, a JSON array
    arrays: list[bytes]
    count: int


_ORJSON = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_UTC_Z


def _json(values: list[Any]) -> bytes:
    """A column as a JSON array. orjson writes the served vectors 3.4x as fast as pydantic's serializer (1,000
    of them: 0.7 against 2.5 ms here), the log thread's largest cost, and the same JSON: NaN (a missing
    on-demand value, as numpy gives it) as null, as None is; numpy scalars as numbers; event times as ISO 8601
    (UTC as ``Z``); anything else as its text. What orjson refuses (an integer past 64 bits) goes to pydantic's."""
    try:
        return orjson.dumps(values, default=_text, option=_ORJSON)
    except orjson.JSONEncodeError:
        return to_json(values, fallback=str, inf_nan_mode="null")


def _text(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)  # a datetime subclass (pandas')


def _entry(pieces: list[_Piece]) -> tuple[bytes, ...]:
    """One stream entry's fields from pieces of one feature list: each column's arrays joined into one."""
    columns = [
        b"[" + b",".join([array[1:-1] for array in arrays if len(array) > 2]) + b"]"
        for arrays in zip(*[piece.arrays for piece in pieces], strict=True)
    ]
    payload = b"{" + b",".join([key + column for key, column in zip(_KEYS, columns, strict=True)]) + b"}"
    return (b"features", pieces[0].names, b"columns", payload, b"batch", b"{}")


class DecisionLog:
    def __init__(
        self,
        client: redis.Redis,
        stream: str,
        max_entries: int = MAX_ENTRIES,
        interval_s: float = SEND_INTERVAL_S,
        observe: Callable[[list[Decision]], None] | None = None,
        busy: Callable[[], bool] | None = None,
        defer_s: float = DEFER_S,
        defer_max: int = DEFER_MAX,
    ) -> None:
        self._interval_s = interval_s
        self._observe = observe  # given what was handed since the last send, before it is serialized
        self._busy = busy  # whether requests are being answered: the sender then defers (``_serialize_deferring``)
        self._defer_s = defer_s
        self._defer_max = defer_max
        self._channel = Channel(client, "decision stream (Redis)")
        # "~": Redis trims whole nodes (cheap) once the stream is past the bound, rather than to the entry
        self._xadd: tuple[Any, ...] = ("XADD", stream, "MAXLEN", "~", max_entries, "*")
        # (decisions, their transactions, the batch's latency, when it was logged, when it was handed: monotonic)
        self._handed: deque[tuple[list[Decision], list[dict[str, Any]], float, str, float]] = deque()
        self._pieces: list[_Piece] = []  # serialized, not yet in entries
        self._pieces_count = 0
        self._pending: deque[tuple[tuple[bytes, ...], int]] = deque()  # entries' fields, and their decisions
        self._pending_count = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def buffered(self) -> int:
        """Decisions not yet in the stream."""
        return self._pending_count + self._pieces_count + self._handed_count()

    def _handed_count(self) -> int:
        return sum(len(d) for d, *_ in list(self._handed))  # appended to by other threads: counted, not kept

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
        self._handed.append((decisions, transactions, latency_s, datetime.now(UTC).isoformat(), time.monotonic()))
        if self._thread is None:
            self.flush()
        # else the sender picks it up within SEND_INTERVAL_S; waking it per batch costs the scorer a GIL hand-off

    def _send_loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.flush(defer=True)

    def serialize_next(self) -> bool:
        """Serialize the oldest batch handed, or its next ``PER_ENTRY`` decisions when it is larger (and record
        their metrics), unless the sender is at it: for a caller that is waiting anyway (the event loop watching
        Redis), in pieces of a fraction of a millisecond. Whether more is waiting (False after a part that could
        not be serialized: ``_cut_safely``)."""
        if not self._handed or not self._lock.acquire(blocking=False):
            return False
        try:
            if self._handed and not self._serialize_piece():
                return False
            return bool(self._handed)
        finally:
            self._lock.release()

    def _serialize_piece(self) -> bool:
        """Serialize the oldest batch handed, or its next ``PER_ENTRY`` decisions (the rest stays first in line),
        and record their metrics. Under the lock; False when it could not be serialized (``_cut_safely``)."""
        decisions, transactions, latency_s, at, handed = batch = self._handed[0]
        if len(decisions) > PER_ENTRY:
            self._handed[0] = (decisions[PER_ENTRY:], transactions[PER_ENTRY:], latency_s, at, handed)
            batch = (decisions[:PER_ENTRY], transactions[:PER_ENTRY], latency_s, at, handed)
        else:
            self._handed.popleft()
        self._observe_safely(batch[0])
        return self._cut_safely(batch)

    def _serialize_deferring(self, busy: Callable[[], bool]) -> None:
        """The sender's serializing while requests may be answered: nothing while they are and what was handed is
        within DEFER_S and DEFER_MAX; otherwise a piece at a time (``_serialize_piece``), looking again between
        pieces, so a request that comes meanwhile waits for one piece at most. Then the pieces into entries."""
        while self._handed and (
            not busy()
            or time.monotonic() - self._handed[0][4] > self._defer_s
            or self._handed_count() > self._defer_max  # the costliest test last: it counts every batch handed
        ):
            self._serialize_piece()
        self._into_entries()

    def _serialize_handed(self) -> None:
        """Everything handed (metrics recorded once for all of it), then every piece into entries. Under the lock."""
        batches = []
        while self._handed:
            batches.append(self._handed.popleft())
        if batches:
            self._observe_safely([d for decisions, *_ in batches for d in decisions])
            for batch in batches:
                self._cut_safely(batch)
        self._into_entries()

    def _cut_safely(self, batch: tuple[list[Decision], list[dict[str, Any]], float, str, float]) -> bool:
        """``_cut``, never raising (its callers are the scoring path and the sender's loop); a batch that cannot
        be serialized is reported as lost."""
        try:
            self._cut(*batch[:4])
        except Exception:
            log.exception("decision log: a batch of %d decisions could not be serialized; lost", len(batch[0]))
            return False
        return True

    def _observe_safely(self, decisions: list[Decision]) -> None:
        if self._observe is not None and decisions:
            try:
                self._observe(decisions)
            except Exception:  # metrics must never cost a logged decision
                log.exception("decision log: recording the decisions' metrics failed")

    def _cut(self, decisions: list[Decision], transactions: list[dict[str, Any]], latency_s: float, at: str) -> None:
        """A handed batch as pieces: one per feature list (a canary's two models: two), at most PER_ENTRY each."""
        if not decisions:
            return
        names = decisions[0].feature_names
        if all(d.feature_names is names for d in decisions):
            groups = [(names, decisions, transactions)]
        else:
            by_list: dict[int, tuple[list[str], list[Decision], list[dict[str, Any]]]] = {}
            for decision, txn in zip(decisions, transactions, strict=True):
                group = by_list.get(id(decision.feature_names))
                if group is None:
                    group = by_list[id(decision.feature_names)] = (decision.feature_names, [], [])
                group[1].append(decision)
                group[2].append(txn)
            groups = list(by_list.values())
        latency_ms = latency_s * 1000
        pieces = []  # added once all are made: what was handed here is in the log whole or not at all
        for names, decided, requested in groups:
            names_json = to_json(names)
            for start in range(0, len(decided), PER_ENTRY):
                part, txns = decided[start : start + PER_ENTRY], requested[start : start + PER_ENTRY]
                arrays = [_json(list(map(get, part))) for _, get in _DECIDED]
                arrays.append(_json([d.vector for d in part]))
                arrays += [_json(list(map(get, txns))) for _, get in _REQUESTED]
                arrays += [_json([at] * len(part)), _json([latency_ms] * len(part))]
                pieces.append(_Piece(names_json, arrays, len(part)))
        self._pieces += pieces
        self._pieces_count += len(decisions)

    def _into_entries(self) -> None:
        """The pieces, per feature list in the order handed, as entries of whole pieces (up to PER_ENTRY
        decisions): micro-batches of a few requests would otherwise cost an entry each."""
        groups: dict[bytes, list[_Piece]] = {}
        for piece in self._pieces:
            groups.setdefault(piece.names, []).append(piece)
        self._pieces, self._pieces_count = [], 0
        for pieces in groups.values():
            entry: list[_Piece] = []
            count = 0
            for piece in pieces:
                if count and count + piece.count > PER_ENTRY:
                    self._pending.append((_entry(entry), count))
                    self._pending_count += count
                    entry, count = [], 0
                entry.append(piece)
                count += piece.count
            self._pending.append((_entry(entry), count))
            self._pending_count += count
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

    def flush(self, defer: bool = False) -> bool:
        """Serialize what was handed and send what is waiting. False (and kept for later) when Redis does not take
        it. With ``defer`` (the sender's own calls) and a ``busy`` to ask, what was handed may wait while requests are
        being answered (``_serialize_deferring``)."""
        with self._lock:
            if defer and self._busy is not None:
                self._serialize_deferring(self._busy)
            else:
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
