"""The decision stream -> Parquet: every scored transaction exactly once, also across a worker crash."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import redis
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.events import PER_ENTRY
from serving.worker import PredictionLogWorker
from tests.serving.conftest import ServedRepo
from tests.serving.test_app import _latest_transactions

pytestmark = [pytest.mark.integration]


def _logged(out: Path) -> pd.DataFrame:
    files = sorted(out.glob("day=*/*.parquet"))
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True) if files else pd.DataFrame()


@pytest.mark.slow
def test_every_decision_lands_once_even_after_a_crash(served_repo: ServedRepo, tmp_path: Path) -> None:
    settings = served_repo.settings.model_copy(update={"decision_stream": "test:worker", "worker_group": "g1"})
    client = redis.Redis.from_url(served_repo.redis.url)
    client.delete("test:worker")
    transactions = _latest_transactions(served_repo, 60)
    with TestClient(create_app(settings)) as c:
        for t in transactions[:40]:
            assert c.post("/score", json=t).status_code == 200
        assert c.get("/ready").status_code == 200  # sends the decision log: the batch below is another entry
        assert c.post("/score/batch", json={"transactions": transactions[40:]}).status_code == 200
    out = tmp_path / "predictions"

    # The first worker reads an entry, writes it, and dies before acknowledging.
    crashed = PredictionLogWorker(client, "test:worker", "g1", out, batch=1)
    crashed.ensure_group()
    original_xack = client.xack
    client.xack = lambda *a, **k: (_ for _ in ()).throw(redis.ConnectionError("crash"))  # type: ignore[method-assign]
    with pytest.raises(redis.ConnectionError):
        crashed.step(block_ms=100)
    client.xack = original_xack  # type: ignore[method-assign]
    assert 0 < len(_logged(out)) < len(transactions)

    # A new worker of the same consumer picks up the unacknowledged entries and the rest.
    worker = PredictionLogWorker(client, "test:worker", "g1", out, batch=25)
    while worker.step(block_ms=100):
        pass
    logged = _logged(out)
    assert sorted(logged["txn_id"]) == sorted(t["txn_id"] for t in transactions)
    assert logged["txn_id"].is_unique
    assert client.xpending("test:worker", "g1")["pending"] == 0
    row = logged.iloc[0]
    assert row["model_version"] == served_repo.champion
    assert {"features", "risk_score", "recommendation", "latency_ms", "event_timestamp"} <= set(logged.columns)


def _record(txn_id: str, day: str) -> dict:
    return {
        "txn_id": txn_id, "risk_score": 0.1, "recommendation": "approve", "model_version": 1,
        "reasons": [], "missing_features": [], "stale_features": [], "unknown_entities": [],
        "features": {"amount": 1.0}, "event_timestamp": f"{day}T12:00:00+00:00",
        "logged_at": f"{day}T12:00:01+00:00", "latency_ms": 1.0,
    }  # fmt: skip


def test_entries_of_many_decisions_and_older_single_ones_land_once_by_day(redis_url: str, tmp_path: Path) -> None:
    client = redis.Redis.from_url(redis_url)
    stream = "test:worker:entries"
    client.delete(stream)
    try:
        client.xadd(stream, {"decision": json.dumps(_record("old-1", "2026-10-01"))})
        days = ["2026-10-01", "2026-10-02"] * 60
        batch = [_record(f"new-{i}", day) for i, day in enumerate(days)]
        for at in range(0, len(batch), PER_ENTRY):
            client.xadd(stream, {"decisions": json.dumps(batch[at : at + PER_ENTRY])})  # vectors as objects
        rows = [{**_record(f"column-{i}", "2026-10-01"), "features": [float(i)]} for i in range(4)]
        shared = {"logged_at": rows[0].pop("logged_at"), "latency_ms": rows[0].pop("latency_ms")}
        columns = {key: [r[key] for r in rows] for key in rows[0]}  # as the service logs now
        client.xadd(stream, {"features": '["amount"]', "columns": json.dumps(columns), "batch": json.dumps(shared)})
        batch += rows
        out = tmp_path / "predictions"
        worker = PredictionLogWorker(client, stream, "g-entries", out, batch=1)
        worker.ensure_group()
        while worker.step(block_ms=100):
            pass
        again = PredictionLogWorker(client, stream, "g-entries", out, batch=1)
        client.xgroup_setid(stream, "g-entries", id="0")  # as if nothing had been acknowledged
        while again.step(block_ms=100):
            pass
        logged = _logged(out)
        assert sorted(logged["txn_id"]) == sorted(["old-1", *(r["txn_id"] for r in batch)])
        assert logged["txn_id"].is_unique
        assert {p.parent.name for p in out.glob("day=*/*.parquet")} == {"day=2026-10-01", "day=2026-10-02"}
        vectors = dict(zip(logged["txn_id"], logged["features"].map(json.loads), strict=True))
        assert vectors["new-0"] == {"amount": 1.0}
        assert vectors["column-3"] == {"amount": 3.0}
        assert logged.set_index("txn_id").loc["column-3", "latency_ms"] == 1.0
    finally:
        client.delete(stream)
