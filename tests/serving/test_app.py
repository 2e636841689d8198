"""The scoring service against a real Redis, a real MLflow store and Feast's online data."""

from __future__ import annotations

import gc
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from feature_repo.windows import service_windows
from serving.app import create_app
from serving.pipeline_calls import Replies
from serving.realtime import PER_CALL
from serving.schemas import BatchResponse, ScoreResponse
from serving.scoring import PIPELINE_CHUNK, REASON_MIN_DROP, _reason_text
from skewless.store import feature_service, open_store
from tests.serving.conftest import ServedRepo

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def client(served_repo: ServedRepo) -> Iterator[TestClient]:
    with TestClient(create_app(served_repo.settings)) as c:
        yield c


def _latest_transactions(repo: ServedRepo, n: int) -> list[dict[str, Any]]:
    files = sorted((repo.root / "data" / "raw" / "transactions").glob("*.parquet"))
    frame = pd.read_parquet(files[-1]).tail(n)
    now = datetime.now(UTC).isoformat()
    return [
        {
            "txn_id": f"t{row.txn_id}",
            "user_id": int(row.user_id),
            "device_id": int(row.device_id),
            "merchant_id": int(row.merchant_id),
            "amount": float(row.amount),
            "currency": row.currency,
            "country": row.country,
            "channel": row.channel,
            "timestamp": now,
        }
        for row in frame.itertuples()
    ]


def test_score_answers_with_the_contract(client: TestClient, served_repo: ServedRepo) -> None:
    txn = _latest_transactions(served_repo, 1)[0]
    reply = client.post("/score", json=txn)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    ScoreResponse.model_validate(body, strict=True)  # the answer is serialized without the model: check it here
    assert set(body) == set(ScoreResponse.model_fields)
    assert body["txn_id"] == txn["txn_id"]
    assert 0 <= body["risk_score"] <= 1
    assert body["recommendation"] in {"block", "review", "approve"}
    assert body["model_version"] == served_repo.champion
    assert body["unknown_entities"] == []


def test_served_features_and_scores_equal_feast_and_the_model_offline(
    client: TestClient, served_repo: ServedRepo
) -> None:
    """What the service reads equals Feast's get_online_features; its score equals predict_proba offline."""
    transactions = _latest_transactions(served_repo, 20)
    batch = client.post("/score/batch", json={"transactions": transactions}).json()
    BatchResponse.model_validate(batch, strict=True)
    replies = batch["results"]
    app = client.app
    decisions = app.state.service.scorer.score(  # type: ignore[attr-defined]
        [{**t, "event_timestamp": pd.Timestamp(t["timestamp"])} for t in transactions]
    )
    # One at a time the reads take the other path (an HMGET per key rather than one script call per entity
    # type); retries of recorded transactions, so the windowed features are answered as of the first time.
    for t, decision in list(zip(transactions, decisions, strict=True))[:3]:
        alone = app.state.service.scorer.score([{**t, "event_timestamp": pd.Timestamp(t["timestamp"])}])  # type: ignore[attr-defined]
        assert alone[0].features == decision.features
        assert alone[0].risk_score == pytest.approx(decision.risk_score, abs=1e-12)
    store = open_store(served_repo.root)
    rows = [
        {**{k: t[k] for k in ("user_id", "device_id", "merchant_id", "amount", "country", "channel")},
         "event_timestamp": pd.Timestamp(t["timestamp"])}
        for t in transactions
    ]  # fmt: skip
    service = feature_service(store, served_repo.settings.feature_service)
    feast_online = store.get_online_features(features=service, entity_rows=rows).to_df()
    # Windowed features are computed at score time, not held by Feast's online store: they are checked against
    # get_historical_features by the skew test; here they come from the decisions.
    windowed = {f.name for w in service_windows(store, service) for f in w.features}
    assert windowed, "the default feature service has real-time features"
    for name in windowed:
        feast_online[name] = [d.features[name] for d in decisions]
    model = mlflow.sklearn.load_model(f"models:/{served_repo.settings.model_name}/{served_repo.champion}")
    offline = model.predict_proba(feast_online[list(model.feature_names_in_)])[:, 1]
    for i, (reply, decision) in enumerate(zip(replies, decisions, strict=True)):
        assert reply["risk_score"] == pytest.approx(decision.risk_score, abs=1e-12)
        assert reply["risk_score"] == pytest.approx(offline[i], abs=1e-9)
        for name, value in decision.features.items():
            expected = feast_online.at[i, name]
            if value is None:
                assert pd.isna(expected), f"{name}: served missing, Feast has {expected}"
            else:
                assert value == pytest.approx(expected) if isinstance(value, float) else value == expected, name


