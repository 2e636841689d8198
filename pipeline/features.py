"""Feature tables for one day, in DuckDB SQL over the raw Parquet files.

Every table is a snapshot *as of the end of day D*: its ``event_timestamp`` (and ``created_timestamp``) is
D+1 00:00 UTC, and it reads only raw rows that existed by then: transactions and logins up to the end of D, and
labels that had *arrived* by then (label files are partitioned by arrival day). Re-running a day therefore gives
the same rows whenever it runs, and nothing from the future leaks into training.

Sums of money are computed in exact decimals and rows are ordered by key, so a re-run writes byte-identical
files.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb
import pyarrow as pa

from feature_repo import transformations

MERCHANT_PRIOR_STRENGTH = 50  # labelled transactions' worth of weight given to the global fraud rate
MERCHANT_LABEL_WINDOW_DAYS = 90


@dataclass(frozen=True)
class DayInputs:
    """The raw files that day D's tables may read, already checked against their schemas."""

    day: date
    transactions: list[Path]  # days D-29 .. D
    behaviour: list[Path]  # days D-29 .. D
    all_transactions: list[Path]  # every day up to D (lifetime totals)
    users: list[Path]  # every day up to D
    devices: list[Path]  # every day up to D
    labels: list[Path]  # every arrival day up to D


def _connect() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    return con


def _files(paths: list[Path]) -> str:
    """A SQL list literal of file paths (paths come from our own listing, quotes are escaped anyway)."""
    return "[" + ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths) + "]"


def _as_of(day: date) -> str:
    return f"(TIMESTAMPTZ '{day.isoformat()} 00:00:00+00' + INTERVAL 1 DAY)"


def user_profile(inputs: DayInputs) -> pa.Table:
    as_of = _as_of(inputs.day)
    sql = f"""
        WITH users AS (SELECT * FROM read_parquet({_files(inputs.users)})),
        spend AS (
            SELECT user_id, SUM(amount::DECIMAL(18, 2)) AS spent, COUNT(*) AS n
            FROM read_parquet({_files(inputs.all_transactions)})
            WHERE event_timestamp < {as_of}
            GROUP BY user_id
        )
        SELECT
            u.user_id,
            {as_of} AS event_timestamp,
            {as_of} AS created_timestamp,
            u.birth_year,
            u.kyc_level::BIGINT AS kyc_level,
            u.home_country,
            date_diff('day', u.signup_date, DATE '{inputs.day.isoformat()}')::DOUBLE + 1 AS account_age_days,
            (u.total_spend_before::DECIMAL(18, 2) + COALESCE(s.spent, 0))::DOUBLE AS total_spend,
            u.orders_before + COALESCE(s.n, 0) AS orders
        FROM users u LEFT JOIN spend s USING (user_id)
        WHERE u.registered_at < {as_of}
        ORDER BY u.user_id
    """
    with _connect() as con:
        frame = con.sql(sql).df()
    frame.insert(3, "age", transformations.age_in_years(frame.pop("birth_year"), inputs.day.year).astype("int64"))
    return pa.Table.from_pandas(frame, preserve_index=False)


def user_activity(inputs: DayInputs) -> pa.Table:
    as_of = _as_of(inputs.day)
    sql = f"""
        WITH t AS (
            SELECT *, amount::DECIMAL(18, 2) AS amt,
                   date_diff('day', event_timestamp, {as_of} - INTERVAL 1 MICROSECOND) AS age_days
            FROM read_parquet({_files(inputs.transactions)})
            WHERE event_timestamp < {as_of} AND event_timestamp >= {as_of} - INTERVAL 30 DAY
        ),
        homes AS (SELECT user_id, home_country FROM read_parquet({_files(inputs.users)})),
        b AS (
            SELECT b.*, h.home_country
            FROM read_parquet({_files(inputs.behaviour)}) b LEFT JOIN homes h USING (user_id)
            WHERE event_timestamp < {as_of} AND event_timestamp >= {as_of} - INTERVAL 7 DAY
        ),
        txn_stats AS (
            SELECT
                user_id,
                COUNT(*) FILTER (WHERE event_timestamp >= {as_of} - INTERVAL 1 DAY) AS txn_count_1d,
                COUNT(*) FILTER (WHERE event_timestamp >= {as_of} - INTERVAL 7 DAY) AS txn_count_7d,
                COALESCE(SUM(amt) FILTER (WHERE event_timestamp >= {as_of} - INTERVAL 7 DAY), 0) AS sum_7d,
                COUNT(*) AS n_30d,
                SUM(amt) AS sum_30d,
                SUM(amt::DECIMAL(38, 4) * amt::DECIMAL(38, 4)) AS sumsq_30d,
                MAX(amt) AS max_30d,
                COUNT(DISTINCT merchant_id) AS distinct_merchants_30d,
                COUNT(DISTINCT device_id) AS distinct_devices_30d,
                COUNT(DISTINCT country) AS distinct_countries_30d
            FROM t GROUP BY user_id
        ),
        login_stats AS (
            SELECT
                user_id,
                COUNT(*) FILTER (WHERE event_type = 'login_success') AS logins_7d,
                COUNT(*) FILTER (WHERE event_type = 'login_failed') AS failed_logins_7d,
                COUNT(*) FILTER (WHERE ip_country IS DISTINCT FROM home_country) AS foreign_ip_logins_7d
            FROM b GROUP BY user_id
        )
        SELECT
            user_id,
            {as_of} AS event_timestamp,
            {as_of} AS created_timestamp,
            COALESCE(txn_count_1d, 0) AS txn_count_1d,
            COALESCE(txn_count_7d, 0) AS txn_count_7d,
            COALESCE(sum_7d, 0)::DOUBLE AS amount_sum_7d,
            (sum_30d / n_30d)::DOUBLE AS amount_mean_30d,
            CASE WHEN n_30d > 1 THEN
                sqrt(greatest((sumsq_30d - sum_30d * sum_30d / n_30d)::DOUBLE, 0) / (n_30d - 1))
            END AS amount_std_30d,
            max_30d::DOUBLE AS amount_max_30d,
            COALESCE(distinct_merchants_30d, 0) AS distinct_merchants_30d,
            COALESCE(distinct_devices_30d, 0) AS distinct_devices_30d,
            COALESCE(distinct_countries_30d, 0) AS distinct_countries_30d,
            COALESCE(logins_7d, 0) AS logins_7d,
            COALESCE(failed_logins_7d, 0) AS failed_logins_7d,
            COALESCE(foreign_ip_logins_7d, 0) AS foreign_ip_logins_7d
        FROM txn_stats FULL OUTER JOIN login_stats USING (user_id)
        ORDER BY user_id
    """
    with _connect() as con:
        return con.sql(sql).to_arrow_table()


