"""Windowed aggregations at score time, in the real Redis: the definition, idempotency, concurrency, cost, and
equality with the offline rebuild through get_historical_features."""

from __future__ import annotations

import math
import shutil
import struct
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import redis

from feature_repo.windows import service_windows
from pipeline.run import run_pipeline
from serving import realtime as realtime_module
from serving.realtime import PER_CALL, RealtimeAggregates
from serving.realtime_script import EventLayout
from skewless.errors import BadInputError, DependencyUnavailableError
from skewless.store import apply_definitions, open_store
from tests.feature_repo.windowed_repo import (
    DAY,
    EXPECTED,
    MIN,
    SCENARIO,
    SCORED_BEFORE_LATE,
    SERVICE,
    US,
    Txn,
    offline,
    write_transactions,
)
from tests.serving.conftest import RedisProcess, _free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def store(repo_root: Path):  # type: ignore[no-untyped-def]
    write_transactions(repo_root, SCENARIO)
    feast_store = open_store(repo_root)
    apply_definitions(feast_store)
    return feast_store


@pytest.fixture
def realtime(store, redis_url: str) -> Iterator[RealtimeAggregates]:  # type: ignore[no-untyped-def]
    client = redis.Redis.from_url(redis_url)
    aggregates = RealtimeAggregates.for_service(client, store, SERVICE)
    aggregates.reset()
    yield aggregates
    aggregates.reset()
    client.close()


def _one_by_one(realtime: RealtimeAggregates, txns: list[Txn]) -> list[dict]:
    return [realtime.record([t.row()])[0] for t in txns]


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _same(got: object, want: object) -> bool:
    if _missing(want) or _missing(got):
        return _missing(want) and _missing(got)
    return got == pytest.approx(want, rel=1e-9)


def test_features_come_from_the_declaration(realtime: RealtimeAggregates) -> None:
    assert realtime.views == ["user_velocity", "device_velocity"]
    assert realtime.feature_types["txn_count_10m"] == "int64"
    assert realtime.feature_types["amount_max_24h"] == "float64"
    assert list(realtime.feature_types)[-1] == "device_distinct_users_24h"
    assert realtime.required_fields == ["amount", "device_id", "event_timestamp", "merchant_id", "txn_id", "user_id"]


def test_boundaries_duplicates_and_late_events_match_the_offline_rebuild(realtime, store) -> None:  # type: ignore[no-untyped-def]
    served = _one_by_one(realtime, SCENARIO)
    for row, expected in EXPECTED.items():
        for name, value in expected.items():
            assert _same(served[row][name], value), f"row {row} {name}: {served[row][name]} != {value}"
    assert served[4] == served[2]  # the retry got what the first attempt got
    for row, expected in SCORED_BEFORE_LATE.items():
        for name, (online_value, _) in expected.items():
            assert _same(served[row][name], online_value), f"row {row} {name}"
    rebuilt = offline(store, SCENARIO)
    late = {(row, name) for row, names in SCORED_BEFORE_LATE.items() for name in names}
    for row, features in enumerate(served):
        for name, value in features.items():
            if (row, name) not in late:
                assert _same(value, rebuilt.at[row, name]), f"row {row} {name}: served {value}, offline"


def test_retries_do_not_double_count(realtime: RealtimeAggregates) -> None:
    first = Txn.at(1, 0 * MIN, 10.0)
    answers = realtime.record([first.row(), first.row()]) + realtime.record([first.row()])
    assert all(a == answers[0] for a in answers)
    probe = realtime.record([Txn.at(2, MIN, 1.0).row()])[0]
    assert probe["txn_count_10m"] == 1 and probe["amount_sum_10m"] == 10.0


def test_state_keys_are_the_keys_recording_writes(realtime: RealtimeAggregates, redis_url: str) -> None:
    rows = [Txn.at(1, 0 * MIN, 10.0).row(), Txn.at(2, MIN, 3.0, user=2).row(), Txn.at(3, 2 * MIN, 4.0, user=2).row()]
    keys = realtime.state_keys(rows)
    assert realtime.views == ["user_velocity", "device_velocity"]
    assert len(keys) == len(set(keys)) == 3  # two users' hashes and one device's: each key once
    client = redis.Redis.from_url(redis_url)
    assert client.exists(*keys) == 0
    realtime.record(rows)
    namespace = keys[0].rsplit(":", 2)[0]  # <namespace>:<view>:<value>
    assert sorted(key.decode() for key in client.scan_iter(match=f"{namespace}:*")) == sorted(keys)
    client.close()


