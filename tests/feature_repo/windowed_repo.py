"""Hand-built transaction streams for the windowed aggregations, and both ways of computing their features.

``write_transactions`` puts rows in ``data/raw/transactions`` of a temp repo (the windowed views' batch source);
``offline`` asks Feast's ``get_historical_features`` for the windowed features as of each row; ``Txn`` rows
turn into the dicts the serving side records. The boundary scenario itself lives in the tests.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from data import schemas
from data.files import write_parquet_atomic
from feature_repo.windows import service_windows

T0 = datetime.fromisoformat("2026-11-02T12:00:00+00:00")
SERVICE = "fraud_model_v2"


@dataclass(frozen=True)
class Txn:
    txn_id: int
    user_id: int
    device_id: int
    merchant_id: int
    amount: float
    event_timestamp: datetime

    @classmethod
    def at(cls, txn_id: int, after: timedelta, amount: float, user: int = 1, device: int = 10, merchant: int = 100):
        return cls(txn_id, user, device, merchant, amount, T0 + after)

    def row(self) -> dict[str, Any]:
        return asdict(self)


def write_transactions(repo_root: Path, txns: list[Txn]) -> None:
    """The raw transactions file of the rows (duplicates included, as an upstream may deliver them)."""
    frame = pd.DataFrame([t.row() for t in txns])
    frame["currency"], frame["country"], frame["channel"] = "USD", "US", "web"
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True).astype("datetime64[us, UTC]")
    table = pa.Table.from_pandas(frame[schemas.TRANSACTIONS.names], schema=schemas.TRANSACTIONS, preserve_index=False)
    write_parquet_atomic(table, repo_root / "data" / "raw" / "transactions" / "2026-11-02.parquet")


def windowed_refs(store: Any) -> list[str]:
    """``view:feature`` of every windowed feature of the service, read from the registry."""
    service = store.get_feature_service(SERVICE)
    return [f"{w.name}:{f.name}" for w in service_windows(store, service) for f in w.features]


def offline(store: Any, txns: list[Txn]) -> pd.DataFrame:
    """The windowed features of each row as of its own time, through Feast; rows in the given order."""
    entities = pd.DataFrame([t.row() for t in txns])
    entities["event_timestamp"] = pd.to_datetime(entities["event_timestamp"], utc=True)
    return store.get_historical_features(entity_df=entities, features=windowed_refs(store)).to_df()


US, MIN, DAY = timedelta(microseconds=1), timedelta(minutes=1), timedelta(days=1)

# Arrival order. User 1 pays from device 10 unless noted; comments say what the row checks.
SCENARIO = [
    Txn.at(1, 0 * MIN, 10.0),  # nothing before it
    Txn.at(2, 0 * MIN, 20.0, device=11, merchant=101),  # same microsecond as 1: neither sees the other
    Txn.at(3, 10 * MIN, 5.0),  # 1 and 2 exactly 10 minutes before: inside the 10-minute window
    Txn.at(4, 20 * MIN + US, 7.0),  # 3 is 10 minutes and 1 µs before: outside 10 minutes, inside the hour
    Txn.at(3, 10 * MIN, 5.0),  # a retry of 3: answered as 3 was, and counted once
    Txn.at(6, 30 * MIN, 1.0, user=2),  # another account on device 10
    Txn.at(7, 40 * MIN, 2.0),  # scored before 8 arrives (8 is older): online cannot count 8 yet
    Txn.at(8, 25 * MIN, 3.0),  # late: its own window is exact
    Txn.at(9, DAY, 4.0),  # 1 and 2 exactly 24 hours before: still inside
    Txn.at(10, DAY + US, 6.0),  # 1 and 2 are now outside the day
]

# Features every row must have, offline and online.
EXPECTED: dict[int, dict[str, Any]] = {
    0: {"txn_count_24h": 0, "amount_sum_24h": 0.0, "amount_max_24h": 0.0, "seconds_since_last_txn": 86_400.0},
    1: {"txn_count_24h": 0, "device_distinct_users_24h": 0},
    2: {
        "txn_count_10m": 2,
        "amount_sum_10m": 30.0,
        "amount_max_10m": 20.0,
        "distinct_devices_24h": 2,
        "distinct_merchants_24h": 2,
        "seconds_since_last_txn": 600.0,
        "device_distinct_users_24h": 1,
    },
    3: {"txn_count_10m": 0, "txn_count_1h": 3, "amount_sum_1h": 35.0, "seconds_since_last_txn": 600.000001},
    5: {"txn_count_24h": 0, "device_distinct_users_24h": 1},
    6: {"txn_count_10m": 0, "amount_max_1h": 20.0, "device_distinct_users_24h": 2},
    7: {"txn_count_10m": 1, "txn_count_1h": 4, "amount_sum_1h": 42.0, "seconds_since_last_txn": 299.999999},
    8: {"txn_count_1h": 0, "txn_count_24h": 6, "amount_sum_24h": 47.0, "seconds_since_last_txn": 84_000.0},
    9: {"txn_count_24h": 5, "amount_sum_24h": 21.0, "distinct_devices_24h": 1},
}
# Row 6 was scored before the late row 7 arrived: (online, offline).
SCORED_BEFORE_LATE = {
    6: {
        "txn_count_1h": (4, 5),
        "amount_sum_1h": (42.0, 45.0),
        "txn_count_24h": (4, 5),
        "amount_sum_24h": (42.0, 45.0),
        "seconds_since_last_txn": (1199.999999, 900.0),
    }
}
