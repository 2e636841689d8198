from __future__ import annotations

import math

import pandas as pd

from feature_repo import transformations as t


def test_age_group_is_decade_and_unknown_is_its_own_group() -> None:
    assert t.age_group(pd.Series([37, 19, None])).tolist() == [3, 1, -1]


def test_avg_spend_is_missing_without_orders() -> None:
    out = t.avg_spend(pd.Series([100.0, 50.0]), pd.Series([4, 0]))
    assert out.iloc[0] == 25.0
    assert math.isnan(out.iloc[1])


def test_amount_to_typical_is_missing_without_history() -> None:
    out = t.amount_to_typical(pd.Series([30.0, 30.0, 30.0]), pd.Series([10.0, 0.0, None]))
    assert out.iloc[0] == 3.0
    assert out.iloc[1:].isna().all()


def test_hour_of_day_is_utc() -> None:
    ts = pd.Series(pd.to_datetime(["2026-11-03T23:30:00+02:00", "2026-11-03T05:00:00Z"]))
    assert t.hour_of_day(ts).tolist() == [21, 5]


def test_unknown_or_day_old_devices_are_new() -> None:
    assert t.is_new_device(pd.Series([None, 0.2, 1.0, 300.0])).tolist() == [1, 1, 0, 0]


def test_foreign_country_and_unknown_home() -> None:
    assert t.is_foreign(pd.Series(["DE", "FR", "DE"]), pd.Series(["DE", "DE", None])).tolist() == [0, 1, 1]


def test_age_in_years() -> None:
    assert t.age_in_years(pd.Series([1990, 2000]), 2026).tolist() == [36, 26]
