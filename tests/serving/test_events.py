"""The decision log against a real Redis: entries of up to PER_ENTRY decisions, and a buffer while Redis is away."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
import redis

from serving import events
from serving.events import PER_ENTRY, DecisionLog, decisions_of
from serving.scoring import Decision
from tests.serving.conftest import RedisProcess, _free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def stream(redis_url: str, request: pytest.FixtureRequest) -> Iterator[tuple[redis.Redis, str]]:
    """A client and a stream of the test's own, empty before and deleted after."""
    client = redis.Redis.from_url(redis_url)
    name = f"test:events:{request.node.name}"
    client.delete(name)
    yield client, name
    client.delete(name)
    client.close()


NAMES = ["amount"]  # the model's feature list, one object, which all its decisions share


def _batch(n: int, start: int = 0) -> tuple[list[Decision], list[dict]]:
    decisions = [
        Decision(f"t{i}", 0.25, "approve", 3, [], [], [], [], NAMES, (float(i),), feature_ages={"v": 1.0})
        for i in range(start, start + n)
    ]
    when = datetime(2026, 10, 1, 12, tzinfo=UTC)
    transactions = [
        {"user_id": i, "device_id": 7, "merchant_id": 9, "amount": float(i), "currency": "EUR", "country": "DE",
         "channel": "web", "event_timestamp": when}
        for i in range(start, start + n)
    ]  # fmt: skip
    return decisions, transactions


def test_a_batch_is_logged_in_entries_of_at_most_per_entry_decisions(stream: tuple[redis.Redis, str]) -> None:
    client, stream = stream
    log = DecisionLog(client, stream)
    log.append(*_batch(2 * PER_ENTRY + 5), 0.004)
    entries = client.xrange(stream)
    assert [len(decisions_of(fields)) for _, fields in entries] == [PER_ENTRY, PER_ENTRY, 5]
    logged = [d for _, fields in entries for d in decisions_of(fields)]
    assert [d["txn_id"] for d in logged] == [f"t{i}" for i in range(2 * PER_ENTRY + 5)]
    first = logged[0]
    assert first["latency_ms"] == pytest.approx(4.0) and first["event_timestamp"] == "2026-10-01T12:00:00Z"
    assert first["features"] == {"amount": 0.0} and "feature_ages" not in first
    assert (first["user_id"], first["country"], first["model_version"]) == (0, "DE", 3)
    assert entries[0][1][b"features"] == b'["amount"]', "the vectors' names, once per entry"


def test_batches_handed_between_two_sends_share_entries_and_keep_their_own_latency(
    stream: tuple[redis.Redis, str],
) -> None:
    client, stream = stream
    log = DecisionLog(client, stream, interval_s=3600)  # the sender sends only when stopped
    log.start()
    for k, size in enumerate((3, 1, PER_ENTRY)):
        log.append(*_batch(size, start=10 * k), 0.001 * (k + 1))
    log.stop()
    entries = [decisions_of(fields) for _, fields in client.xrange(stream)]
    assert [len(entry) for entry in entries] == [4, PER_ENTRY]  # not one entry per batch handed; batches whole
    logged = [d for entry in entries for d in entry]
    assert [d["txn_id"] for d in logged[:5]] == ["t0", "t1", "t2", "t10", "t20"]
    assert [d["latency_ms"] for d in logged[:5]] == pytest.approx([1.0, 1.0, 1.0, 2.0, 3.0])
    assert all(d["logged_at"] for d in logged) and logged[-1]["latency_ms"] == pytest.approx(3.0)


def test_the_loop_serializes_one_batch_at_a_time_and_the_entries_are_those_the_sender_makes(
    stream: tuple[redis.Redis, str],
) -> None:
    client, stream = stream
    seen: list[list[str]] = []
    log = DecisionLog(client, stream, interval_s=3600, observe=lambda ds: seen.append([d.txn_id for d in ds]))
    log.start()
    batches = [_batch(size, start=10 * k) for k, size in enumerate((3, 2, 4, 1))]
    for decisions, transactions in batches[:3]:
        log.append(decisions, transactions, 0.001)
    assert log.serialize_next() is True  # the oldest batch, its metrics recorded; two more waiting
    assert seen == [["t0", "t1", "t2"]] and log.buffered == 9 and client.xlen(stream) == 0
    with log._lock:  # the sender at work: the loop does not wait for it
        assert log.serialize_next() is False
    assert log.serialize_next() is True and log.serialize_next() is False  # the third was the last
    assert log.serialize_next() is False and seen[1:] == [["t10", "t11"], ["t20", "t21", "t22", "t23"]]
    log.append(*batches[3], 0.001)
    log.stop()  # the sender serializes what is left and sends it all
    assert seen[-1] == ["t30"] and log.buffered == 0
    entries = [decisions_of(fields) for _, fields in client.xrange(stream)]
    assert [len(entry) for entry in entries] == [10]  # one entry, the batches whole and in order

    client.delete(stream)
    direct = DecisionLog(client, stream)  # no sender thread: each batch serialized and sent as it is handed
    for decisions, transactions in batches:
        direct.append(decisions, transactions, 0.001)
    sent = [d for _, fields in client.xrange(stream) for d in decisions_of(fields)]
    for d in [*sent, *entries[0]]:
        assert d.pop("logged_at")
    assert entries[0] == sent