def test_unknown_entities_are_scored_with_defaults_and_flagged(client: TestClient, served_repo: ServedRepo) -> None:
    txn = {**_latest_transactions(served_repo, 1)[0], "user_id": 9_999_999, "device_id": 9_999_999}
    body = client.post("/score", json=txn).json()
    assert set(body["unknown_entities"]) == {"user", "device"}
    assert "txn_count_7d" in body["missing_features"]
    assert 0 <= body["risk_score"] <= 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"amount": -1}, "amount"),
        ({"currency": "XXX"}, "currency"),
        ({"channel": "fax"}, "channel"),
        ({"user_id": "abc"}, "user_id"),
        ({"timestamp": "2026-11-03T10:00:00"}, "timestamp"),  # no time zone
        ({"timestamp": (datetime.now(UTC) + timedelta(days=2)).isoformat()}, "timestamp"),
    ],
)
def test_bad_fields_get_422_naming_the_field(
    client: TestClient, served_repo: ServedRepo, change: dict, field: str
) -> None:
    txn = {**_latest_transactions(served_repo, 1)[0], **change}
    reply = client.post("/score", json=txn)
    assert reply.status_code == 422
    assert field in [str(part) for error in reply.json()["detail"] for part in error["loc"]]


def test_missing_field_and_malformed_json_get_422(client: TestClient, served_repo: ServedRepo) -> None:
    txn = _latest_transactions(served_repo, 1)[0]
    del txn["amount"]
    reply = client.post("/score", json=txn)
    assert reply.status_code == 422 and "amount" in json.dumps(reply.json())
    reply = client.post("/score", content=b'{"txn_id": "x", ', headers={"content-type": "application/json"})
    assert reply.status_code == 422


def test_errors_read_as_fastapis_and_oversized_bodies_are_refused(client: TestClient, served_repo: ServedRepo) -> None:
    """The scoring paths are served in front of FastAPI's routing: their errors keep FastAPI's shape."""
    txn = _latest_transactions(served_repo, 1)[0]
    reply = client.post("/score", content=b'{"txn_id": "x", ', headers={"content-type": "application/json"})
    assert reply.status_code == 422 and reply.json()["detail"][0]["type"] == "json_invalid"
    reply = client.post("/score", json={**txn, "amount": -1})
    (error,) = reply.json()["detail"]
    assert reply.status_code == 422 and error["loc"] == ["body", "amount"] and error["type"] == "greater_than_equal"
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    batch = [txn, txn, {**txn, "timestamp": future}, txn]
    reply = client.post("/score/batch", json={"transactions": batch})
    assert reply.status_code == 422 and reply.json()["detail"][0]["loc"] == ["body", "transactions", 2, "timestamp"]
    reply = client.post("/score", json={**txn, "padding": "x" * 70_000})
    assert reply.status_code == 413 and "bytes" in reply.json()["detail"]
    assert client.get("/score").status_code == 405  # other methods go on to FastAPI
    schema = client.get("/openapi.json").json()
    assert schema["paths"]["/score"]["post"]["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Transaction"
    }


def test_fastapis_own_scoring_routes_answer_the_same(client: TestClient, served_repo: ServedRepo) -> None:
    """The routes that document the scoring paths would answer as the front does, were a request routed there."""
    from serving.schemas import BatchRequest, Transaction

    service = client.app.state.service  # type: ignore[attr-defined]
    routes = {route.path: route.endpoint for route in client.app.routes if hasattr(route, "endpoint")}  # type: ignore[attr-defined]
    txn = _latest_transactions(served_repo, 1)[0]
    front = client.post("/score", json={**txn, "txn_id": "front"}).json()
    fastapi_reply = client.portal.call(
        routes["/score"], Transaction.model_validate({**txn, "txn_id": "routed"}), service
    )  # type: ignore[union-attr]
    routed = json.loads(fastapi_reply.body)
    ScoreResponse.model_validate(routed, strict=True)
    assert routed["txn_id"] == "routed" and set(routed) == set(front)
    assert routed["model_version"] == front["model_version"] == served_repo.champion
    late = Transaction.model_validate({**txn, "timestamp": (datetime.now(UTC) + timedelta(days=1)).isoformat()})
    refused = client.portal.call(routes["/score/batch"], BatchRequest(transactions=[late]), service)  # type: ignore[union-attr]
    assert refused.status_code == 422 and json.loads(refused.body)["detail"][0]["loc"][-1] == "timestamp"


