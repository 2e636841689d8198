"""Feature transformations, each written once.

The feature pipeline, the on-demand feature views (and through them training) and the serving path all call
these functions; none of them has a second copy anywhere. Every function takes and returns pandas Series (or
scalars broadcast by pandas), treats missing inputs as missing outputs, and never raises on odd values.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def age_in_years(birth_year: pd.Series, as_of_year: int) -> pd.Series:
    """Age a customer reaches during ``as_of_year``."""
    return (as_of_year - birth_year).astype("Int64")


def age_group(age: pd.Series) -> pd.Series:
    """Decade of age: 37 -> 3. Missing age -> -1, so the model sees "unknown" as its own group."""
    return (pd.to_numeric(age, errors="coerce") // 10).fillna(-1).astype("int64")


def avg_spend(total_spend: pd.Series, orders: pd.Series) -> pd.Series:
    """Average order value over the account's lifetime; missing when there were no orders."""
    orders_f = pd.to_numeric(orders, errors="coerce").astype("float64")
    total = pd.to_numeric(total_spend, errors="coerce").astype("float64")
    return (total / orders_f.where(orders_f > 0)).astype("float64")


def amount_to_typical(amount: pd.Series, typical_amount: pd.Series) -> pd.Series:
    """How many times the customer's typical (30-day mean) amount this payment is; missing without history."""
    typical = pd.to_numeric(typical_amount, errors="coerce").astype("float64")
    return (pd.to_numeric(amount, errors="coerce").astype("float64") / typical.where(typical > 0)).astype("float64")


def hour_of_day(timestamp: pd.Series) -> pd.Series:
    """Hour (0-23, UTC) of the transaction."""
    ts = pd.to_datetime(timestamp, utc=True)
    return ts.dt.hour.astype("int64")


def is_new_device(device_age_days: pd.Series) -> pd.Series:
    """1 when the device is unknown to us or was first seen less than a day before the latest snapshot."""
    age = pd.to_numeric(device_age_days, errors="coerce").astype("float64")
    return (age.isna() | (age < 1.0)).astype("int64")


def is_foreign(country: pd.Series, home_country: pd.Series) -> pd.Series:
    """1 when the payment happens outside the customer's home country (unknown home counts as foreign)."""
    country_s = pd.Series(country).astype("object")
    home = pd.Series(home_country, index=country_s.index).astype("object")
    same = country_s.to_numpy() == home.to_numpy()
    return pd.Series(np.where(same, 0, 1), index=country_s.index, dtype="int64")
