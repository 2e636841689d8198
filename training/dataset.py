"""Building point-in-time correct training sets through the feature service.

The entity frame is the labelled transactions themselves: each row carries the entity keys, the transaction's
own fields (which the on-demand views read as request data) and its timestamp. Feast joins every feature as
of that timestamp; this module holds no feature logic and names no feature.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb
import pandas as pd
from feast import FeatureStore

from data import schemas
from data.files import check_schema, day_file, list_days
from skewless.errors import BadInputError, MissingDataError
from skewless.store import feature_service, service_features

LABEL = "is_fraud"


@dataclass(frozen=True)
class TrainingFrame:
    frame: pd.DataFrame
    features: list[str]
    feature_service: str

    @property
    def fraud_rate(self) -> float:
        return float(self.frame[LABEL].mean()) if len(self.frame) else 0.0


def labelled_transactions(raw_dir: Path, first: date | None = None, last: date | None = None) -> pd.DataFrame:
    """Transactions whose label had arrived by the newest label file, with ``is_fraud``; ordered by time.

    The frame's ``attrs["labels_known_until"]`` is the arrival time of the newest label.
    """
    tx_days = [
        d for d in list_days(raw_dir / "transactions") if (first is None or d >= first) and (last is None or d <= last)
    ]
    label_days = list_days(raw_dir / "labels")
    if not tx_days:
        raise MissingDataError(f"{raw_dir / 'transactions'}: no transaction files in the requested range")
    if not label_days:
        raise MissingDataError(f"{raw_dir / 'labels'}: no label files")
    tx_files = [day_file(raw_dir / "transactions", d) for d in tx_days]
    label_files = [day_file(raw_dir / "labels", d) for d in label_days]
    for path in tx_files:
        check_schema(path, schemas.TRANSACTIONS, label=f"transactions/{path.name}", require_rows=True)
    for path in label_files:
        check_schema(path, schemas.LABELS, label=f"labels/{path.name}")
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        frame = con.sql(
            """
            SELECT t.*, l.is_fraud::BIGINT AS is_fraud
            FROM read_parquet($tx) t JOIN read_parquet($labels) l USING (txn_id)
            ORDER BY t.event_timestamp, t.txn_id
            """,
            params={"tx": [str(p) for p in tx_files], "labels": [str(p) for p in label_files]},
        ).df()
        known_until = con.sql(
            "SELECT max(reported_at) FROM read_parquet($labels)", params={"labels": [str(p) for p in label_files]}
        ).fetchall()
    newest = known_until[0][0] if known_until else None
    frame.attrs["labels_known_until"] = pd.Timestamp(newest) if newest is not None else None
    return frame


def mature_labels(entities: pd.DataFrame, maturity_days: int) -> pd.DataFrame:
    """Drop transactions younger than ``maturity_days`` before the newest label: their chargebacks are still coming.

    Without this the newest days look cleaner than they are (cleared labels arrive in 3 days, chargebacks take up
    to three weeks), and the validation window, which is the newest, would reward a model for missing fraud.
    """
    known_until = entities.attrs.get("labels_known_until")
    if known_until is None or maturity_days == 0:
        return entities
    cutoff = known_until - pd.Timedelta(days=maturity_days)
    kept = entities[entities["event_timestamp"] < cutoff].reset_index(drop=True)
    kept.attrs = dict(entities.attrs)
    return kept


def split_by_time(frame: pd.DataFrame, validation_share: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train on the past, validate on the latest ``validation_share`` of the time span: nothing leaks backwards."""
    times = frame["event_timestamp"]
    cutoff = times.min() + (times.max() - times.min()) * (1 - validation_share)
    train = frame[times < cutoff].reset_index(drop=True)
    valid = frame[times >= cutoff].reset_index(drop=True)
    for name, part in (("training", train), ("validation", valid)):
        positives = int(part[LABEL].sum())
        if len(part) == 0 or positives == 0 or positives == len(part):
            raise BadInputError(
                f"{name} window ({len(part):,} rows, {positives:,} fraud) needs both classes; "
                "generate more days or lower SKEWLESS_LABEL_MATURITY_DAYS"
            )
    return train, valid


def build_training_frame(store: FeatureStore, service_name: str, entities: pd.DataFrame) -> TrainingFrame:
    """Join every feature of ``service_name`` onto ``entities`` as of each row's ``event_timestamp``."""
    if entities.empty:
        raise BadInputError("label set is empty: no labelled transactions to build a training set from")
    if LABEL not in entities.columns:
        raise BadInputError(f"entity frame has no `{LABEL}` column")
    service = feature_service(store, service_name)
    entity_df = entities.copy(deep=False)
    entity_df.attrs = {}  # our bookkeeping stays here; Feast's engines try to serialize attrs
    joined = store.get_historical_features(entity_df=entity_df, features=service).to_df()
    joined = joined.sort_values(["event_timestamp", "txn_id"], kind="stable").reset_index(drop=True)
    return TrainingFrame(frame=joined, features=service_features(service), feature_service=service_name)
