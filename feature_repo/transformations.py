"""Feature transformations, each written once.

The feature pipeline, the on-demand feature views (and through them training) and the serving path all call
these functions; none of them has a second copy anywhere. They are vectorised numpy: each takes array-likes
(pandas Series from Feast and the pipeline, plain arrays or lists from the scoring service) and returns a numpy
array, treats missing inputs as missing outputs, and never raises on odd values. Working on plain arrays is what
lets the service run them on one transaction in microseconds instead of building a DataFrame first.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd


def as_float(values: Any) -> np.ndarray:
    """float64 with NaN for missing (None, pandas NA, text that is not a number)."""
    if isinstance(values, pd.Series | pd.Index):
        return pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    array = np.asarray(values)
    if array.dtype.kind in "fiub":
        return array.astype("float64", copy=False)
    if array.dtype.kind == "O" and not any(isinstance(v, str | bytes) for v in array.flat):
        try:  # numbers and None (NaN): numpy's own conversion, 100x pandas' on a few values; text goes to pandas
            return array.astype("float64")
        except (TypeError, ValueError):
            pass
    return pd.to_numeric(pd.Series(array, dtype="object"), errors="coerce").to_numpy(dtype="float64", na_value=np.nan)


def as_text(values: Any) -> np.ndarray:
    """An object array of str, None for missing."""
    if isinstance(values, pd.Series | pd.Index):
        return values.astype("object").where(values.notna(), None).to_numpy()
    items = values if isinstance(values, list) else np.asarray(values, dtype="object")
    return np.array([None if v is None or v != v else v for v in items], dtype="object")  # v != v: NaN


def utc_hours(values: Any) -> np.ndarray:
    """Whole hours since the epoch (UTC) of timestamps: tz-aware datetimes, pandas timestamps, or datetime64 (UTC)."""
    if isinstance(values, np.ndarray) and values.dtype.kind == "M":
        return values.astype("datetime64[h]").astype("int64")
    if not isinstance(values, pd.Series | pd.Index):
        items = list(values)
        if all(isinstance(v, datetime) and v.tzinfo is not None for v in items):
            return np.array([int(v.timestamp() // 3600) for v in items], dtype="int64")
        values = pd.Series(items, dtype="object")
    stamps = pd.Series(pd.to_datetime(values, utc=True))
    return stamps.dt.tz_localize(None).to_numpy("datetime64[ns]").astype("datetime64[h]").astype("int64")


def age_in_years(birth_year: pd.Series, as_of_year: int) -> pd.Series:
    """Age a customer reaches during ``as_of_year``."""
    return (as_of_year - birth_year).astype("Int64")


def age_group(age: Any) -> np.ndarray:
    """Decade of age: 37 -> 3. Missing age -> -1, so the model sees "unknown" as its own group."""
    group = np.floor_divide(as_float(age), 10)  # NaN stays NaN
    group[np.isnan(group)] = -1
    return group.astype("int64")


def avg_spend(total_spend: Any, orders: Any) -> np.ndarray:
    """Average order value over the account's lifetime; missing when there were no orders."""
    count = as_float(orders)
    return _ratio(as_float(total_spend), count, count > 0)


def amount_to_typical(amount: Any, typical_amount: Any) -> np.ndarray:
    """How many times the customer's typical (30-day mean) amount this payment is; missing without history."""
    typical = as_float(typical_amount)
    return _ratio(as_float(amount), typical, typical > 0)


def _ratio(top: np.ndarray, bottom: np.ndarray, defined: np.ndarray) -> np.ndarray:
    """top / bottom where ``defined``, NaN elsewhere (nothing divided there, so no warnings to silence)."""
    return np.divide(top, bottom, out=np.full(np.broadcast(top, bottom).shape, np.nan), where=defined)


def hour_of_day(timestamp: Any) -> np.ndarray:
    """Hour (0-23, UTC) of the transaction."""
    return (utc_hours(timestamp) % 24).astype("int64")


def is_new_device(device_age_days: Any) -> np.ndarray:
    """1 when the device is unknown to us or was first seen less than a day before the latest snapshot."""
    age = as_float(device_age_days)
    return (np.isnan(age) | (age < 1.0)).astype("int64")


def is_foreign(country: Any, home_country: Any) -> np.ndarray:
    """1 when the payment happens outside the customer's home country (unknown home counts as foreign)."""
    here, home = as_text(country), as_text(home_country)
    return np.array([0 if a is not None and a == b else 1 for a, b in zip(here, home, strict=True)], dtype="int64")


def transaction_features(inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The transaction on-demand view's features from its inputs (request fields and stored features).

    ``inputs`` is anything indexable by column name: the DataFrame Feast hands the on-demand view, or the dict of
    arrays the scoring service builds. Both get the same numbers.
    """
    return {
        "txn_amount": as_float(inputs["amount"]),
        "txn_channel": as_text(inputs["channel"]),
        "amount_to_typical": amount_to_typical(inputs["amount"], inputs["amount_mean_30d"]),
        "is_new_device": is_new_device(inputs["device_age_days"]),
        "hour_of_day": hour_of_day(inputs["event_timestamp"]),
        "age_group": age_group(inputs["age"]),
        "avg_spend": avg_spend(inputs["total_spend"], inputs["orders"]),
        "is_foreign_country": is_foreign(inputs["country"], inputs["home_country"]),
    }
