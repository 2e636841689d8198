"""A short, readable account of what the feature store holds: a training set and a few online vectors."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd

from feature_repo.windows import service_windows
from skewless.settings import Settings
from skewless.store import feature_service, open_store, service_features, service_request_fields
from training.dataset import build_training_frame, labelled_transactions


def print_summary(settings: Settings, service_name: str, sample: int = 3) -> None:
    store = open_store(settings.repo_root)
    service = feature_service(store, service_name)
    entities = labelled_transactions(settings.raw_dir)
    training = build_training_frame(store, service_name, entities)
    frame = training.frame
    print(f"\nTraining set from feature service `{service_name}` (point-in-time, through Feast):")
    print(f"  rows            {len(frame):,} labelled transactions")
    print(f"  fraud rate      {training.fraud_rate:.2%}")
    print(f"  label window    {frame['event_timestamp'].min():%Y-%m-%d} .. {frame['event_timestamp'].max():%Y-%m-%d}")
    print(f"  features        {len(training.features)}")
    for projection in service.feature_view_projections:
        names = ", ".join(f.name for f in projection.features)
        print(f"    {projection.name:<22} {names}")
    missing = frame[training.features].isna().mean().sort_values(ascending=False)
    worst = missing[missing > 0].head(3)
    if len(worst):
        shown = ", ".join(f"{name} {share:.1%}" for name, share in worst.items())
        print(f"  most missing    {shown}")

    latest = entities.sort_values("event_timestamp").tail(sample)
    request_fields = service_request_fields(store, service)
    keys = [k for k in ("user_id", "device_id", "merchant_id") if k in latest.columns]
    rows = latest[keys + [f for f in request_fields if f != "event_timestamp"]].to_dict("records")
    now = datetime.now(UTC)
    for row in rows:
        row["event_timestamp"] = now
    online = store.get_online_features(features=service, entity_rows=rows).to_df()
    print(f"\nOnline feature vectors read back from Redis ({len(online)} latest transactions, scored now):")
    windowed = {f.name for w in service_windows(store, service) for f in w.features}
    names = [n for n in service_features(service) if n not in windowed]
    if windowed:
        print(
            f"  ({len(windowed)} windowed features are computed by the service at score time, not stored: "
            f"{', '.join(sorted(windowed))})"
        )
    with pd.option_context("display.max_rows", 200, "display.width", 160):
        print(online[keys + names].T.to_string(header=[f"txn {i + 1}" for i in range(len(online))]))
