"""Zero training-serving skew, end to end: a day sent through /score one payment at a time, logged by the worker,
rebuilt offline through get_historical_features by `skewless skew`, equal feature for feature.

The online store holds what it held when that day began (materialized up to its start), and the real-time state
holds the day before it (warmed from the raw data): the conditions of live traffic on that day.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
import redis
from fastapi.testclient import TestClient

from data.files import list_days
from monitoring.replay import as_requests, replay_frame, warm_realtime
from monitoring.skew import skew_report
from serving.app import create_app
from serving.worker import PredictionLogWorker
from skewless.store import open_store
from tests.serving.conftest import ServedRepo

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_day_replayed_through_score_rebuilds_offline_with_zero_mismatches(served_repo: ServedRepo) -> None:
    settings = served_repo.settings.model_copy(update={"decision_stream": "test:skew", "worker_group": "skew"})
    assert settings.feature_service == "fraud_model_v2", "the default model is the one with real-time features"
    days = list_days(settings.raw_dir / "transactions")
    day, before = days[-1], days[-2]
    client = redis.Redis.from_url(served_repo.redis.url)
    client.flushall()  # online store and real-time state as of the day's start, nothing later
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    open_store(served_repo.root).materialize(start - timedelta(days=30), start)
    assert warm_realtime(settings, before) > 0

    transactions = as_requests(replay_frame(settings, day, []))[:400]
    with TestClient(create_app(settings)) as c:
        for txn in transactions:  # in time order, one at a time, as they would arrive
            reply = c.post("/score", json=txn)
            assert reply.status_code == 200, reply.text
    worker = PredictionLogWorker(client, "test:skew", "skew", settings.predictions_dir)
    worker.ensure_group()
    while worker.step(block_ms=200):
        pass

    report = skew_report(settings, since=pd.Timestamp(start).to_pydatetime(), service_name=None, rel_tol=1e-6)
    assert report.decisions == len(transactions)
    compared = {f.name: f for f in report.features}
    windowed = [n for n in compared if n.endswith(("_10m", "_1h", "_24h"))]
    assert windowed, f"no windowed features were compared: {sorted(compared)}"
    assert {"age", "txn_amount", "amount_to_typical"} <= set(compared)  # batch and on-demand ones too
    assert all(f.compared == len(transactions) for f in report.features)
    bad = {f.name: (f.mismatches, f.examples) for f in report.features if f.mismatches}
    assert not bad, f"served and offline-rebuilt features differ: {bad}"
    # Not zero by emptiness: the windows held real history (the day before, and earlier payments of the day).
    served = pd.concat([pd.read_parquet(p) for p in settings.predictions_dir.glob("day=*/*.parquet")])
    vectors = pd.DataFrame([json.loads(v) for v in served["features"]])
    counts = [n for n in windowed if n.startswith("txn_count")]
    assert counts and (vectors[counts].to_numpy() > 0).any(axis=1).mean() > 0.2, vectors[counts].describe()