def device_stats(inputs: DayInputs) -> pa.Table:
    as_of = _as_of(inputs.day)
    sql = f"""
        WITH d AS (
            SELECT * FROM read_parquet({_files(inputs.devices)}) WHERE first_seen < {as_of}
        ),
        usage AS (
            SELECT device_id, user_id, event_timestamp, 1 AS is_txn, 0 AS is_failed
            FROM read_parquet({_files(inputs.transactions)})
            UNION ALL
            SELECT device_id, user_id, event_timestamp, 0, (event_type = 'login_failed')::INT
            FROM read_parquet({_files(inputs.behaviour)})
        ),
        recent AS (
            SELECT
                device_id,
                COUNT(DISTINCT user_id) AS distinct_users_30d,
                SUM(is_txn) FILTER (WHERE event_timestamp >= {as_of} - INTERVAL 7 DAY) AS txn_7d,
                SUM(is_failed) FILTER (WHERE event_timestamp >= {as_of} - INTERVAL 7 DAY) AS failed_7d
            FROM usage
            WHERE event_timestamp < {as_of} AND event_timestamp >= {as_of} - INTERVAL 30 DAY
            GROUP BY device_id
        )
        SELECT
            d.device_id,
            {as_of} AS event_timestamp,
            {as_of} AS created_timestamp,
            d.device_type,
            d.os AS device_os,
            d.is_emulator::BIGINT AS is_emulator,
            (epoch_us({as_of}) - epoch_us(d.first_seen))::DOUBLE / 86400e6 AS device_age_days,
            COALESCE(r.distinct_users_30d, 0) AS device_distinct_users_30d,
            COALESCE(r.txn_7d, 0)::BIGINT AS device_txn_count_7d,
            COALESCE(r.failed_7d, 0)::BIGINT AS device_failed_logins_7d
        FROM d LEFT JOIN recent r USING (device_id)
        ORDER BY d.device_id
    """
    with _connect() as con:
        return con.sql(sql).to_arrow_table()


def merchant_risk(inputs: DayInputs) -> pa.Table:
    as_of = _as_of(inputs.day)
    sql = f"""
        WITH t AS (
            SELECT txn_id, merchant_id, user_id, event_timestamp
            FROM read_parquet({_files(inputs.transactions)})
            WHERE event_timestamp < {as_of} AND event_timestamp >= {as_of} - INTERVAL 30 DAY
        ),
        known AS (
            SELECT txn_id, is_fraud, reported_at
            FROM read_parquet({_files(inputs.labels)})
            WHERE reported_at < {as_of}
              AND txn_timestamp >= {as_of} - INTERVAL {MERCHANT_LABEL_WINDOW_DAYS} DAY
        ),
        labelled AS (
            SELECT tx.merchant_id, k.is_fraud, k.reported_at
            FROM known k JOIN read_parquet({_files(inputs.all_transactions)}) tx USING (txn_id)
        ),
        prior AS (SELECT COALESCE(AVG(is_fraud), 0)::DOUBLE AS p FROM labelled),
        label_stats AS (
            SELECT merchant_id, COUNT(*) AS n_labelled, SUM(is_fraud) AS n_fraud,
                   SUM(is_fraud) FILTER (WHERE reported_at >= {as_of} - INTERVAL 30 DAY) AS chargebacks_30d
            FROM labelled GROUP BY merchant_id
        ),
        volume AS (
            SELECT merchant_id, COUNT(*) AS txn_30d, COUNT(DISTINCT user_id) AS users_30d
            FROM t GROUP BY merchant_id
        )
        SELECT
            merchant_id,
            {as_of} AS event_timestamp,
            {as_of} AS created_timestamp,
            COALESCE(v.txn_30d, 0) AS merchant_txn_count_30d,
            COALESCE(v.users_30d, 0) AS merchant_distinct_users_30d,
            ((COALESCE(l.n_fraud, 0) + {MERCHANT_PRIOR_STRENGTH} * prior.p)
                / (COALESCE(l.n_labelled, 0) + {MERCHANT_PRIOR_STRENGTH}))::DOUBLE AS merchant_fraud_rate,
            COALESCE(l.chargebacks_30d, 0)::BIGINT AS merchant_chargebacks_30d
        FROM volume v FULL OUTER JOIN label_stats l USING (merchant_id) CROSS JOIN prior
        ORDER BY merchant_id
    """
    with _connect() as con:
        return con.sql(sql).to_arrow_table()


TABLES = {
    "user_profile": user_profile,
    "user_activity": user_activity,
    "device_stats": device_stats,
    "merchant_risk": merchant_risk,
}