def test_a_large_batch_is_serialized_per_entry_decisions_at_a_time_and_logged_as_the_sender_would(
    stream: tuple[redis.Redis, str],
) -> None:
    client, stream = stream
    seen: list[int] = []
    log = DecisionLog(client, stream, interval_s=3600, observe=lambda ds: seen.append(len(ds)))
    log.start()
    n = 2 * PER_ENTRY + 5
    log.append(*_batch(n), 0.004)
    log.append(*_batch(3, start=1000), 0.002)
    # Each call a part of the oldest batch, its metrics recorded with it; what is left stays first in line.
    assert [log.serialize_next() for _ in range(4)] == [True, True, True, False]
    assert seen == [PER_ENTRY, PER_ENTRY, 5, 3] and log.buffered == n + 3
    assert log.serialize_next() is False and client.xlen(stream) == 0
    log.stop()
    entries = [decisions_of(fields) for _, fields in client.xrange(stream)]
    assert [len(entry) for entry in entries] == [PER_ENTRY, PER_ENTRY, 8]
    logged = [d for entry in entries for d in entry]
    assert [d["txn_id"] for d in logged] == [f"t{i}" for i in range(n)] + ["t1000", "t1001", "t1002"]
    assert [d["latency_ms"] for d in logged[-4:]] == pytest.approx([4.0, 2.0, 2.0, 2.0])
    assert [d["features"]["amount"] for d in logged[:n]] == [float(i) for i in range(n)]


def test_a_batch_the_loop_cannot_serialize_is_reported_and_the_next_ones_are_logged(
    stream: tuple[redis.Redis, str], caplog: pytest.LogCaptureFixture
) -> None:
    client, stream = stream
    log = DecisionLog(client, stream, interval_s=3600)
    log.start()
    broken, transactions = _batch(2)
    del transactions[1]["currency"]  # what no request gets past validation without: the log cannot write it
    log.append(broken, transactions, 0.001)
    log.append(*_batch(2, start=2), 0.001)
    assert log.serialize_next() is False  # no exception into the scoring path that called it
    assert "2 decisions could not be serialized" in caplog.text
    assert log.serialize_next() is False and log.buffered == 2
    log.append(broken, transactions, 0.001)  # the sender meets one too: reported, and the rest still goes out
    log.append(*_batch(1, start=4), 0.001)
    log.stop()
    assert caplog.text.count("2 decisions could not be serialized") == 2
    assert [d["txn_id"] for _, f in client.xrange(stream) for d in decisions_of(f)] == ["t2", "t3", "t4"]


def test_the_sender_records_the_decisions_metrics_and_a_failure_there_loses_no_decision(
    stream: tuple[redis.Redis, str],
) -> None:
    client, stream = stream
    seen: list[list[str]] = []

    def observe(decisions: list[Decision]) -> None:
        seen.append([d.txn_id for d in decisions])
        if len(seen) == 2:
            raise RuntimeError("a metric went wrong")

    log = DecisionLog(client, stream, interval_s=3600, observe=observe)
    log.start()
    log.append(*_batch(2), 0.001)
    log.append(*_batch(1, start=2), 0.001)
    log.account()  # what /metrics does: serialized and counted, not yet sent
    assert seen == [["t0", "t1", "t2"]] and client.xlen(stream) == 0
    log.append(*_batch(2, start=3), 0.001)
    log.stop()
    assert seen == [["t0", "t1", "t2"], ["t3", "t4"]]
    logged = [d["txn_id"] for _, f in client.xrange(stream) for d in decisions_of(f)]
    assert logged == [f"t{i}" for i in range(5)]