def test_batch_limits(client: TestClient, served_repo: ServedRepo) -> None:
    txn = _latest_transactions(served_repo, 1)[0]
    many = [{**txn, "txn_id": f"b{i}"} for i in range(1000)]
    reply = client.post("/score/batch", json={"transactions": many})
    assert reply.status_code == 200
    assert len(reply.json()["results"]) == 1000
    reply = client.post("/score/batch", json={"transactions": [*many, txn]})
    assert reply.status_code == 422
    assert "at most 1000" in reply.text
    assert client.post("/score/batch", json={"transactions": []}).status_code == 422


def test_health_ready_metrics_and_docs(client: TestClient, served_repo: ServedRepo) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    txn = {**_latest_transactions(served_repo, 1)[0], "txn_id": "metrics"}
    assert client.post("/score", json=txn).status_code == 200
    text = client.get("/metrics").text
    for name in (
        "skewless_request_duration_seconds",
        "skewless_score",
        "skewless_recommendations_total",
        "skewless_model_version",
    ):
        assert name in text
    # The transaction scored above recorded how old its stored features were.
    assert 'skewless_online_feature_age_seconds_count{feature_view="user_profile"}' in text
    assert client.get("/docs").status_code == 200


def test_redis_outage_gives_503_and_recovers_by_itself(served_repo: ServedRepo) -> None:
    with TestClient(create_app(served_repo.settings)) as c:
        txn = _latest_transactions(served_repo, 1)[0]
        assert c.post("/score", json=txn).status_code == 200
        served_repo.redis.stop()
        try:
            down = c.post("/score", json=txn)
            assert down.status_code == 503
            assert "Redis" in down.json()["detail"]
            ready = c.get("/ready")
            assert ready.status_code == 503 and ready.json()["redis"].startswith("unavailable")
        finally:
            served_repo.redis.start()
            served_repo.materialize()
        deadline = time.monotonic() + 15
        while c.get("/ready").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert c.post("/score", json=txn).status_code == 200


def test_the_service_sets_its_collection_threshold_and_gives_back_the_old_one(served_repo: ServedRepo) -> None:
    before = gc.get_threshold()
    settings = served_repo.settings.model_copy(update={"gc_young_threshold": 4_321})
    with TestClient(create_app(settings)) as c:
        assert gc.get_threshold() == (4_321, *before[1:])
        assert c.post("/score", json=_latest_transactions(served_repo, 1)[0]).status_code == 200
    assert gc.get_threshold() == before


def test_fail_policy_answers_when_redis_is_down(served_repo: ServedRepo) -> None:
    settings = served_repo.settings.model_copy(update={"fail_policy": "review"})
    with TestClient(create_app(settings)) as c:
        txn = _latest_transactions(served_repo, 1)[0]
        served_repo.redis.stop()
        try:
            reply = c.post("/score", json=txn)
        finally:
            served_repo.redis.start()
            served_repo.materialize()
        assert reply.status_code == 200
        body = reply.json()
        assert body["recommendation"] == "review" and body["risk_score"] is None
        assert body["policy"].startswith("fail policy review")


def test_reasons_are_the_features_whose_median_lowers_the_score_most(
    client: TestClient, served_repo: ServedRepo
) -> None:
    """Reasons match the brute-force definition on the registered Pipeline: each numeric feature of the served
    vector set to its training median alone, the biggest drops first (the service skips features already there)."""
    service = client.app.state.service  # type: ignore[attr-defined]
    scorer, model = service.scorer, service.models.current
    rows = []
    for i, t in enumerate(_latest_transactions(served_repo, 12)):
        odd = {"device_id": 10**9 + i, "country": "NG", "channel": "web", "amount": t["amount"] * 40}
        rows.append({**t, **odd, "txn_id": f"{t['txn_id']}-reasons", "event_timestamp": pd.Timestamp(t["timestamp"])})
    columns, stored = scorer.features(rows, model)
    decisions = scorer.decisions(rows, columns, stored, model)
    flagged = [d for d in decisions if d.recommendation != "approve"]
    assert flagged, "takeover-like payments must be flagged"
    descriptions = scorer._service_parts(model.feature_service).descriptions
    names = [n for n in model.features if n in model.medians]
    for decision in flagged:
        served = pd.DataFrame([decision.features], dtype="object")[model.features]
        base = model.pipeline.predict_proba(served)[0, 1]
        varied = pd.concat([served.assign(**{name: model.medians[name]}) for name in names], ignore_index=True)
        drops = base - model.pipeline.predict_proba(varied)[:, 1]
        order = [k for k in np.argsort(-drops, kind="stable") if drops[k] > REASON_MIN_DROP][
            : served_repo.settings.reasons_count
        ]
        expected = [
            _reason_text(names[k], decision.features[names[k]], model.medians[names[k]], descriptions) for k in order
        ]
        assert decision.reasons == expected


