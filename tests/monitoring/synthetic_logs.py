"""A small synthetic world for the monitor's tests: decisions with known drift, written as the worker writes them.

Five monitored columns, as a feature service would give them: numeric ``age`` and ``txn_amount`` and
``txn_count_1d`` and categorical ``home_country`` in the feature vector, plus the request fields ``amount``
and ``country``. Drift is injected by name, so a test states exactly which columns should be flagged.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from data.files import write_parquet_atomic
from monitoring.logs import Window, WindowData
from monitoring.profile import CATEGORICAL, NUMERIC, FeatureSpec, Profile, build_profile
from serving.worker import to_table

SPECS = [
    FeatureSpec("age", NUMERIC, "model"),
    FeatureSpec("txn_amount", NUMERIC, "model"),
    FeatureSpec("txn_count_1d", NUMERIC, "model"),
    FeatureSpec("home_country", CATEGORICAL, "model"),
    FeatureSpec("amount", NUMERIC, "request"),
    FeatureSpec("country", CATEGORICAL, "request"),
]
COUNTRIES = ["US", "GB", "DE", "FR", "ES", "IT", "PL", "BR"]
WEIGHTS = np.array([35, 12, 10, 8, 5, 5, 4, 3], dtype=float) / 82
THRESHOLDS = {"block": 0.3, "review": 0.15}


@dataclass(frozen=True)
class Drift:
    older_users: bool = False
    higher_amounts: bool = False
    broken_country: bool = False
    missing_age: float = 0.0  # share of rows whose age is missing
    block_share: float | None = None  # force this share of blocks
    stale_age: float = 0.0  # share of rows that read age past its TTL


def make_rows(n: int, seed: int, drift: Drift = Drift()) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    age = np.clip(rng.normal(38, 13, n), 18, 85).round()
    if drift.older_users:
        age = np.clip(age + 18, 18, 95)
    amount = np.round(np.exp(rng.normal(3.3, 0.7, n)), 2)
    if drift.higher_amounts:
        amount = amount * 2
    home = rng.choice(COUNTRIES, n, p=WEIGHTS)
    country = np.where(rng.random(n) < 0.92, home, rng.choice(COUNTRIES, n, p=WEIGHTS))
    if drift.broken_country:
        country = np.where(rng.random(n) < 0.5, "US", country)
    score = rng.beta(0.6, 12, n)
    if drift.block_share is not None:
        score = np.where(rng.random(n) < drift.block_share, 0.95, np.minimum(score, 0.6))
    frame = pd.DataFrame(
        {
            "age": age,
            "txn_amount": amount,
            "txn_count_1d": rng.poisson(1.5, n).astype(float),
            "home_country": home,
            "amount": amount,
            "country": country,
            "risk_score": score,
        }
    )
    missing_age = rng.random(n) < drift.missing_age
    frame.loc[missing_age, "age"] = np.nan
    frame["recommendation"] = np.where(
        score >= THRESHOLDS["block"], "block", np.where(score >= THRESHOLDS["review"], "review", "approve")
    )
    frame["stale"] = rng.random(n) < drift.stale_age
    frame.loc[frame["stale"], "age"] = np.nan  # serving scores a stale value as unknown
    return frame


def reference(n: int = 20_000, seed: int = 1) -> Profile:
    frame = make_rows(n, seed)
    return build_profile(
        frame,
        SPECS,
        frame["risk_score"].to_numpy(),
        frame["recommendation"],
        source="training validation window",
        feature_service="synthetic_service",
        start="2026-10-01T00:00:00+00:00",
        end="2026-10-04T00:00:00+00:00",
        thresholds=THRESHOLDS,
    )


def as_window(frame: pd.DataFrame, window: Window, latency_ms: float = 3.0) -> WindowData:
    """The rows as `PredictionLogs.read` would return them, for the pure checks."""
    import pyarrow as pa

    columns = {s.name: pa.chunked_array([pa.array(frame[s.name].tolist())]) for s in SPECS}
    stale = int(frame["stale"].sum())
    return WindowData(
        window=window,
        model_version=1,
        rows=len(frame),
        columns=columns,
        scores=frame["risk_score"].to_numpy(dtype="float64"),
        recommendations=pa.array(frame["recommendation"].tolist()),
        latency_ms=np.full(len(frame), latency_ms),
        stale={"age": stale} if stale else {},
        hourly={},
    )


def day_window(day: date) -> Window:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return Window(start, start + timedelta(days=1))


def write_logs(frame: pd.DataFrame, predictions: Path, day: date, model_version: int = 1) -> None:
    """The rows as decisions of ``day``, written by the worker's own table builder into day partitions."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    seconds = np.linspace(0, 86_399, len(frame))
    vector_names = [s.name for s in SPECS if s.origin == "model"]
    payloads = []
    for i, row in enumerate(frame.itertuples(index=False)):
        values = row._asdict()
        features = {k: (None if pd.isna(values[k]) else values[k]) for k in vector_names}
        payloads.append(
            {
                "txn_id": f"{day.isoformat()}-{i}",
                "risk_score": float(values["risk_score"]),
                "recommendation": values["recommendation"],
                "model_version": model_version,
                "reasons": [],
                "missing_features": ["age"] if features["age"] is None and not values["stale"] else [],
                "stale_features": ["age"] if values["stale"] else [],
                "unknown_entities": [],
                "features": features,
                "user_id": i,
                "device_id": i,
                "merchant_id": 1,
                "amount": float(values["amount"]),
                "currency": "USD",
                "country": values["country"],
                "channel": "web",
                "event_timestamp": (start + timedelta(seconds=float(seconds[i]))).isoformat(),
                "logged_at": datetime.now(UTC).isoformat(),
                "latency_ms": 3.0,
            }
        )
    for first in range(0, len(payloads), 500):
        batch = payloads[first : first + 500]
        base = model_version * 10**7 + first  # unique per version, named like the worker's stream-id ranges
        name = f"{base}-0_{base + len(batch) - 1}-0.parquet"
        write_parquet_atomic(to_table(batch), predictions / f"day={day.isoformat()}" / name)