def test_a_batch_can_ride_in_the_callers_pipeline(realtime: RealtimeAggregates, redis_url: str) -> None:
    realtime.load()
    batch = realtime.prepare([Txn.at(2, MIN, 3.0).row(), Txn.at(1, 0 * MIN, 5.0).row()])  # out of order
    pipe = redis.Redis.from_url(redis_url).pipeline(transaction=False)
    pipe.ping()  # the caller's own reads go in the same round trip
    for command in batch.commands:
        pipe.execute_command(*command)
    replies = pipe.execute(raise_on_error=False)
    second, first = batch.results(replies[1:])
    assert first["txn_count_10m"] == 0 and second["txn_count_10m"] == 1  # run in time order, answered in order
    # as columns: in the calls' (time) order, or in the order given; the same values as per transaction
    assert batch.order == [1, 0]
    in_time = batch.columns(replies[1:])
    assert in_time["txn_count_10m"] == [0, 1] and in_time["amount_sum_10m"] == [0.0, 5.0]
    as_given = batch.columns_as_given(replies[1:])
    assert as_given == {name: [second[name], first[name]] for name in realtime.feature_names}
    assert batch.columns([]) == {name: [] for name in realtime.feature_names}
    assert all(type(v) is int for v in in_time["txn_count_10m"])  # counts come back as ints, sums as floats
    assert all(type(v) is float for v in in_time["amount_sum_10m"])
    # A reply of another shape (another version of the script) is refused, naming what came back.
    with pytest.raises(DependencyUnavailableError, match=r"not rows of 13 packed doubles.*1, b'2'"):
        batch.columns([replies[1], [1, b"2"]])
    with pytest.raises(redis.exceptions.NoScriptError):
        batch.columns([redis.exceptions.NoScriptError("gone")])


def test_a_batch_over_several_script_calls_answers_as_one_at_a_time(realtime: RealtimeAggregates) -> None:
    txns = [
        Txn.at(i, (i * 37 % 150) * 11 * US * 10**6, 1.0 + i % 7, user=1 + i % 3, device=10 + i % 4).row()
        for i in range(2 * PER_CALL + 22)
    ]
    txns.append(txns[5])  # a retry in the same batch, in another call than its first attempt
    batch = realtime.prepare(txns)
    assert len(batch.commands) == 3
    together = realtime.record(txns)
    realtime.reset()
    ordered = sorted(range(len(txns)), key=lambda i: txns[i]["event_timestamp"])
    alone = dict(zip(ordered, [realtime.record([txns[i]])[0] for i in ordered], strict=True))
    assert together == [alone[i] for i in range(len(txns))]
    assert max(t["txn_count_24h"] for t in together) > 40


def test_a_batch_is_built_alike_a_column_or_a_transaction_at_a_time(
    realtime: RealtimeAggregates, monkeypatch: pytest.MonkeyPatch
) -> None:
    txns = [Txn.at(i, (i * 7 % 20) * MIN, 2.5 * i, user=1 + i % 2, merchant=100 + i % 3).row() for i in range(20)]
    monkeypatch.setattr(realtime_module, "COLUMNS_FROM", 10**6)
    by_transaction = realtime.prepare(txns)
    monkeypatch.setattr(realtime_module, "COLUMNS_FROM", 0)
    by_column = realtime.prepare(txns)
    # a column at a time the calls are built when sent (iterated), each time alike
    assert [list(c) for c in by_column.commands] == [list(c) for c in by_transaction.commands]
    assert [list(c) for c in by_column.commands] == [list(c) for c in by_transaction.commands]
    assert by_column.order == by_transaction.order
    one_more = [Txn.at(i, (i * 7 % 90) * MIN, 1.0 + i, user=1 + i % 2).row() for i in range(PER_CALL + 1)]
    by_column = realtime.prepare(one_more)  # the last call holds one transaction
    monkeypatch.setattr(realtime_module, "COLUMNS_FROM", 10**6)
    assert [list(c) for c in by_column.commands] == [list(c) for c in realtime.prepare(one_more).commands]
    with pytest.raises(BadInputError, match=r"transaction #3.*merchant_id"):
        realtime.prepare([*txns[:3], {**txns[3], "merchant_id": "a\x00b"}])


def test_an_earlier_copy_moves_the_event(realtime: RealtimeAggregates) -> None:
    realtime.record([Txn.at(1, 10 * MIN, 9.0).row()])
    realtime.record([Txn.at(1, 5 * MIN, 9.0).row()])
    probe = realtime.record([Txn.at(2, 7 * MIN, 1.0).row()])[0]
    assert probe["txn_count_10m"] == 1  # the event now sits at 5 minutes


