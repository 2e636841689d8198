from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pandas as pd

from feature_repo import transformations as t


def test_age_group_is_decade_and_unknown_is_its_own_group() -> None:
    assert t.age_group(pd.Series([37, 19, None])).tolist() == [3, 1, -1]


def test_avg_spend_is_missing_without_orders() -> None:
    out = t.avg_spend(pd.Series([100.0, 50.0]), pd.Series([4, 0]))
    assert out[0] == 25.0
    assert math.isnan(out[1])


def test_amount_to_typical_is_missing_without_history() -> None:
    out = t.amount_to_typical(pd.Series([30.0, 30.0, 30.0]), pd.Series([10.0, 0.0, None]))
    assert out[0] == 3.0
    assert np.isnan(out[1:]).all()


def test_hour_of_day_is_utc() -> None:
    ts = pd.Series(pd.to_datetime(["2026-11-03T23:30:00+02:00", "2026-11-03T05:00:00Z"]))
    assert t.hour_of_day(ts).tolist() == [21, 5]


def test_unknown_or_day_old_devices_are_new() -> None:
    assert t.is_new_device(pd.Series([None, 0.2, 1.0, 300.0])).tolist() == [1, 1, 0, 0]


def test_foreign_country_and_unknown_home() -> None:
    assert t.is_foreign(pd.Series(["DE", "FR", "DE"]), pd.Series(["DE", "DE", None])).tolist() == [0, 1, 1]


def test_age_in_years() -> None:
    assert t.age_in_years(pd.Series([1990, 2000]), 2026).tolist() == [36, 26]


def test_timestamps_in_any_form_give_the_same_hours() -> None:
    aware = [datetime(2026, 11, 3, 23, 30, tzinfo=timezone(timedelta(hours=2))), datetime(2026, 11, 3, 5, tzinfo=UTC)]
    series = pd.Series(pd.to_datetime(aware, utc=True))
    naive_utc = series.dt.tz_localize(None).to_numpy()
    hours = [t.hour_of_day(form).tolist() for form in (aware, series, naive_utc)]
    assert hours == [[21, 5]] * 3


def test_missing_country_is_foreign_even_when_home_is_missing() -> None:
    assert t.is_foreign([None, np.nan, "DE"], [None, None, "DE"]).tolist() == [1, 1, 0]


def test_on_demand_view_gives_the_same_numbers_for_a_frame_and_for_arrays() -> None:
    """Feast calls the view with a DataFrame, the service with a dict of arrays: one function, same answers."""
    from feature_repo.on_demand import transaction_features

    frame = pd.DataFrame(
        {
            "amount": [12.5, 900.0, 40.0],
            "channel": ["web", "app", None],
            "amount_mean_30d": [10.0, None, 0.0],
            "device_age_days": [3.0, 0.5, None],
            "event_timestamp": pd.to_datetime(["2026-11-03T23:30:00Z", "2026-11-04T01:00:00Z", "2026-11-04T13:59:59Z"]),
            "age": pd.array([37, None, 64], dtype="Int64"),
            "total_spend": [100.0, 0.0, None],
            "orders": [4, 0, None],
            "country": ["DE", "FR", None],
            "home_country": ["DE", "DE", "DE"],
        }
    )
    from_frame = transaction_features.feature_transformation.udf(frame)
    arrays = {c: frame[c].tolist() for c in frame.columns}
    arrays["event_timestamp"] = [ts.to_pydatetime() for ts in frame["event_timestamp"]]
    from_arrays = transaction_features.feature_transformation.udf(arrays)
    assert isinstance(from_frame, pd.DataFrame) and isinstance(from_arrays, dict)
    assert list(from_frame.columns) == list(from_arrays)
    for name, values in from_arrays.items():
        expected = from_frame[name].to_numpy()
        if values.dtype.kind == "f":
            np.testing.assert_array_equal(values, expected.astype("float64"))
        else:
            assert values.tolist() == expected.tolist(), name


def test_lists_and_series_of_odd_values_give_the_same_numbers() -> None:
    """The service passes plain lists, Feast and the pipeline pass pandas: every function agrees on both."""
    odd = [3.0, None, 0, -2, 7, True, float("nan"), float("inf"), 1e308, "12", "x", pd.NA, 45.5, -0.0]
    numeric = [v for v in odd if not isinstance(v, str)]
    for values in (odd, numeric, [None], [1, None], [1, 2], [], [np.int64(4), np.float32(0.5)]):
        as_series = pd.Series(values, dtype="object")
        np.testing.assert_array_equal(t.as_float(values), t.as_float(as_series))
        ages = [v for v in values if v is None or v is pd.NA or isinstance(v, str) or abs(float(v)) < 1e6]
        np.testing.assert_array_equal(t.age_group(ages), t.age_group(pd.Series(ages, dtype="object")))
        reversed_ = list(reversed(values))
        np.testing.assert_array_equal(t.avg_spend(values, reversed_), t.avg_spend(as_series, pd.Series(reversed_)))
        np.testing.assert_array_equal(
            t.amount_to_typical(values, reversed_), t.amount_to_typical(as_series, pd.Series(reversed_))
        )
        np.testing.assert_array_equal(t.is_new_device(values), t.is_new_device(as_series))
    ratios = t.amount_to_typical([10.0, 10.0, 10.0, None, 10.0], [4.0, 0.0, -1.0, 5.0, float("nan")])
    assert ratios[0] == 2.5 and np.isnan(ratios[1:]).all()
    assert t.is_foreign(["DE", None, "FR"], ["DE", None, None]).tolist() == [0, 1, 1]
