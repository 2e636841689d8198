"""Batch feature views over the pipeline's daily snapshots.

TTLs: every table is rewritten once a day as of midnight, so a transaction sees a snapshot under 24 hours old
when the pipeline is on time. The TTL of two days lets one late or missed run pass; beyond that the value is
missing (and the model sees it as missing) rather than silently stale. Window counts such as `txn_count_7d`
are only true as of their snapshot, so a longer TTL would feed the model numbers that are wrong.
"""

from datetime import timedelta

from feast import FeatureView, Field
from feast.types import Float64, Int64, String

from feature_repo.entities import device, merchant, user
from feature_repo.sources import (
    device_stats_source,
    merchant_risk_source,
    user_activity_source,
    user_profile_source,
)

SNAPSHOT_TTL = timedelta(days=2)

user_profile = FeatureView(
    name="user_profile",
    entities=[user],
    ttl=SNAPSHOT_TTL,
    schema=[
        Field(name="age", dtype=Int64, description="Age in years this year."),
        Field(name="kyc_level", dtype=Int64, description="Identity verification level, 0 none to 3 full."),
        Field(name="home_country", dtype=String, description="Country of residence, ISO alpha-2."),
        Field(name="account_age_days", dtype=Float64, description="Days since signup."),
        Field(name="total_spend", dtype=Float64, description="Lifetime spend."),
        Field(name="orders", dtype=Int64, description="Lifetime number of payments."),
    ],
    source=user_profile_source,
    online=True,
    tags={"owner": "fraud", "refresh": "daily"},
)

user_activity = FeatureView(
    name="user_activity",
    entities=[user],
    ttl=SNAPSHOT_TTL,
    schema=[
        Field(name="txn_count_1d", dtype=Int64, description="Payments in the last day."),
        Field(name="txn_count_7d", dtype=Int64, description="Payments in the last 7 days."),
        Field(name="amount_sum_7d", dtype=Float64, description="Money spent in the last 7 days."),
        Field(name="amount_mean_30d", dtype=Float64, description="Typical payment: mean over 30 days."),
        Field(name="amount_std_30d", dtype=Float64, description="Spread of payments over 30 days."),
        Field(name="amount_max_30d", dtype=Float64, description="Largest payment in 30 days."),
        Field(name="distinct_merchants_30d", dtype=Int64, description="Merchants used in 30 days."),
        Field(name="distinct_devices_30d", dtype=Int64, description="Devices used in 30 days."),
        Field(name="distinct_countries_30d", dtype=Int64, description="Countries paid in over 30 days."),
        Field(name="logins_7d", dtype=Int64, description="Successful logins in 7 days."),
        Field(name="failed_logins_7d", dtype=Int64, description="Failed logins in 7 days."),
        Field(name="foreign_ip_logins_7d", dtype=Int64, description="Logins from abroad in 7 days."),
    ],
    source=user_activity_source,
    online=True,
    tags={"owner": "fraud", "refresh": "daily"},
)

device_stats = FeatureView(
    name="device_stats",
    entities=[device],
    ttl=SNAPSHOT_TTL,
    schema=[
        Field(name="device_type", dtype=String, description="mobile, desktop or tablet."),
        Field(name="device_os", dtype=String, description="Operating system."),
        Field(name="is_emulator", dtype=Int64, description="1 when the device is an emulator."),
        Field(name="device_age_days", dtype=Float64, description="Days since we first saw the device."),
        Field(
            name="device_distinct_users_30d",
            dtype=Int64,
            description="Accounts seen on the device in 30 days.",
        ),
        Field(name="device_txn_count_7d", dtype=Int64, description="Payments from the device in 7 days."),
        Field(
            name="device_failed_logins_7d",
            dtype=Int64,
            description="Failed logins from the device in 7 days.",
        ),
    ],
    source=device_stats_source,
    online=True,
    tags={"owner": "fraud", "refresh": "daily"},
)

merchant_risk = FeatureView(
    name="merchant_risk",
    entities=[merchant],
    ttl=SNAPSHOT_TTL,
    schema=[
        Field(name="merchant_txn_count_30d", dtype=Int64, description="Payments at the merchant in 30 days."),
        Field(
            name="merchant_distinct_users_30d",
            dtype=Int64,
            description="Customers of the merchant in 30 days.",
        ),
        Field(
            name="merchant_fraud_rate",
            dtype=Float64,
            description="Share of labelled payments (90 days) that were fraud, smoothed toward the global rate; "
            "uses only labels that had arrived by the snapshot.",
        ),
        Field(name="merchant_chargebacks_30d", dtype=Int64, description="Chargebacks that arrived in 30 days."),
    ],
    source=merchant_risk_source,
    online=True,
    tags={"owner": "fraud", "refresh": "daily"},
)
