"""`skewless skew` on prediction logs of served velocity features: zero in order, the late event found out of order."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis

from feature_repo.aggregations import device_velocity, user_velocity
from serving.realtime import RealtimeAggregates
from serving.worker import to_table
from skewless.cli import main
from skewless.store import apply_definitions, open_store
from tests.feature_repo.windowed_repo import SCENARIO, SCORED_BEFORE_LATE, Txn, write_transactions

pytestmark = pytest.mark.integration
SERVICE = "velocity_only"


@pytest.fixture
def realtime(repo_root: Path, redis_url: str):  # type: ignore[no-untyped-def]
    from feast import FeatureService

    write_transactions(repo_root, SCENARIO)
    store = open_store(repo_root)
    apply_definitions(store)
    store.apply([FeatureService(name=SERVICE, features=[user_velocity, device_velocity])])
    aggregates = RealtimeAggregates.for_service(redis.Redis.from_url(redis_url), store, SERVICE)
    aggregates.reset()
    yield aggregates
    aggregates.reset()


def _log(repo_root: Path, txns: list[Txn], served: list[dict]) -> None:
    """Decisions as `skewless worker` writes them, holding the served vectors."""
    payloads = [
        {
            "txn_id": str(t.txn_id),
            "risk_score": 0.1,
            "recommendation": "approve",
            "model_version": 1,
            "reasons": [],
            "missing_features": [],
            "stale_features": [],
            "unknown_entities": [],
            "features": features,
            **{k: v for k, v in t.row().items() if k not in ("txn_id", "event_timestamp")},
            "currency": "USD",
            "country": "US",
            "channel": "web",
            "event_timestamp": t.event_timestamp.isoformat(),
            "logged_at": datetime.now(UTC).isoformat(),
            "latency_ms": 1.0,
        }
        for t, features in zip(txns, served, strict=True)
    ]
    folder = repo_root / "data" / "predictions" / "day=2026-11-02"
    folder.mkdir(parents=True, exist_ok=True)
    to_table(payloads).to_pandas().to_parquet(folder / "1-0_1-9.parquet", index=False)


def test_served_in_order_rebuilds_with_zero_mismatches(realtime, repo_root, capsys) -> None:  # type: ignore[no-untyped-def]
    in_order = sorted(SCENARIO, key=lambda t: t.event_timestamp)
    _log(repo_root, in_order, [realtime.record([t.row()])[0] for t in in_order])
    out = repo_root / "skew.json"
    assert main(["skew", "--feature-service", SERVICE, "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["decisions"] == len(SCENARIO) and report["mismatches"] == 0
    assert {f["name"] for f in report["features"]} == set(realtime.feature_names)
    assert all(f["compared"] == len(SCENARIO) for f in report["features"])
    assert "0 mismatches" in capsys.readouterr().out


def test_a_decision_scored_before_a_late_event_is_reported(realtime, repo_root, capsys) -> None:  # type: ignore[no-untyped-def]
    _log(repo_root, SCENARIO, [realtime.record([t.row()])[0] for t in SCENARIO])
    out = repo_root / "skew.json"
    assert main(["skew", "--feature-service", SERVICE, "--out", str(out)]) == 1
    report = json.loads(out.read_text())
    ((row, late),) = SCORED_BEFORE_LATE.items()
    mismatched = {f["name"]: f for f in report["features"] if f["mismatches"]}
    assert set(mismatched) == set(late)
    assert mismatched["txn_count_1h"]["examples"] == [{"txn_id": str(SCENARIO[row].txn_id), "served": 4, "rebuilt": 5}]
    assert mismatched["amount_sum_1h"]["max_abs_diff"] == pytest.approx(3.0)
    assert "skew above tolerance" in capsys.readouterr().out
    assert main(["skew", "--feature-service", SERVICE, "--out", str(out), "--max-mismatch-rate", "0.2"]) == 0


def test_no_logs_and_nothing_since(realtime, repo_root, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["skew", "--feature-service", SERVICE]) == 2
    assert "no prediction logs under" in capsys.readouterr().err
    _log(repo_root, SCENARIO[:1], [realtime.record([SCENARIO[0].row()])[0]])
    assert main(["skew", "--feature-service", SERVICE, "--since", "2026-11-03"]) == 2
    assert "from 2026-11-03T00:00:00+00:00 on" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["skew", "--since", "yesterday"])