def test_decisions_of_two_models_in_one_batch_go_to_entries_of_their_own(stream: tuple[redis.Redis, str]) -> None:
    """A canary decides one batch with two models, whose vectors name different features."""
    client, stream = stream
    decisions, transactions = _batch(6)
    decisions[0].vector = (float("nan"),)  # a missing on-demand value, as numpy gives it: null, as None is
    challenger = ["amount", "age"]
    for d in decisions[1::2]:
        d.model_version, d.feature_names, d.vector = 4, challenger, (d.vector[0], None)
    DecisionLog(client, stream).append(decisions, transactions, 0.001)
    entries = [decisions_of(fields) for _, fields in client.xrange(stream)]
    assert [[d["txn_id"] for d in entry] for entry in entries] == [["t0", "t2", "t4"], ["t1", "t3", "t5"]]
    assert entries[0][0]["features"] == {"amount": None}
    assert entries[1][0]["features"] == {"amount": 1.0, "age": None} and entries[1][0]["model_version"] == 4
    assert entries[0][2]["features"] == {"amount": 4.0}
    assert b"NaN" not in client.xrange(stream)[0][1][b"columns"]


def test_decisions_wait_while_redis_is_away_and_the_oldest_go_past_the_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = RedisProcess(_free_port())
    server.start()
    client = redis.Redis.from_url(server.url, socket_connect_timeout=0.3, socket_timeout=0.5)
    log = DecisionLog(client, "test:events:away")
    monkeypatch.setattr(events, "MAX_BUFFERED", 250)
    try:
        server.stop()
        log.append(*_batch(150), 0.001)  # no sender thread: flushed at once, and kept
        log.append(*_batch(150, start=150), 0.001)
        assert log.buffered == 200  # 300 handed; the oldest whole entry (100) dropped past 250
        server.start()
        assert log.flush()
        logged = [d["txn_id"] for _, f in client.xrange("test:events:away") for d in decisions_of(f)]
        assert logged == [f"t{i}" for i in range(100, 300)] and log.buffered == 0
    finally:
        server.stop()


def _logged(client: redis.Redis, stream: str) -> list[str]:
    return [d["txn_id"] for _, f in client.xrange(stream) for d in decisions_of(f)]


def _until(check: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "the sender did not get there in time"
        time.sleep(0.01)


def test_the_sender_leaves_what_was_handed_while_requests_are_answered_and_logs_it_once_none_are(
    stream: tuple[redis.Redis, str],
) -> None:
    client, stream = stream
    answering = [True]
    seen: list[int] = []
    log = DecisionLog(
        client, stream, interval_s=0.01, observe=lambda ds: seen.append(len(ds)), busy=lambda: answering[0],
        defer_s=3600, defer_max=1_000,
    )  # fmt: skip
    log.start()
    try:
        log.append(*_batch(2 * PER_ENTRY + 5), 0.004)
        time.sleep(0.2)  # twenty of the sender's turns
        assert client.xlen(stream) == 0 and log.buffered == 2 * PER_ENTRY + 5 and seen == []
        answering[0] = False
        _until(lambda: len(_logged(client, stream)) == 2 * PER_ENTRY + 5)
        assert _logged(client, stream) == [f"t{i}" for i in range(2 * PER_ENTRY + 5)]
        _until(lambda: log.buffered == 0)  # counted down once Redis has answered the send
        assert seen == [PER_ENTRY, PER_ENTRY, 5], "metrics recorded as each piece is serialized"
    finally:
        log.stop()


def test_while_requests_keep_coming_the_sender_logs_what_is_past_the_count_or_the_age_bound(
    stream: tuple[redis.Redis, str],
) -> None:
    client, stream = stream
    log = DecisionLog(client, stream, interval_s=0.01, busy=lambda: True, defer_s=3600, defer_max=PER_ENTRY)
    log.start()
    try:
        log.append(*_batch(PER_ENTRY), 0.004)
        log.append(*_batch(PER_ENTRY + 50, start=PER_ENTRY), 0.004)
        # 250 handed, at most 100 may wait: the oldest pieces of 100 go until 100 or fewer are left, the rest waits.
        _until(lambda: len(_logged(client, stream)) == 2 * PER_ENTRY)
        time.sleep(0.1)
        assert _logged(client, stream) == [f"t{i}" for i in range(2 * PER_ENTRY)] and log.buffered == 50
    finally:
        log.stop()
    assert _logged(client, stream) == [f"t{i}" for i in range(2 * PER_ENTRY + 50)], "stopping sends the rest"

    client.delete(stream)
    aged = DecisionLog(client, stream, interval_s=0.01, busy=lambda: True, defer_s=0.3, defer_max=10_000)
    aged.start()
    try:
        handed = time.monotonic()
        aged.append(*_batch(5), 0.004)
        _until(lambda: len(_logged(client, stream)) == 5)
        assert time.monotonic() - handed >= 0.3 and _logged(client, stream) == [f"t{i}" for i in range(5)]
        _until(lambda: aged.buffered == 0)
    finally:
        aged.stop()
