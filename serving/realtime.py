"""Windowed aggregations at score time: each transaction is recorded in Redis and its features computed there.

The features are those of the feature service's windowed views (``feature_repo.aggregations``), read through
``feature_repo.windows``; the definition (``t - W <= s < t``, duplicates, late events, clock skew) is the one
documented in ``feature_repo.aggregations`` and computed offline by ``feature_repo.stores.window_aggregates``.

State: one Redis hash per view and entity value (``<namespace>:<view>:<value>``), field the event id, value the
event time in microseconds and the values the view's features read, packed (``serving.realtime_script.EventLayout``;
events stored as text by earlier versions are still read). One Lua script (``serving.realtime_script``), generated
from the declaration and loaded once (``EVALSHA``; reloaded only when Redis has lost it), handles up to
``PER_CALL`` transactions one after the other, each for every view, atomically: a retry (its event id already
recorded at or before its time) is answered as of the recorded time and adds nothing; otherwise the features are
computed over the events in ``[t - W, t)`` and the transaction is recorded. Events older than the entity's newest
minus the largest window and the allowed lateness are deleted, so a transaction costs at most what one entity's
window holds, and keys expire after the largest window plus twice the lateness without a transaction.

A batch is one pipelined round trip, its transactions in timestamp order (stable), so a batch holding several
payments of one user is computed as if they had arrived in order. Redis runs scripts one at a time, so
concurrent transactions of one user see each other exactly as their order of arrival says.

With Redis Cluster the keys of one call's transactions and views live in different slots: there, run the script
once per transaction and view (each view's state is self-contained, so per-view atomicity gives the same values).
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

import numpy as np
import redis

from feature_repo.windows import WindowedView, feature_types, service_windows
from serving.pipeline_calls import Channel
from serving.realtime_script import EventLayout, lua_script
from skewless.errors import BadInputError, DependencyUnavailableError

SEP = "\x1f"
PER_CALL = 64  # transactions per script call (a divisor of the scoring path's chunk, serving.scoring)
COLUMNS_FROM = 8  # batches this large build their arguments a column at a time; smaller ones a transaction at a time
_NAN = float("nan")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class RealtimeAggregates:
    """Records transactions and returns their windowed features, for the windowed views given.

    ``windows`` come from the declaration (``for_service`` reads them from the registry); ``namespace`` prefixes
    every key, so projects (and tests) keep their state apart. A service without windowed views gives an
    instance with no features, whose ``record`` answers empty dicts without calling Redis. Typical use::

        realtime = RealtimeAggregates.for_service(client, store, "fraud_model_v2")  # once, at startup
        realtime.load()  # optional: the script is in Redis before the first request
        features = realtime.record(transactions)  # [{"txn_count_10m": 2, ...}, ...], one per transaction
    """

    def __init__(self, client: redis.Redis, windows: Sequence[WindowedView], namespace: str) -> None:
        self._client = client
        self._channel = Channel(client, "real-time aggregates: Redis")
        self._windows = list(windows)
        self._namespace = namespace
        self._script = lua_script(self._windows)
        self._sha = hashlib.sha1(self._script.encode()).hexdigest()
        self._types = feature_types(self._windows)
        self._kinds = [(name, kind == "int64") for name, kind in self._types.items()]
        self._columns = {c for w in self._windows for c in (w.key, w.event_id, w.timestamp, *w.value_columns)}
        self._event_id, self._timestamp = (windows[0].event_id, windows[0].timestamp) if windows else ("", "")
        if any((w.event_id, w.timestamp) != (self._event_id, self._timestamp) for w in windows):
            raise BadInputError(
                f"windowed views {self.views} must share one event id and timestamp column to be recorded together"
            )
        self._keys = [(f"{namespace}:{w.name}:", w.key) for w in self._windows]
        layouts = [EventLayout.of(w) for w in self._windows]
        self._layouts = [(struct.Struct(x.python_format).pack, x.numbers, x.texts) for x in layouts]

    @classmethod
    def for_service(cls, client: redis.Redis, store: Any, service: Any) -> RealtimeAggregates:
        """The windowed views of a Feast feature service (an object or its name), keys under the store's project."""
        if isinstance(service, str):
            service = store.get_feature_service(service)
        return cls(client, service_windows(store, service), namespace=f"skewless:{store.project}:rt")

    @property
    def views(self) -> list[str]:
        """Names of the feature views computed here (the service's "real-time" views)."""
        return [w.name for w in self._windows]

    @property
    def feature_names(self) -> list[str]:
        return list(self._types)

    @property
    def feature_types(self) -> dict[str, str]:
        """Feature name -> ``"int64"`` or ``"float64"``, in the service's order."""
        return dict(self._types)

    @property
    def required_fields(self) -> list[str]:
        """Transaction fields ``record`` reads."""
        return sorted(self._columns)

    def load(self) -> None:
        """Load the script into Redis now (``record`` loads it by itself when Redis does not have it)."""
        if not self._windows:
            return
        try:
            self._client.script_load(self._script)
        except redis.RedisError as exc:
            raise DependencyUnavailableError(f"real-time aggregates: Redis unavailable: {exc}") from exc

    def record(self, transactions: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Record each transaction and return its features, in the order given; one Redis round trip.

        Each transaction needs the fields in ``required_fields``; ``event_timestamp`` must be a timezone-aware
        ``datetime`` (or pandas ``Timestamp``). Recording is idempotent by event id: a retry adds nothing and
        gets the features the first attempt got.
        """
        if not self._windows:
            return [{} for _ in transactions]
        batch = self.prepare(transactions)
        return batch.results(self._channel.send(batch.commands, self.load))

    def prepare(self, transactions: Sequence[Mapping[str, Any]]) -> PreparedBatch:
        """The batch's script calls, for a caller that sends them in a pipeline of its own (with its other reads,
        so the whole request is one round trip): queue ``commands`` with ``pipe.execute_command(*command)``, run
        the pipeline with ``raise_on_error=False`` and hand those replies, in order, to ``results``. A
        ``NoScriptError`` among them means Redis lost the script: ``load()`` and send the batch again (recording
        is idempotent, so the calls that did run answer the same)."""
        if len(transactions) < COLUMNS_FROM:
            calls = [self._call(position, txn) for position, txn in enumerate(transactions)]
            order = sorted(range(len(calls)), key=lambda i: calls[i][0])  # in time order, stable
            commands: list[Any] = []
            for at in range(0, len(order), PER_CALL):
                group = order[at : at + PER_CALL]
                call_keys = [key for i in group for key in calls[i][1]]
                call_args = [arg for i in group for arg in calls[i][2]]
                commands.append(["EVALSHA", self._sha, len(call_keys), *call_keys, *call_args])
            return PreparedBatch(commands, order, self._kinds)
        try:
            columns = self._columns_of(transactions)
        except (KeyError, TypeError, ValueError):
            columns = None
        if columns is None:  # a transaction is wrong: find the first and name what
            for position, txn in enumerate(transactions):
                self._call(position, txn)
            raise BadInputError("a transaction could not be recorded")  # not reached: _call names the first
        order = sorted(range(len(transactions)), key=columns.stamps.__getitem__)
        # Built when sent (``_LazyCall``): the first calls are on their way to Redis while the rest are built.
        commands = [_LazyCall(self._sha, columns, order[at : at + PER_CALL]) for at in range(0, len(order), PER_CALL)]
        return PreparedBatch(commands, order, self._kinds)

    def _columns_of(self, transactions: Sequence[Mapping[str, Any]]) -> _Columns | None:
        """What ``_call`` checks and reads per transaction, a column at a time (two thirds of the time for 1,000):
        None when a transaction is wrong (``_call`` then says which and why); raises KeyError, TypeError or
        ValueError for some. The events are packed later, a call at a time (``_Columns.call``)."""
        ids = _texts(map(itemgetter(self._event_id), transactions))
        stamps = [_micros(txn[self._timestamp]) for txn in transactions]
        keys = [[prefix + text for text in _texts(map(itemgetter(key), transactions))] for prefix, key in self._keys]
        if not all(ids) or SEP in "".join(ids) or not all(all(c) for c in keys):
            return None
        events = []
        for pack, numbers, texts in self._layouts:  # the event as stored (EventLayout)
            values = [[_number(txn[c]) for txn in transactions] for c in numbers]
            encoded = [[text.encode() for text in _texts(map(itemgetter(c), transactions))] for c in texts]
            if any(b"\0" in b"".join(column) for column in encoded):
                return None
            events.append((pack, values, encoded))
        return _Columns(ids, stamps, keys, events)

    def state_keys(self, transactions: Iterable[Mapping[str, Any]]) -> list[str]:
        """The keys of state that recording ``transactions`` touches (each view's hash of each one's entity),
        without repeats: what a caller saves and puts back to leave the state as it found it (the benchmark)."""
        keys = {prefix + _text(txn[key]): None for txn in transactions for prefix, key in self._keys}
        return list(keys)

    def reset(self) -> int:
        """Delete every key of this namespace; returns how many. For tests and demo replays."""
        deleted = 0
        try:
            batch = []
            for key in self._client.scan_iter(match=f"{self._namespace}:*", count=1000):
                batch.append(key)
                if len(batch) == 1000:
                    deleted += self._client.unlink(*batch)
                    batch = []
            if batch:
                deleted += self._client.unlink(*batch)
        except redis.RedisError as exc:
            raise DependencyUnavailableError(f"real-time aggregates: Redis unavailable: {exc}") from exc
        return deleted

    def _call(self, position: int, txn: Mapping[str, Any]) -> tuple[int, list[str], list[Any]]:
        """(event time in µs, keys, arguments) of one transaction in a script call; errors name the field and the
        transaction."""
        try:
            event_id = _text(txn[self._event_id])
            ts = _micros(txn[self._timestamp])
            keys = []
            unset = not event_id or SEP in event_id
            for prefix, key in self._keys:
                value = _text(txn[key])
                unset = unset or not value
                keys.append(prefix + value)
            args: list[Any] = [event_id, ts]
            at = float(ts)
            for pack, numbers, texts in self._layouts:  # the event as stored (EventLayout)
                event = pack(0, at, *[_number(txn[c]) for c in numbers])
                args.append(event + b"".join([_zero_ended(c, txn[c]) for c in texts]) if texts else event)
        except KeyError:
            missing = sorted(c for c in self._columns if c not in txn)
            raise BadInputError(f"transaction #{position}: missing field(s) {missing}") from None
        except (TypeError, ValueError) as exc:
            raise BadInputError(f"transaction #{position} ({self._event_id} {txn[self._event_id]!r}): {exc}") from None
        if unset:
            raise BadInputError(
                f"transaction #{position}: {self._event_id} and {[key for _, key in self._keys]} must be set"
            )
        return ts, keys, args


@dataclass(frozen=True)
class _Columns:
    """A batch's script inputs, checked, as columns (one entry per transaction): event ids, times (µs), the views'
    keys, and per view its event's numbers and encoded texts, with the ``pack`` of the event's head."""

    ids: list[str]
    stamps: list[int]
    keys: list[list[str]]
    events: list[tuple[Callable[..., bytes], list[list[float]], list[list[bytes]]]]

    def call(self, sha: str, group: list[int]) -> list[Any]:
        """The script call of the transactions at ``group`` (positions), as ``_call`` builds it per transaction:
        their keys, then per transaction its id, time and events."""
        take: Callable[[list[Any]], Sequence[Any]] = itemgetter(*group) if len(group) > 1 else _single(group[0])
        stamps = take(self.stamps)
        args = [take(self.ids), stamps]
        for pack, numbers, texts in self.events:
            heads = [pack(0, float(at), *row) for at, *row in zip(stamps, *map(take, numbers), strict=True)]
            if texts:
                heads = [head + b"\0".join(row) + b"\0" for head, *row in zip(heads, *map(take, texts), strict=True)]
            args.append(heads)
        keys = [key for row in zip(*map(take, self.keys), strict=True) for key in row]
        return ["EVALSHA", sha, len(keys), *keys, *[arg for row in zip(*args, strict=True) for arg in row]]


def _single(position: int) -> Callable[[list[Any]], tuple[Any]]:
    return lambda column: (column[position],)  # itemgetter of one position gives the value, not a tuple


class _LazyCall:
    """A script call whose arguments are built each time it is iterated (packed: ``pipeline_calls._send``)."""

    __slots__ = ("_columns", "_group", "_sha")

    def __init__(self, sha: str, columns: _Columns, group: list[int]) -> None:
        self._sha = sha
        self._columns = columns
        self._group = group

    def __iter__(self) -> Iterator[Any]:
        return iter(self._columns.call(self._sha, self._group))


class PreparedBatch:
    """Script calls of one batch (``PER_CALL`` transactions each, in time order), and how to turn their replies
    back into features."""

    def __init__(self, commands: list[Iterable[Any]], order: list[int], kinds: list[tuple[str, bool]]) -> None:
        self.commands = commands
        self._order = order
        self._kinds = kinds  # (feature, whether it is an integer), in the replies' order

    @property
    def order(self) -> list[int]:
        """Positions (in the order given) of the transactions whose calls ``commands`` holds, in that order."""
        return self._order

    def results(self, replies: Iterable[Any]) -> list[dict[str, Any]]:
        """Features per transaction, in the order the transactions were given: ``columns_as_given``, a dict each."""
        columns = self.columns_as_given(replies)
        names = list(columns)
        return [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)]

    def columns(self, replies: Iterable[Any]) -> dict[str, list[Any]]:
        """Replies to calls of ``commands`` (all of them, or the next ones) as feature columns, in time
        order (``order`` says whose). Each reply is its transactions' features as packed doubles
        (``serving.realtime_script``): the replies are one array, cut into columns (counts as ints)."""
        replied = list(replies)
        if not replied:
            return {name: [] for name, _ in self._kinds}
        size = 8 * len(self._kinds)
        for reply in replied:
            if reply.__class__ is not bytes or not reply or len(reply) % size:
                _check(reply)
                raise DependencyUnavailableError(
                    f"real-time aggregates: a reply is not rows of {len(self._kinds)} packed doubles: {reply!r:.80}"
                )
        packed = b"".join(replied)
        matrix = np.frombuffer(packed, dtype="<f8").reshape(len(packed) // size, len(self._kinds))
        return {
            name: (matrix[:, j].astype(np.int64) if is_int else matrix[:, j]).tolist()
            for j, (name, is_int) in enumerate(self._kinds)
        }

    def columns_as_given(self, replies: Iterable[Any]) -> dict[str, list[Any]]:
        """The replies to all of ``commands`` as feature columns, in the order the transactions were given."""
        columns = self.columns(replies)
        if any(len(column) != len(self._order) for column in columns.values()):
            raise ValueError(f"{len(self._order)} transactions recorded, but replies for another number")
        if all(i == k for k, i in enumerate(self._order)):
            return columns
        at = [0] * len(self._order)
        for k, i in enumerate(self._order):
            at[i] = k
        return {name: [column[k] for k in at] for name, column in columns.items()}


def _check(reply: Any) -> None:
    if isinstance(reply, Exception):
        if isinstance(reply, redis.exceptions.NoScriptError):
            raise reply
        raise DependencyUnavailableError(f"real-time aggregates: Redis refused the update: {reply}")


def _micros(value: Any) -> int:
    """Microseconds since the epoch of a timezone-aware ``datetime`` (or pandas ``Timestamp``), truncated."""
    if not isinstance(value, datetime):
        raise TypeError(f"event time must be a timezone-aware datetime, got {type(value).__name__} {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"event time {value.isoformat()} has no time zone; pass UTC-aware timestamps")
    since = value - _EPOCH
    return (since.days * 86_400 + since.seconds) * 1_000_000 + since.microseconds


def _number(value: Any) -> float:
    """A value a sum or maximum reads, as stored: a float, NaN when missing or not a number."""
    if value.__class__ is float or value.__class__ is int:
        return float(value)
    if value is None or isinstance(value, bool):
        return _NAN
    if hasattr(value, "item"):  # numpy scalars
        return _number(value.item())
    try:
        return float(value)
    except (TypeError, ValueError):
        return _NAN


def _zero_ended(column: str, value: Any) -> bytes:
    """A text value as stored: UTF-8, ended by a zero byte (so it may not hold one)."""
    text = _text(value).encode()
    if b"\0" in text:
        raise ValueError(f"{column} {value!r} contains a zero byte")
    return text + b"\0"


def _texts(values: Iterable[Any]) -> list[str]:
    """``_text`` of each value; integers and strings (nearly all of them) without a call each."""
    return [str(v) if v.__class__ is int or v.__class__ is str else _text(v) for v in values]


def _text(value: Any) -> str:
    """A value as the script stores it: integral numbers without a decimal part, floats exactly, None empty."""
    if type(value) is int or type(value) is str:
        return str(value)
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return str(int(value)) if value.is_integer() else repr(value)
    if hasattr(value, "item"):  # numpy scalars
        return _text(value.item())
    return str(value)
