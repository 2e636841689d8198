"""Scoring a batch of transactions: stored features, on-demand features, the model, the decision and its reasons.

Everything here is a function of the batch; routes and the micro-batcher only move requests in and answers out.
The on-demand features are computed by the feature service's own on-demand views (their Feast transformation,
which calls ``feature_repo.transformations``), so the service and training run one implementation.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from typing import Any

import numpy as np
import pandas as pd
import redis
from feast import FeatureStore

from serving.model import ModelHolder, ServedModel
from serving.online import EntityFeatures, OnlineFeatures
from serving.pipeline_calls import Channel, Replies
from serving.realtime import PER_CALL, RealtimeAggregates
from skewless.errors import DependencyUnavailableError
from skewless.store import feature_service
from training.evaluate import decide

# Batches larger than this are decided as Redis answers their real-time calls, at most this many transactions at a
# time, while Redis computes the next calls' features.
PIPELINE_CHUNK = 256  # a multiple of realtime.PER_CALL: a chunk's transactions are whole script calls
if PIPELINE_CHUNK % PER_CALL:
    raise RuntimeError(f"PIPELINE_CHUNK {PIPELINE_CHUNK} must be a multiple of the real-time PER_CALL {PER_CALL}")
# A reason must lower the score by more than this: below it, the difference is rounding between two predictions.
REASON_MIN_DROP = 1e-9


@dataclass
class Decision:
    txn_id: str
    risk_score: float
    recommendation: str
    model_version: int
    reasons: list[str]
    missing_features: list[str]
    stale_features: list[str]
    unknown_entities: list[str]
    # The served vector: plain values in the order of ``feature_names`` (the model's features, one list shared by
    # the decisions of a model call), so a batch builds no dict per decision; ``features`` pairs them up.
    feature_names: list[str] = field(default_factory=list)
    vector: tuple[Any, ...] = ()
    feature_ages: dict[str, float] = field(default_factory=dict)  # seconds since each stored view's row was written
    # Set by the canary (serving/canary.py): which model decided, its model-call time, what the challenger did.
    role: str = "champion"
    model_ms: float | None = None
    challenger_error: str | None = None
    shadow_version: int | None = None
    shadow_score: float | None = None
    shadow_recommendation: str | None = None
    shadow_model_ms: float | None = None

    @property
    def features(self) -> dict[str, Any]:
        """The served vector, feature -> value."""
        return dict(zip(self.feature_names, self.vector, strict=True))


Columns = dict[str, Any]  # feature or request field -> values (list or array), one per transaction in the batch


@dataclass(frozen=True)
class FeatureRead:
    """Features read for a batch (``Scorer.features``) with the model they were read for (its feature service)."""

    model: ServedModel
    columns: Columns
    stored: list[EntityFeatures]


@dataclass(frozen=True)
class _ServiceParts:
    online: OnlineFeatures  # stored features (batch views) from Feast's Redis layout
    realtime: RealtimeAggregates  # windowed views, computed and recorded at score time (none: no views)
    on_demand: list[Any]  # on-demand views, run on the request and the two above
    descriptions: dict[str, str]  # for the reasons


class Scorer:
    """Turns transactions (dicts of the request's fields) into decisions with the current model."""

    def __init__(self, store: FeatureStore, client: redis.Redis, models: ModelHolder, reasons_count: int = 3) -> None:
        self._store = store
        self._client = client
        self._channel = Channel(client, "online store (Redis)")
        self._models = models
        self._reasons_count = reasons_count
        self._by_service: dict[str, _ServiceParts] = {}

    def _service_parts(self, name: str) -> _ServiceParts:
        """Readers, on-demand views and feature descriptions of a service, worked out once per service."""
        if name not in self._by_service:
            service = feature_service(self._store, name)
            on_demand = {v.name: v for v in self._store.list_on_demand_feature_views()}
            views = [on_demand[p.name] for p in service.feature_view_projections if p.name in on_demand]
            realtime = RealtimeAggregates.for_service(self._client, self._store, service)
            descriptions = {}
            for projection in service.feature_view_projections:
                if projection.name not in on_demand and projection.name not in realtime.views:
                    for f in self._store.get_feature_view(projection.name).features:
                        descriptions[f.name] = f.description
            online = OnlineFeatures(self._store, service, self._client)
            self._by_service[name] = _ServiceParts(online, realtime, views, descriptions)
        return self._by_service[name]

    def model(self) -> ServedModel:
        model = self._models.current
        if model is None:
            reason = self._models.last_error or "no model loaded yet"
            raise DependencyUnavailableError(f"no model to score with: {reason}")
        return model

    def features(self, transactions: list[dict[str, Any]], model: ServedModel) -> tuple[Columns, list[EntityFeatures]]:
        """The model's inputs as columns (name -> array, one entry per transaction), plus what was missing.

        Stored features and real-time aggregates (which also records the transactions) come from Redis in one
        pipelined round trip; on-demand features are computed from them and the request."""
        return self._channel.exchange(*self._feature_read(transactions, model))

    async def features_async(
        self,
        transactions: list[dict[str, Any]],
        model: ServedModel,
        spin_s: float = 0.0,
        idle: Callable[[], bool] | None = None,
    ) -> FeatureRead:
        """``features``, read without holding the event loop while Redis computes them (after watching for the
        answer ``spin_s`` first, doing ``idle``'s work meanwhile: ``Channel.exchange_async``)."""
        commands, use, load = self._feature_read(transactions, model)
        columns, stored = await self._channel.exchange_async(commands, use, load, spin_s, idle)
        return FeatureRead(model, columns, stored)

    def _feature_read(
        self, transactions: list[dict[str, Any]], model: ServedModel
    ) -> tuple[list[Any], Callable[[Replies], tuple[Columns, list[EntityFeatures]]], Callable[[], None]]:
        """The commands of a feature read, what turns their replies into features, and what reloads the scripts."""
        parts = self._service_parts(model.feature_service)
        read = parts.online.prepare(transactions)
        record = parts.realtime.prepare(transactions) if parts.realtime.views else None

        def use(replies: Replies) -> tuple[Columns, list[EntityFeatures]]:
            # The reads come first and are decoded while Redis is still running the real-time scripts.
            stored = read.results(list(islice(replies, len(read.commands))), datetime.now(UTC))
            windowed = record.columns_as_given(replies) if record else {}
            return self._columns(parts, transactions, stored.columns, windowed), stored.rows

        return read.commands + (record.commands if record else []), use, parts.realtime.load

    def score(self, transactions: list[dict[str, Any]], model: ServedModel | None = None) -> list[Decision]:
        return self.score_timed(transactions, model or self.model())[0]

    def score_timed(self, transactions: list[dict[str, Any]], model: ServedModel) -> tuple[list[Decision], float]:
        """``model``'s decisions and the seconds spent deciding (the model's share, without reading features)."""
        parts = self._service_parts(model.feature_service)
        if len(transactions) > PIPELINE_CHUNK and parts.realtime.views:
            return self._score_as_replies_arrive(parts, transactions, model)
        columns, stored = self.features(transactions, model)
        started = time.perf_counter()
        return self.decisions(transactions, columns, stored, model), time.perf_counter() - started

    def _score_as_replies_arrive(
        self, parts: _ServiceParts, transactions: list[dict[str, Any]], model: ServedModel
    ) -> tuple[list[Decision], float]:
        """A large batch decided a chunk at a time, in time order, as Redis answers its real-time scripts: the
        model works on one chunk while Redis computes the next. Each transaction's decision is its own, so the
        answers are those of the whole batch at once."""
        record = parts.realtime.prepare(transactions)
        ordered = [transactions[i] for i in record.order]  # stored features read in time order too: chunks slice
        read = parts.online.prepare(ordered)

        def use(replies: Replies) -> tuple[list[Decision], float]:
            stored = read.results(list(islice(replies, len(read.commands))), datetime.now(UTC))
            out: list[Any] = [None] * len(transactions)
            seconds = 0.0
            at = 0
            while at < len(ordered):
                # What Redis has answered so far, at least one call and at most a chunk: while the model keeps up
                # with Redis, it works on one call at a time, so the last one is decided soon after it comes.
                calls = [next(replies)]
                while len(calls) < PIPELINE_CHUNK // PER_CALL and at + len(calls) * PER_CALL < len(ordered):
                    if not replies.ready():
                        break
                    calls.append(next(replies))
                end = min(at + len(calls) * PER_CALL, len(ordered))
                rows, chunk_stored = ordered[at:end], stored.rows[at:end]
                windowed = record.columns(calls)
                columns = self._columns(parts, rows, {n: v[at:end] for n, v in stored.columns.items()}, windowed)
                started = time.perf_counter()
                decisions = self.decisions(rows, columns, chunk_stored, model)
                for i, decision in zip(record.order[at:end], decisions, strict=True):
                    out[i] = decision
                seconds += time.perf_counter() - started
                at = end
            return out, seconds

        return self._channel.exchange(read.commands + record.commands, use, parts.realtime.load)

    @staticmethod
    def _columns(
        parts: _ServiceParts, transactions: list[dict[str, Any]], stored: Columns, windowed: Columns
    ) -> Columns:
        """The request's fields, the stored and real-time features (as columns), and the on-demand features."""
        columns: Columns = {name: [row[name] for row in transactions] for name in transactions[0]}
        columns.update(stored)
        columns.update(windowed)
        for view in parts.on_demand:
            columns.update(_on_demand(view, columns))
        return columns

    def decisions(
        self, transactions: list[dict[str, Any]], columns: Columns, stored: list[EntityFeatures], model: ServedModel
    ) -> list[Decision]:
        """``model``'s decisions on features already read (``features``); the canary scores two models on one read."""
        n = len(transactions)
        scores = model.probability(columns, n)
        actions = decide(scores, model.thresholds)
        reasons = self._reasons(model, columns, scores, actions)
        vectors = _vectors(model.features, columns, n)
        # zipped Python values: a numpy scalar per index cost ~3x (1,000 decisions: 3.3 against 2 ms here)
        return [
            Decision(
                txn_id=str(txn["txn_id"]),
                risk_score=score,
                recommendation=action,
                model_version=model.version,
                reasons=why,
                missing_features=lacking.missing,
                stale_features=lacking.stale,
                unknown_entities=lacking.unknown_entities,
                feature_ages=lacking.ages_seconds,
                feature_names=model.features,
                vector=vector,
            )
            for txn, score, action, why, lacking, vector in zip(
                transactions, scores.tolist(), actions.tolist(), reasons, stored, vectors, strict=True
            )
        ]

    def _reasons(
        self, model: ServedModel, columns: Columns, scores: np.ndarray, actions: np.ndarray
    ) -> list[list[str]]:
        """For flagged transactions: the numeric features whose typical value would lower the score most.

        Each candidate feature is set to its training median, one at a time, in one batched prediction
        (``ServedModel.drops``); the biggest drops are the reasons. A feature already at its median cannot lower
        the score and is not tried. Approved transactions get none, which keeps the common path cheap.
        """
        out: list[list[str]] = [[] for _ in range(len(scores))]
        flagged = np.flatnonzero(actions != "approve")
        if not len(flagged) or self._reasons_count == 0:
            return out
        names = [n for n in model.features if n in model.medians]
        if not names:
            return out
        descriptions = self._service_parts(model.feature_service).descriptions
        rows = {name: [columns[name][i] for i in flagged] for name in model.features}
        drops = model.drops(rows, len(flagged), scores[flagged], {name: model.medians[name] for name in names})
        for j, row_index in enumerate(flagged):
            best = np.argsort(-drops[:, j], kind="stable")[: self._reasons_count]
            out[row_index] = [
                _reason_text(names[k], rows[names[k]][j], model.medians[names[k]], descriptions)
                for k in best
                if drops[k, j] > REASON_MIN_DROP
            ]
        return out


def _on_demand(view: Any, columns: Columns) -> Columns:
    """An on-demand view's outputs. Views here take a mapping of columns and answer in kind (no DataFrame built);
    one written for pandas only gets a DataFrame, as Feast would give it."""
    udf = view.feature_transformation.udf
    try:
        result = udf(columns)
    except (TypeError, AttributeError, KeyError, ValueError):
        result = None
    if isinstance(result, Mapping):
        return dict(result)
    frame = pd.DataFrame(columns)
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True)
    computed = view.feature_transformation.transform(frame)
    return {name: computed[name].to_numpy() for name in computed.columns}


