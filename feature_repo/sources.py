"""Data sources: the feature tables the pipeline writes, and the transaction at request time.

Paths are relative to the repo root (where feature_store.yaml lives); each folder holds one Parquet file per
day, written by `skewless pipeline`. Every row is a snapshot as of the end of its day: `event_timestamp` and
`created_timestamp` are both the following midnight UTC.
"""

from feast import Field, FileSource, RequestSource
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
