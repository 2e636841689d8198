"""Raw-source schemas: the contract between the generator (or a real upstream) and the feature pipeline.

Every raw source is a folder of Parquet files, one per day, named ``YYYY-MM-DD.parquet``:

- ``transactions/``: card payments, partitioned by the day of ``event_timestamp``.
- ``devices/``: device metadata, partitioned by the day the device was first seen by us (devices that existed
  before the first day are in the first day's file).
- ``users/``: account profiles, partitioned by the day the account reached us (accounts that existed before
  the first day are in the first day's file, with their history before it in ``total_spend_before`` and
  ``orders_before``).
- ``behaviour/``: login attempts and sessions, partitioned by the day of ``event_timestamp``.
- ``labels/``: fraud outcomes, partitioned by the day the label *arrived* (``reported_at``), not the day of the
  transaction: a chargeback is known only days later, so reading label files up to day D gives exactly what was
  known at the end of D.

All timestamps are UTC with microsecond precision.
"""

from __future__ import annotations

import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")

TRANSACTIONS = pa.schema(
    [
        pa.field("txn_id", pa.int64(), nullable=False),
        pa.field("user_id", pa.int64(), nullable=False),
        pa.field("device_id", pa.int64(), nullable=False),
        pa.field("merchant_id", pa.int64(), nullable=False),
        pa.field("amount", pa.float64(), nullable=False),  # in `currency`, >= 0
        pa.field("currency", pa.string(), nullable=False),  # ISO 4217
        pa.field("country", pa.string(), nullable=False),  # ISO 3166 alpha-2, where the card was used
        pa.field("channel", pa.string(), nullable=False),  # web | app | pos
        pa.field("event_timestamp", TS, nullable=False),
    ]
)

DEVICES = pa.schema(
    [
        pa.field("device_id", pa.int64(), nullable=False),
        pa.field("user_id", pa.int64(), nullable=False),  # the account it was first seen with
        pa.field("device_type", pa.string(), nullable=False),  # mobile | desktop | tablet
        pa.field("os", pa.string(), nullable=False),
        pa.field("is_emulator", pa.bool_(), nullable=False),
        pa.field("first_seen", TS, nullable=False),
    ]
)

USERS = pa.schema(
    [
        pa.field("user_id", pa.int64(), nullable=False),
        pa.field("signup_date", pa.date32(), nullable=False),
        pa.field("birth_year", pa.int32(), nullable=False),
        pa.field("home_country", pa.string(), nullable=False),
        pa.field("kyc_level", pa.int32(), nullable=False),  # 0 none .. 3 fully verified
        pa.field("total_spend_before", pa.float64(), nullable=False),  # spend before the first raw day
        pa.field("orders_before", pa.int64(), nullable=False),  # orders before the first raw day
        pa.field("registered_at", TS, nullable=False),  # when the record reached us
    ]
)

BEHAVIOUR = pa.schema(
    [
        pa.field("event_id", pa.int64(), nullable=False),
        pa.field("user_id", pa.int64(), nullable=False),
        pa.field("device_id", pa.int64(), nullable=False),
        pa.field("event_type", pa.string(), nullable=False),  # login_success | login_failed
        pa.field("ip_country", pa.string(), nullable=False),
        pa.field("session_seconds", pa.float64(), nullable=True),  # null for failed logins
        pa.field("event_timestamp", TS, nullable=False),
    ]
)

LABELS = pa.schema(
    [
        pa.field("txn_id", pa.int64(), nullable=False),
        pa.field("is_fraud", pa.int8(), nullable=False),  # 1 fraud confirmed, 0 cleared
        pa.field("label_source", pa.string(), nullable=False),  # chargeback | cleared
        pa.field("txn_timestamp", TS, nullable=False),
        pa.field("reported_at", TS, nullable=False),
    ]
)

SOURCES: dict[str, pa.Schema] = {
    "transactions": TRANSACTIONS,
    "devices": DEVICES,
    "users": USERS,
    "behaviour": BEHAVIOUR,
    "labels": LABELS,
}

COUNTRY_CURRENCY: dict[str, str] = {
    "US": "USD",
    "GB": "GBP",
    "DE": "EUR",
    "FR": "EUR",
    "ES": "EUR",
    "IT": "EUR",
    "NL": "EUR",
    "PL": "PLN",
    "SE": "SEK",
    "CA": "CAD",
    "BR": "BRL",
    "MX": "MXN",
    "IN": "INR",
    "NG": "NGN",
    "RU": "RUB",
    "CN": "CNY",
}
COUNTRIES: tuple[str, ...] = tuple(COUNTRY_CURRENCY)
CURRENCIES: tuple[str, ...] = tuple(sorted(set(COUNTRY_CURRENCY.values())))
CHANNELS: tuple[str, ...] = ("web", "app", "pos")
DEVICE_TYPES: tuple[str, ...] = ("mobile", "desktop", "tablet")
OPERATING_SYSTEMS: tuple[str, ...] = ("android", "ios", "windows", "macos", "linux")
BEHAVIOUR_EVENTS: tuple[str, ...] = ("login_success", "login_failed")