@pytest.mark.parametrize("answered", [None, False, True], ids=["as-answered", "one-call-each", "whole-chunks"])
def test_a_large_batch_decided_as_replies_arrive_equals_the_whole_batch_at_once(
    client: TestClient, served_repo: ServedRepo, monkeypatch: pytest.MonkeyPatch, answered: bool | None
) -> None:
    """Past PIPELINE_CHUNK transactions the scorer decides what Redis has answered (in time order) while Redis
    computes the rest: one script call's transactions when the next reply is not there yet, up to a chunk when it
    is. The decisions are the ones of the whole batch at once (the second pass is a retry: same windowed values)."""
    service = client.app.state.service  # type: ignore[attr-defined]
    scorer, model = service.scorer, service.models.current
    if answered is not None:  # as if Redis were always behind the model, or always ahead of it
        monkeypatch.setattr(Replies, "ready", lambda self: answered and self.left > 0)
    chunks: list[int] = []
    decide = scorer.decisions
    monkeypatch.setattr(scorer, "decisions", lambda rows, *rest: chunks.append(len(rows)) or decide(rows, *rest))
    base = _latest_transactions(served_repo, 150)
    start = pd.Timestamp(datetime.now(UTC)) - pd.Timedelta(minutes=30)
    rows = [
        {**t, "txn_id": f"{t['txn_id']}-pipe-{k}", "event_timestamp": start + pd.Timedelta(seconds=(7 * i + k) % 1700)}
        for k in range(4)
        for i, t in enumerate(base)
    ]  # 600 payments, four per user, out of time order
    assert len(rows) > 2 * PIPELINE_CHUNK
    pipelined, seconds = scorer.score_timed(rows, model)
    assert seconds > 0 and sum(chunks) == len(rows) and max(chunks) <= PIPELINE_CHUNK
    if answered is False:
        assert chunks == [PER_CALL] * (len(rows) // PER_CALL) + [len(rows) % PER_CALL]
    if answered:
        assert chunks == [PIPELINE_CHUNK] * (len(rows) // PIPELINE_CHUNK) + [len(rows) % PIPELINE_CHUNK]
    chunks.clear()
    columns, stored = scorer.features(rows, model)
    at_once = scorer.decisions(rows, columns, stored, model)
    assert [d.txn_id for d in pipelined] == [r["txn_id"] for r in rows]
    for got, want in zip(pipelined, at_once, strict=True):
        assert (got.risk_score, got.recommendation, got.reasons) == (want.risk_score, want.recommendation, want.reasons)
        assert got.features == want.features and got.missing_features == want.missing_features
    assert any(d.features["txn_count_1h"] >= 2 for d in pipelined), "the users' earlier payments are in their windows"


def test_remembered_entity_reads_follow_new_writes_and_the_ttl(client: TestClient, served_repo: ServedRepo) -> None:
    """An entity's decoded reply is reused only while Redis answers the same bytes and its views are fresh."""
    service = client.app.state.service  # type: ignore[attr-defined]
    model = service.models.current
    online = service.scorer._service_parts(model.feature_service).online
    store = open_store(served_repo.root)
    user, written = 8_888_001, pd.Timestamp(datetime.now(UTC)) - pd.Timedelta(hours=1)
    row = {"user_id": user, "device_id": 1, "merchant_id": 1}

    def write(age: int) -> None:
        profile = {"age": age, "kyc_level": 2, "home_country": "DE", "account_age_days": 10.0, "total_spend": 5.0}
        frame = pd.DataFrame(
            [{"user_id": user, "event_timestamp": written, "created_timestamp": written, **profile, "orders": 1}]
        )
        store.write_to_online_store("user_profile", frame)

    write(30)
    assert online.read([row]).columns["age"] == [30]
    assert online.read([row]).columns["age"] == [30]  # answered from what was remembered
    written += pd.Timedelta(seconds=1)
    write(31)  # a materialization rewrote the row: new bytes, decoded again
    again = online.read([row])
    assert again.columns["age"] == [31] and "age" not in again.rows[0].stale
    ttl = store.get_feature_view("user_profile").ttl
    later = online.read([row], now=datetime.now(UTC) + ttl)  # the same bytes, read past the view's TTL
    assert later.columns["age"] == [None] and "age" in later.rows[0].stale
    assert later.rows[0].ages_seconds["user_profile"] > ttl.total_seconds()
