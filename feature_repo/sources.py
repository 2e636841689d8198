"""Data sources: the feature tables the pipeline writes, the transaction stream, and the transaction at request time.

Paths are relative to the repo root (where feature_store.yaml lives); each folder holds one Parquet file per
day. The feature tables are written by `skewless pipeline`; every row is a snapshot as of the end of its day:
`event_timestamp` and `created_timestamp` are both the following midnight UTC. The transaction stream is the raw
transactions themselves (`data/raw/transactions`, schema in `data/schemas.py`): the windowed aggregations in
`feature_repo.aggregations` read it, offline from the Parquet and online from the transactions being scored.
"""

from feast import Field, FileSource, PushSource, RequestSource
from feast.data_format import ParquetFormat
from feast.types import Float64, String, UnixTimestamp


def _daily_table(name: str, description: str) -> FileSource:
    return FileSource(
        name=f"{name}_source",
        path=f"data/features/{name}",
        file_format=ParquetFormat(),
        timestamp_field="event_timestamp",
        created_timestamp_column="created_timestamp",
        description=description,
    )


user_profile_source = _daily_table("user_profile", "Account profile and lifetime spend, daily snapshot.")
user_activity_source = _daily_table("user_activity", "Trailing 1/7/30-day payment and login activity per user.")
device_stats_source = _daily_table("device_stats", "Device metadata and trailing usage, daily snapshot.")
merchant_risk_source = _daily_table("merchant_risk", "Merchant volume and label-smoothed fraud rate.")

# The transaction being scored. Training passes the same columns in the entity frame (they are the raw
# transaction's columns), serving passes them from the request.
transaction_request = RequestSource(
    name="transaction",
    schema=[
        Field(name="amount", dtype=Float64),
        Field(name="country", dtype=String),
        Field(name="channel", dtype=String),
        Field(name="event_timestamp", dtype=UnixTimestamp),
    ],
    description="Fields of the transaction being scored.",
)

# Every payment, as it happened: the raw transactions, one Parquet file per day. Offline, the windowed
# aggregations are computed from these rows; online, the scoring service pushes each transaction it scores.
transactions_source = FileSource(
    name="transactions_source",
    path="data/raw/transactions",
    file_format=ParquetFormat(),
    timestamp_field="event_timestamp",
    description="Raw card payments, one row per transaction (txn_id), partitioned by day.",
)
transactions_push = PushSource(
    name="transactions_push",
    batch_source=transactions_source,
    description="The transaction stream: scored transactions online, the raw Parquet offline.",
)
