"""The verdict's rules on small inline samples: what promotes, what rolls back, and when it waits."""

from __future__ import annotations

import numpy as np

from release.rules import MIN_BASELINE, Bounds, Sample, judge, psi

BOUNDS = Bounds(
    window=500, max_error_rate=0.002, p99_ratio=1.5, p99_slack_ms=1.0, max_psi=0.2, max_block_rate_change=0.01
)


def _sample(scores: np.ndarray, block_at: float = 0.9, model_ms: float = 1.0, errors: int = 0) -> Sample:
    s = Sample(errors=errors)
    for v in scores:
        s.add(float(v), "block" if v >= block_at else "approve", model_ms)
    return s


def _scores(n: int, seed: int, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(rng.beta(0.5, 30, n) + shift, 0, 1)


def test_psi_is_near_zero_for_one_distribution_and_large_for_a_shifted_one() -> None:
    assert psi(_scores(5000, 1), _scores(5000, 2)) < 0.02
    assert psi(_scores(5000, 1), _scores(5000, 2, shift=0.05)) > 1.0
    assert psi(np.full(100, 0.01), np.full(100, 0.01)) == 0.0  # ties collapse the bins, still finite


def test_a_challenger_like_the_champion_is_promoted() -> None:
    verdict = judge(_sample(_scores(4000, 1)), _sample(_scores(500, 2)), BOUNDS)
    assert verdict.decided and verdict.promote, verdict.summary()
    assert set(verdict.metrics()) == {"error_rate", "p99_model_ms", "psi", "block_rate_change"}


def test_the_window_waits_for_enough_challenger_and_champion_decisions() -> None:
    assert not judge(_sample(_scores(4000, 1)), _sample(_scores(499, 2)), BOUNDS).decided
    assert not judge(_sample(_scores(MIN_BASELINE - 1, 1)), _sample(_scores(500, 2)), BOUNDS).decided


def test_each_bound_rolls_back_on_its_own() -> None:
    champion = _sample(_scores(4000, 1))
    shifted = judge(champion, _sample(_scores(500, 2, shift=0.05)), BOUNDS)
    assert not shifted.promote and next(c.name for c in shifted.checks if not c.passed) == "psi"

    slow = judge(champion, _sample(_scores(500, 2), model_ms=3.0), BOUNDS)
    assert not slow.promote and [c.name for c in slow.checks if not c.passed] == ["p99_model_ms"]

    blocky = judge(champion, _sample(_scores(500, 2), block_at=0.02), BOUNDS)
    assert "block_rate_change" in [c.name for c in blocky.checks if not c.passed]
    assert "block rate" in blocky.reasons[-1]


def test_errors_roll_back_early_once_the_window_cannot_pass() -> None:
    champion = _sample(_scores(4000, 1))
    within = judge(champion, _sample(_scores(100, 2), errors=1), BOUNDS)  # 1 allowed in 500
    assert not within.decided
    early = judge(champion, _sample(_scores(100, 2), errors=2), BOUNDS)
    assert early.decided and not early.promote
    assert early.reasons == ["errors 2/500 (0.40%, bound 0.20%)"]


def test_bounds_round_trip_through_their_registry_tag() -> None:
    assert Bounds.from_json(BOUNDS.to_json()) == BOUNDS