def _reason_text(name: str, value: Any, typical: float, descriptions: dict[str, str]) -> str:
    label = descriptions.get(name) or name.replace("_", " ").capitalize()
    label = label.rstrip(".")
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return f"{label}: unknown"
    return f"{label}: {_fmt(value)} (typical {_fmt(typical)})"


def _fmt(value: Any) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return f"{number:,.0f}" if abs(number) >= 100 or number == int(number) else f"{number:.2f}"


_PLAIN_TYPES = frozenset({int, float, str, bool, type(None)})


def _vectors(names: list[str], columns: Columns, n: int) -> list[tuple[Any, ...]]:
    """Each transaction's served vector (plain values in the order of ``names``), for the decision log.

    One row goes value by value. Many go a column at a time (each column's check costs a few µs, whatever its
    length), then one transposition. A few go value by value after their numeric arrays became lists (one C
    call each, where a numpy scalar per value cost ~1 µs): 8 rows 27 µs here, against 75 µs. A NaN stays a
    float NaN, which the log's JSON writes as null."""
    served = [columns[name] for name in names]
    if n == 1:
        return [tuple([v if (v := values[0]).__class__ in _PLAIN_TYPES else _plain(v) for values in served])]
    if n >= 16:
        return list(zip(*[_plain_values(values) for values in served], strict=True))
    served = [v.tolist() if v.__class__ is np.ndarray and v.dtype.kind in "biuf" else v for v in served]
    return [
        tuple([v if (v := values[i]).__class__ in _PLAIN_TYPES else _plain(v) for values in served]) for i in range(n)
    ]


def _plain_values(values: Any) -> list[Any]:
    """A column as plain Python values for the decision log. Numeric arrays come out whole (``tolist``): a NaN
    stays a float NaN, which the log's JSON writes as null, as it writes None. Anything unusual (numpy scalars
    in object arrays, timestamps) is converted one value at a time."""
    if isinstance(values, np.ndarray):
        if values.dtype.kind in "biuf":
            return values.tolist()  # type: ignore[no-any-return]
        values = values.tolist()
    if _PLAIN_TYPES.issuperset(map(type, values)):  # in C: a third of a generator's time per value
        return values if isinstance(values, list) else list(values)
    return [_plain(v) for v in values]


def _plain(value: Any) -> Any:
    """JSON- and Parquet-friendly scalars for the decision log."""
    if value is None:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if value.__class__ is float and value != value:  # NaN (np.isnan on a Python float costs ~10x this)
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value
