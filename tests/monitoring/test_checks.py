"""The checks on known data: drift flagged on exactly the drifted columns, and each kind of alert raised."""

from __future__ import annotations

from datetime import date

import pytest

from monitoring.checks import PreviousWindow, assess
from monitoring.thresholds import FeatureThresholds, MonitorThresholds
from tests.monitoring.synthetic_logs import Drift, as_window, day_window, make_rows, reference

WINDOW = day_window(date(2026, 10, 10))
NO_DRIFT = Drift()


@pytest.fixture(scope="module")
def baseline():  # type: ignore[no-untyped-def]
    return reference()


def _assess(baseline, drift: Drift = NO_DRIFT, seed: int = 7, n: int = 5_000, **kwargs):  # type: ignore[no-untyped-def]
    current = as_window(make_rows(n, seed, drift), WINDOW, kwargs.pop("latency_ms", 3.0))
    return assess(current, baseline, "reference", kwargs.pop("thresholds", MonitorThresholds()), **kwargs)


def _kinds(assessment) -> set[tuple[str, str]]:  # type: ignore[no-untyped-def]
    return {(a.kind, a.subject) for a in assessment.alerts}


@pytest.mark.parametrize("seed", [7, 8, 9])
def test_no_drift_flags_nothing(baseline, seed: int) -> None:  # type: ignore[no-untyped-def]
    result = _assess(baseline, seed=seed)
    assert [f.name for f in result.features if f.status != "stable"] == []
    assert result.alerts == []
    assert all(f.psi is not None and f.psi < 0.05 for f in result.features)


def test_known_drift_flags_exactly_the_drifted_columns(baseline) -> None:  # type: ignore[no-untyped-def]
    result = _assess(baseline, Drift(older_users=True, higher_amounts=True, broken_country=True))
    flagged = {f.name for f in result.features if f.drifted}
    assert flagged == {"age", "txn_amount", "amount", "country"}
    assert {f.name for f in result.features if f.status == "stable"} == {"txn_count_1d", "home_country"}
    by_name = {f.name: f for f in result.features}
    assert by_name["age"].psi_band == "significant" and by_name["age"].test == "ks"
    assert by_name["country"].test == "js" and by_name["country"].distance > 0.1
    assert {s for k, s in _kinds(result) if k == "feature_drift"} == flagged


def test_each_drift_alone_flags_only_its_column(baseline) -> None:  # type: ignore[no-untyped-def]
    assert {f.name for f in _assess(baseline, Drift(older_users=True)).features if f.drifted} == {"age"}
    assert {f.name for f in _assess(baseline, Drift(broken_country=True)).features if f.drifted} == {"country"}


def test_a_missing_value_spike_raises_an_alert(baseline) -> None:  # type: ignore[no-untyped-def]
    result = _assess(baseline, Drift(missing_age=0.3))
    assert _kinds(result) == {("missing_values", "age")}
    alert = result.alerts[0]
    assert alert.message.startswith("age missing 0.0% -> 3")
    assert {f.name: f for f in result.features}["age"].current_missing == pytest.approx(0.3, abs=0.03)


def test_a_small_missing_rise_stays_quiet(baseline) -> None:  # type: ignore[no-untyped-def]
    assert _assess(baseline, Drift(missing_age=0.02)).alerts == []


def test_a_prediction_rate_jump_raises_an_alert(baseline) -> None:  # type: ignore[no-untyped-def]
    previous = PreviousWindow(rows=5_000, decisions={"block": 25, "review": 100, "approve": 4_875})
    result = _assess(baseline, Drift(block_share=0.08), previous=previous, reference=baseline)
    assert ("decision_rate", "block") in _kinds(result)
    block = result.predictions.decisions["block"]
    assert block["current"] == pytest.approx(0.08, abs=0.015)
    assert block["previous_window"] == pytest.approx(0.005)
    assert block["reference"] == pytest.approx(baseline.decision_share("block"))
    assert ("score_drift", "risk_score") in _kinds(result)


def test_a_volume_jump_against_the_previous_window_raises_an_alert(baseline) -> None:  # type: ignore[no-untyped-def]
    result = _assess(baseline, previous=PreviousWindow(rows=1_000, decisions={"approve": 1_000}))
    assert _kinds(result) == {("volume", "decisions")}
    assert result.volume["change"] == pytest.approx(5.0)


def test_stale_features_and_slow_scoring_raise_alerts(baseline) -> None:  # type: ignore[no-untyped-def]
    result = _assess(baseline, Drift(stale_age=0.2), latency_ms=400.0)
    assert ("stale_features", "age") in _kinds(result)
    assert ("latency", "latency_ms") in _kinds(result)
    assert result.latency_ms["p99"] == pytest.approx(400.0)


def test_thresholds_per_feature_can_ignore_or_relax(baseline) -> None:  # type: ignore[no-untyped-def]
    thresholds = MonitorThresholds(
        features={"age": FeatureThresholds(ignore=True), "country": FeatureThresholds(psi_significant=5, js=0.9)}
    )
    result = _assess(baseline, Drift(older_users=True, broken_country=True), thresholds=thresholds)
    statuses = {f.name: f.status for f in result.features}
    assert statuses["age"] == "ignored"
    assert statuses["country"] in ("moderate", "stable")
    assert result.alerts == []


def test_too_few_values_are_not_judged(baseline) -> None:  # type: ignore[no-untyped-def]
    result = _assess(baseline, Drift(older_users=True), n=200)
    assert {f.status for f in result.features} == {"too few values"}
    assert [a for a in result.alerts if a.kind == "feature_drift"] == []
