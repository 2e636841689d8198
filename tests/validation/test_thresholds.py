"""The profiling rules and the diff that `skewless validate profile` shows."""

from __future__ import annotations

from validation import thresholds


def test_ranges_widen_by_four_widths_and_stay_non_negative() -> None:
    assert thresholds.widen(0.5, 1900.0) == {"min": 0, "max": 9500}
    assert thresholds.widen(-2.0, 3.0) == {"min": -22, "max": 23}
    assert thresholds.widen(7.0, 7.0) == {"min": 0, "max": 35}


def test_null_ceilings_keep_never_null_features_never_null() -> None:
    assert thresholds.null_ceiling(0.0) == 0.0
    assert thresholds.null_ceiling(0.015) == 0.13
    assert thresholds.null_ceiling(0.6) == 1.0


def test_pinned_entries_survive_a_profile_and_the_diff_names_every_change() -> None:
    old = {"users": {"age_years": {"min": 14, "max": 120, "pinned": True}, "orders_before": {"min": 0, "max": 10}}}
    new = {"users": {"age_years": {"min": 0, "max": 360}, "orders_before": {"min": 0, "max": 12}, "x": {"max": 1}}}
    merged = thresholds.keep_pinned(old, new)
    assert merged["users"]["age_years"] == old["users"]["age_years"]
    assert thresholds.diff(old, merged) == [
        "~ users.orders_before.max: 10 -> 12",
        '+ users.x: {"max": 1} (new)',
    ]
    assert thresholds.diff(merged, old) == [
        "~ users.orders_before.max: 12 -> 10",
        '- users.x: {"max": 1} (would be removed)',
    ]
