"""The distances: zero for the same distribution, large for a shift, and counted on the baseline's own bins."""

from __future__ import annotations

import numpy as np
import pytest

from monitoring.drift import compare_categorical, compare_numeric, js_distance, proportion_z, psi
from monitoring.profile import summarize_categorical, summarize_numeric


def test_psi_and_js_are_zero_for_equal_shares_and_grow_with_the_shift() -> None:
    same = np.array([10, 20, 30])
    assert psi(same, same * 3) == pytest.approx(0.0)
    assert js_distance(same, same) == pytest.approx(0.0)
    assert js_distance(np.array([1, 0]), np.array([0, 1])) == pytest.approx(1.0)
    assert psi(same, np.array([30, 20, 10])) > psi(same, np.array([12, 20, 28])) > 0


def test_numeric_comparison_of_a_sample_with_itself_is_stable() -> None:
    rng = np.random.default_rng(0)
    baseline = summarize_numeric(rng.normal(size=20_000))
    c = compare_numeric(baseline, rng.normal(size=5_000))
    assert c.psi < 0.02 and c.distance < 0.03 and c.test == "ks"


def test_numeric_comparison_sees_a_shift_in_psi_and_ks() -> None:
    rng = np.random.default_rng(0)
    baseline = summarize_numeric(rng.normal(size=20_000))
    c = compare_numeric(baseline, rng.normal(loc=1.0, size=5_000))
    assert c.psi > 0.5 and c.distance == pytest.approx(0.38, abs=0.03)  # KS of N(0,1) vs N(1,1) is 0.383
    assert sum(c.current_shares) == pytest.approx(1.0)


def test_ks_is_exact_on_a_discrete_feature() -> None:
    baseline = summarize_numeric(np.array([0.0] * 50 + [1.0] * 30 + [2.0] * 20))
    c = compare_numeric(baseline, np.array([0.0] * 20 + [1.0] * 30 + [2.0] * 50))
    assert c.distance == pytest.approx(0.3)


def test_categorical_comparison_reports_values_never_seen() -> None:
    baseline = summarize_categorical(["US"] * 60 + ["GB"] * 40)
    c = compare_categorical(baseline, ["US"] * 30 + ["GB"] * 20 + ["XX"] * 50 + [None] * 10)
    assert c.new_values == {"XX": 50}
    assert c.bins == ["US", "GB", "(other)"]
    assert c.missing == 10 and c.test == "js" and c.psi > 1


def test_proportion_z_is_zero_without_data_and_signed_otherwise() -> None:
    assert proportion_z(0, 0, 5, 10) == 0.0
    assert proportion_z(5, 1_000, 50, 1_000) > 5
    assert proportion_z(50, 1_000, 5, 1_000) < -5
