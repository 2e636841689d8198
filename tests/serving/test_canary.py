"""Canary routing and the challenger's holder, with small fakes of the project's own scorer and registry readers."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pytest

from serving.canary import (
    CHALLENGER,
    CHAMPION,
    CanaryRouter,
    ChallengerHolder,
    routed_to_challenger,
    share_limit,
)
from serving.metrics import ServiceMetrics
from serving.online import EntityFeatures
from serving.scoring import Decision, FeatureRead
from skewless.errors import DependencyUnavailableError
from skewless.settings import Settings


@dataclass
class FakeModel:
    """What the router reads of a ServedModel; ``score`` says what it answers (or raises)."""

    version: int
    score: Any = 0.1
    feature_service: str = "fraud_model_v1"
    features: list[str] = field(default_factory=lambda: ["amount"])


class FakeScorer:
    """The Scorer's interface the router uses: the champion, one feature read, decisions of a model, both timed."""

    def __init__(self, champion: FakeModel) -> None:
        self.champion = champion
        self.reads: list[tuple[int, int]] = []  # (model version, rows) per feature read
        self.calls: list[tuple[int, list[str]]] = []  # (model version, txn ids) per model call

    def model(self) -> FakeModel:
        return self.champion

    def features(self, transactions: list[dict], model: FakeModel) -> tuple[dict, list[EntityFeatures]]:
        self.reads.append((model.version, len(transactions)))
        columns = {"amount": [t["amount"] for t in transactions], "txn_id": [t["txn_id"] for t in transactions]}
        return columns, [EntityFeatures([], [], [], {}) for _ in transactions]

    def score_timed(self, transactions: list[dict], model: FakeModel) -> tuple[list[Decision], float]:
        return self.decisions(transactions, *self.features(transactions, model), model), 0.001

    def decisions(self, transactions: list[dict], columns: dict, stored: list, model: FakeModel) -> list[Decision]:
        assert len(columns["amount"]) == len(transactions) == len(stored)
        self.calls.append((model.version, [t["txn_id"] for t in transactions]))
        if isinstance(model.score, Exception):
            raise model.score
        return [
            Decision(str(t["txn_id"]), float(model.score), "approve", model.version, [], [], [], [])
            for t in transactions
        ]


class FixedChallenger:
    """A ChallengerHolder stand-in holding one model."""

    def __init__(self, model: FakeModel | None) -> None:
        self.current = model

    def state(self) -> str:
        return "fixed"


def _router(champion: FakeModel, challenger: FakeModel | None, **settings: Any) -> tuple[CanaryRouter, FakeScorer]:
    scorer = FakeScorer(champion)
    router = CanaryRouter(scorer, FixedChallenger(challenger), Settings(**settings), ServiceMetrics())  # type: ignore[arg-type]
    return router, scorer


def _txns(n: int) -> list[dict]:
    return [{"txn_id": f"t{i}", "amount": float(i)} for i in range(n)]


def test_routing_is_deterministic_and_close_to_the_share() -> None:
    limit = share_limit(0.2)
    ids = [f"txn-{i}" for i in range(20_000)]
    first = [routed_to_challenger(i, limit, 7) for i in ids]
    assert first == [routed_to_challenger(i, limit, 7) for i in ids]  # a retry meets the same model
    assert abs(sum(first) / len(ids) - 0.2) < 0.015
    other_canary = [routed_to_challenger(i, limit, 8) for i in ids]
    assert first != other_canary  # each challenger version gets a slice of its own
    assert not any(routed_to_challenger(i, share_limit(0.0), 7) for i in ids[:500])
    assert all(routed_to_challenger(i, share_limit(1.0), 7) for i in ids[:500])


def test_without_a_challenger_the_champion_decides_alone_with_one_read() -> None:
    router, scorer = _router(FakeModel(1), None, canary_share=0.5)
    decisions = router.score(_txns(10))
    assert {(d.role, d.model_version) for d in decisions} == {(CHAMPION, 1)}
    assert all(d.model_ms is not None and d.model_ms >= 0 for d in decisions)
    assert scorer.reads == [(1, 10)]


def test_canary_splits_a_batch_by_txn_id_with_one_feature_read() -> None:
    router, scorer = _router(FakeModel(1, 0.1), FakeModel(2, 0.3), canary_share=0.5)
    txns = _txns(200)
    decisions = router.score(txns)
    assert [d.txn_id for d in decisions] == [t["txn_id"] for t in txns]  # answers in request order
    limit = share_limit(0.5)
    for d in decisions:
        expected = CHALLENGER if routed_to_challenger(d.txn_id, limit, 2) else CHAMPION
        assert d.role == expected
        assert d.model_version == (2 if expected == CHALLENGER else 1)
        assert d.risk_score == (0.3 if expected == CHALLENGER else 0.1)
    assert 60 < sum(d.role == CHALLENGER for d in decisions) < 140
    assert scorer.reads == [(1, 200)]  # both models scored on one read
    assert [v for v, _ in scorer.calls] == [1, 2]  # the challenger's share in one call
    assert router.score(txns)[5].role == decisions[5].role  # a retry routes the same


def test_models_with_different_feature_services_each_read_their_own() -> None:
    router, scorer = _router(FakeModel(1), FakeModel(2, feature_service="fraud_model_v2"), canary_share=0.5)
    router.score(_txns(50))
    assert sorted(v for v, _ in scorer.reads) == [1, 2]
    assert sum(n for _, n in scorer.reads) == 50


def _read(scorer: FakeScorer, txns: list[dict], model: FakeModel) -> FeatureRead:
    """Features read ahead for ``model``, as a micro-batch reads them; the read is then forgotten."""
    read = FeatureRead(model, *scorer.features(txns, model))  # type: ignore[arg-type]
    scorer.reads.clear()
    return read