def test_parallel_transactions_of_one_user_see_a_consistent_history(realtime: RealtimeAggregates) -> None:
    """Amounts are powers of two, so each answer's sum says exactly which others it saw. Whatever order Redis ran
    them in, seeing must be a serial order: no lost update, and no pair where each missed the other wrongly."""
    n = 24
    txns = [Txn.at(i, i * timedelta(milliseconds=1), float(2**i)) for i in range(n)]
    barrier, answers = threading.Barrier(n), [{} for _ in range(n)]

    def pay(i: int) -> None:
        barrier.wait()
        answers[i] = realtime.record([txns[i].row()])[0]

    threads = [threading.Thread(target=pay, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seen = [{j for j in range(n) if int(a["amount_sum_10m"]) >> j & 1} for a in answers]
    for i, others in enumerate(seen):
        assert others <= set(range(i)), f"txn {i} saw later ones {others - set(range(i))}"
        assert answers[i]["txn_count_10m"] == len(others)
    # Every pair is ordered by what the later-stamped one saw: j in seen[i] says j ran before i, j missing says
    # i ran first. Those orders must fit one serial order (the relation has no cycle).
    before = {(j, i) for i, others in enumerate(seen) for j in others}
    before |= {(i, j) for i, others in enumerate(seen) for j in range(i) if j not in others}
    order = sorted(range(n), key=lambda i: sum(1 for a, b in before if b == i))
    position = {txn: k for k, txn in enumerate(order)}
    assert all(position[a] < position[b] for a, b in before), "answers are not explained by any serial order"
    final = realtime.record([Txn.at(99, n * timedelta(milliseconds=1), 0.5).row()])[0]
    assert final["txn_count_10m"] == n and final["amount_sum_10m"] == float(2**n - 1)


def test_a_busy_user_costs_one_window_and_old_events_are_trimmed(realtime, store, redis_url) -> None:  # type: ignore[no-untyped-def]
    every = timedelta(minutes=2)
    rows = [Txn.at(i, i * every, 1.0).row() for i in range(3 * 24 * 30)]  # three days, one payment every 2 minutes
    for start in range(0, len(rows), 500):
        realtime.record(rows[start : start + 500])
    last = realtime.record([Txn.at(10**6, 3 * DAY, 1.0).row()])[0]
    assert last["txn_count_24h"] == 24 * 30 and last["txn_count_10m"] == 5  # 10 and 24 hours before still count
    client = redis.Redis.from_url(redis_url)
    kept = client.hlen(f"skewless:{store.project}:rt:user_velocity:1")
    assert kept <= 25 * 30 + 2  # the largest window plus the allowed lateness, not three days


def _as_earlier_text(stored: bytes, layout: EventLayout, columns: list[str]) -> bytes:
    """An event as versions before the packed layout stored it: ``<µs>\\x1f<value>\\x1f...`` in column order."""
    head = struct.calcsize(layout.python_format)
    _, at, *numbers = struct.unpack(layout.python_format, stored[:head])
    texts = stored[head:].split(b"\0")[: len(layout.texts)]
    values = dict(zip(layout.numbers, [("" if math.isnan(x) else repr(x)).encode() for x in numbers], strict=True))
    values.update(zip(layout.texts, texts, strict=True))
    return b"\x1f".join([str(int(at)).encode(), *[values[c] for c in columns]])


def test_events_stored_as_text_by_earlier_versions_are_still_read(realtime, store, redis_url) -> None:  # type: ignore[no-untyped-def]
    history = [Txn.at(i, i * MIN, 10.5 * i, device=10 + i % 3, merchant=100 + i % 2).row() for i in range(1, 9)]
    later = [Txn.at(50, 9 * MIN, 4.0).row(), history[3]]  # a new payment, then a retry of a recorded one
    realtime.record(history)
    packed = realtime.record(later)
    realtime.reset()
    realtime.record(history)
    client = redis.Redis.from_url(redis_url)
    rewritten = 0
    for view in service_windows(store, store.get_feature_service(SERVICE)):
        layout = EventLayout.of(view)
        for key in client.scan_iter(match=f"skewless:{store.project}:rt:{view.name}:*"):
            events = sorted(client.hgetall(key).items())
            for event_id, stored in events[::2]:  # every other one: a state holding both forms
                assert stored[:1] == b"\0"
                client.hset(key, event_id, _as_earlier_text(stored, layout, view.value_columns))
                rewritten += 1
    client.close()
    assert rewritten >= len(history)
    from_text = realtime.record(later)
    assert from_text == packed
    assert packed[0]["amount_sum_1h"] == sum(t["amount"] for t in history)
    assert packed[0]["distinct_devices_24h"] == 3 and packed[1]["txn_count_1h"] == 3


def test_later_than_the_allowed_lateness_is_cut_short(realtime: RealtimeAggregates) -> None:
    realtime.record([Txn.at(1, 0 * MIN, 5.0).row(), Txn.at(2, 2 * DAY, 5.0).row()])
    very_late = realtime.record([Txn.at(3, 10 * MIN, 5.0).row()])[0]
    assert very_late["txn_count_1h"] == 0  # offline sees 1 here: its event was trimmed online (documented)


def test_a_service_without_windowed_views_needs_no_redis(store) -> None:  # type: ignore[no-untyped-def]
    client = redis.Redis(port=_free_port(), socket_connect_timeout=0.2)  # nothing listens there
    realtime = RealtimeAggregates.for_service(client, store, "fraud_model_v1")
    realtime.load()
    assert realtime.views == [] and realtime.feature_names == []
    assert realtime.record([Txn.at(1, 0 * MIN, 1.0).row()]) == [{}]


def test_bad_transactions_are_named(realtime: RealtimeAggregates) -> None:
    row = Txn.at(1, 0 * MIN, 1.0).row()
    with pytest.raises(BadInputError, match="missing field"):
        realtime.record([{k: v for k, v in row.items() if k != "device_id"}])
    with pytest.raises(BadInputError, match="time zone"):
        realtime.record([{**row, "event_timestamp": row["event_timestamp"].replace(tzinfo=None)}])
    with pytest.raises(BadInputError, match="txn_id"):
        realtime.record([{**row, "txn_id": None}])
    with pytest.raises(BadInputError, match="merchant_id 'a\\\\x00b' contains a zero byte"):
        realtime.record([{**row, "merchant_id": "a\x00b"}])


def test_the_script_comes_back_after_redis_loses_it_and_redis_down_is_a_dependency_error(store) -> None:  # type: ignore[no-untyped-def]
    if shutil.which("redis-server") is None:
        pytest.skip("needs a redis-server binary to run a Redis of its own")
    server = RedisProcess(_free_port())
    server.start()
    try:
        client = redis.Redis.from_url(server.url, socket_connect_timeout=0.5, socket_timeout=0.5)
        realtime = RealtimeAggregates.for_service(client, store, SERVICE)
        realtime.record([Txn.at(1, 0 * MIN, 1.0).row()])
        client.script_flush()
        assert realtime.record([Txn.at(2, MIN, 1.0).row()])[0]["txn_count_10m"] == 1
    finally:
        server.stop()
    with pytest.raises(DependencyUnavailableError, match="Redis"):
        realtime.record([Txn.at(3, 2 * MIN, 1.0).row()])


@pytest.mark.slow
def test_replay_of_generated_transactions_equals_get_historical_features(
    repo_root: Path, small_raw: Path, redis_url: str
) -> None:
    """Every transaction of the small generated set, replayed in time order in batches of 64 through the online
    state, against Feast's get_historical_features on fraud_model_v2 as of each transaction: zero mismatches."""
    raw = repo_root / "data" / "raw"
    shutil.copytree(small_raw, raw)
    run_pipeline(raw, repo_root / "data" / "features")
    feast_store = open_store(repo_root)
    apply_definitions(feast_store)
    client = redis.Redis.from_url(redis_url)
    realtime = RealtimeAggregates.for_service(client, feast_store, SERVICE)
    realtime.reset()
    transactions = pd.concat([pd.read_parquet(p) for p in sorted((raw / "transactions").glob("*.parquet"))])
    transactions = transactions.sort_values(["event_timestamp", "txn_id"], kind="stable").reset_index(drop=True)
    rows = transactions.to_dict("records")
    try:
        served = [f for start in range(0, len(rows), 64) for f in realtime.record(rows[start : start + 64])]
    finally:
        realtime.reset()
    rebuilt = feast_store.get_historical_features(
        entity_df=transactions, features=feast_store.get_feature_service(SERVICE)
    ).to_df()
    assert rebuilt["txn_id"].tolist() == transactions["txn_id"].tolist()
    mismatches = {}
    for name in realtime.feature_names:
        online_values = np.array([f[name] for f in served], dtype="float64")
        offline_values = rebuilt[name].to_numpy(dtype="float64")
        same = np.isclose(online_values, offline_values, rtol=1e-6, atol=0) | (
            np.isnan(online_values) & np.isnan(offline_values)
        )
        mismatches[name] = int((~same).sum())
    assert len(rows) > 3_000
    assert mismatches == dict.fromkeys(realtime.feature_names, 0)
    assert rebuilt["txn_count_24h"].max() > 5  # the generator's bursts are in there