@pytest.mark.parametrize("mode", ["canary", "shadow", "none"])
def test_features_read_ahead_are_used_and_not_read_again(mode: str) -> None:
    challenger = None if mode == "none" else FakeModel(2, 0.3)
    router, scorer = _router(
        FakeModel(1, 0.1), challenger, canary_share=0.5, canary_mode=mode if mode != "none" else "canary"
    )
    txns = _txns(60)
    decisions = router.score(txns, _read(scorer, txns, scorer.champion))
    assert scorer.reads == []
    assert [d.txn_id for d in decisions] == [t["txn_id"] for t in txns]
    assert (mode == "canary") == any(d.role == CHALLENGER for d in decisions)
    assert (mode == "shadow") == all(d.shadow_score == 0.3 for d in decisions)


def test_features_read_ahead_name_their_champion() -> None:
    router, scorer = _router(FakeModel(1), FakeModel(2, feature_service="fraud_model_v2"), canary_share=0.5)
    txns = _txns(50)
    read = _read(scorer, txns, FakeModel(7))  # read for v7, then the holder moved on to v1
    decisions = router.score(txns, read)
    assert {d.model_version for d in decisions if d.role == CHAMPION} == {7}  # the features' model decides
    assert [v for v, _ in scorer.reads] == [2]  # only the challenger, of another feature service, reads its own
    assert scorer.reads[0][1] == sum(d.role == CHALLENGER for d in decisions)


@pytest.mark.parametrize("bad", [RuntimeError("model file corrupt"), math.nan, 1.7])
def test_a_failing_challenger_is_answered_for_by_the_champion(bad: Any) -> None:
    router, _ = _router(FakeModel(1, 0.1), FakeModel(2, bad), canary_share=0.5)
    decisions = router.score(_txns(100))
    assert {(d.role, d.model_version, d.risk_score) for d in decisions} == {(CHAMPION, 1, 0.1)}
    failed = [d for d in decisions if d.challenger_error]
    assert 20 < len(failed) < 80  # the challenger's share, each marked for the verdict
    assert all("v2" in d.challenger_error or "corrupt" in d.challenger_error for d in failed)  # type: ignore[operator]


def test_redis_failing_under_the_challenger_is_not_blamed_on_it() -> None:
    router, _ = _router(FakeModel(1), FakeModel(2, DependencyUnavailableError("redis down")), canary_share=1.0)
    with pytest.raises(DependencyUnavailableError):
        router.score(_txns(3))


def test_shadow_mode_logs_the_challenger_and_the_champion_decides() -> None:
    router, scorer = _router(FakeModel(1, 0.1), FakeModel(2, 0.4), canary_share=0.05, canary_mode="shadow")
    decisions = router.score(_txns(20))
    assert {(d.role, d.model_version, d.risk_score) for d in decisions} == {(CHAMPION, 1, 0.1)}
    assert {(d.shadow_version, d.shadow_score, d.shadow_recommendation) for d in decisions} == {(2, 0.4, "approve")}
    assert all(d.shadow_model_ms is not None for d in decisions)
    assert scorer.reads == [(1, 20)]


def test_a_failing_shadow_never_fails_the_request() -> None:
    router, _ = _router(FakeModel(1), FakeModel(2, RuntimeError("boom")), canary_mode="shadow")
    decisions = router.score(_txns(4))
    assert all(d.role == CHAMPION and d.challenger_error and d.shadow_score is None for d in decisions)


def test_a_challenger_equal_to_the_champion_is_no_canary() -> None:
    router, scorer = _router(FakeModel(3), FakeModel(3), canary_share=1.0)
    assert {d.role for d in router.score(_txns(5))} == {CHAMPION}
    assert [v for v, _ in scorer.calls] == [3]


class FakeRegistry:
    """Aliases as the registry would answer them, or an outage; loads that succeed or fail by version."""

    def __init__(self) -> None:
        self.aliases: dict[str, str] = {"champion": "1"}
        self.down = False
        self.broken: set[int] = set()
        self.loads: list[int] = []

    def read(self) -> dict[str, str]:
        if self.down:
            raise DependencyUnavailableError("model registry unreachable: connection refused")
        return dict(self.aliases)

    def load(self, version: int) -> FakeModel:
        self.loads.append(version)
        if version in self.broken:
            raise OSError(f"artifact of v{version} missing")
        return FakeModel(version)


def test_challenger_holder_follows_the_alias_and_survives_bad_loads_and_outages() -> None:
    reg = FakeRegistry()
    metrics = ServiceMetrics()
    holder = ChallengerHolder(reg.read, reg.load, poll_seconds=60, metrics=metrics)  # type: ignore[arg-type]
    holder.poll_once()
    assert holder.current is None and holder.state() == "none"

    reg.aliases["challenger"] = "2"
    reg.broken.add(2)
    holder.poll_once()
    assert holder.current is None and "v2 failed to load" in holder.state()
    holder.poll_once()
    assert reg.loads == [2]  # not retried on every poll
    assert metrics.challenger_reloads.labels("failed")._value.get() == 1

    reg.aliases["challenger"] = "3"
    holder.poll_once()
    assert holder.current is not None and holder.current.version == 3
    assert holder.model_for(3) is holder.current and holder.model_for(1) is None

    reg.down = True  # an outage keeps the canary as it is: only a verdict ends it
    holder.poll_once()
    assert holder.current is not None and "unreachable" in holder.state()

    reg.down = False
    del reg.aliases["challenger"]
    holder.poll_once()
    assert holder.current is None and holder.state() == "none"
    assert metrics.challenger_version._value.get() == 0
