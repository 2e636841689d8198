"""The canary's window read from a real Redis stream: who decided what, from the recorded start, up to the window."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
import redis

from release.window import Window, read, stream_position

pytestmark = pytest.mark.integration


@pytest.fixture
def stream(redis_url: str) -> Iterator[tuple[redis.Redis, str]]:
    client = redis.Redis.from_url(redis_url)
    name = f"test:decisions:{uuid.uuid4().hex[:8]}"
    try:
        yield client, name
    finally:
        client.delete(name)
        client.close()


def _log(client: redis.Redis, name: str, **decision: object) -> None:
    payload = {"risk_score": 0.1, "recommendation": "approve", "model_ms": 1.0, "role": "champion", **decision}
    client.xadd(name, {"decision": json.dumps(payload)})


def test_decisions_before_the_start_and_of_other_versions_are_left_out(stream: tuple[redis.Redis, str]) -> None:
    client, name = stream
    assert stream_position(client, name) == "0-0"
    _log(client, name, model_version=1)  # before the canary started
    start = stream_position(client, name)
    _log(client, name, model_version=1, recommendation="block")
    _log(client, name, model_version=2, role="challenger", risk_score=0.5)
    _log(client, name, model_version=7, role="challenger")  # some other challenger
    _log(client, name, model_version=1, challenger_error="RuntimeError: boom")  # answered for the challenger
    window = read(client, name, Window(champion_version=1, challenger_version=2, size=10, last_id=start))
    assert (window.champion.decided, window.champion.blocks) == (2, 1)
    assert (window.challenger.decided, window.challenger.errors, window.challenger.scores) == (1, 1, [0.5])
    assert window.mode == "canary" and not window.full


def test_reading_goes_on_where_it_stopped_and_ends_at_the_full_window(stream: tuple[redis.Redis, str]) -> None:
    client, name = stream
    window = Window(champion_version=1, challenger_version=2, size=3, last_id="0-0")
    _log(client, name, model_version=2, role="challenger")
    read(client, name, window)
    assert window.challenger.attempts == 1
    for _ in range(4):
        _log(client, name, model_version=2, role="challenger")
        _log(client, name, model_version=1)
    read(client, name, window)
    assert window.full and window.challenger.attempts == 3  # the verdict sees exactly its window
    rebuilt = read(client, name, Window(champion_version=1, challenger_version=2, size=3, last_id="0-0"))
    assert (rebuilt.last_id, rebuilt.champion.decided) == (window.last_id, window.champion.decided)


def test_shadow_answers_count_for_the_challenger(stream: tuple[redis.Redis, str]) -> None:
    client, name = stream
    for score in (0.2, 0.9):
        _log(
            client, name, model_version=1, shadow_version=2, shadow_score=score,
            shadow_recommendation="block" if score > 0.5 else "approve", shadow_model_ms=2.0,
        )  # fmt: skip
    window = read(client, name, Window(champion_version=1, challenger_version=2, size=10, last_id="0-0"))
    assert window.mode == "shadow"
    assert (window.challenger.scores, window.challenger.blocks, window.challenger.model_ms) == ([0.2, 0.9], 1, [2, 2])
    assert window.champion.decided == 2


def test_an_entry_of_many_decisions_fills_the_window_mid_entry_the_same_way_every_time(
    stream: tuple[redis.Redis, str],
) -> None:
    """The service logs up to PER_ENTRY decisions per entry; the window ends at the decision that fills it."""
    client, name = stream
    decision = {"risk_score": 0.1, "recommendation": "approve", "model_ms": 1.0}
    batch = [{**decision, "model_version": 2, "role": "challenger"}, {**decision, "model_version": 1}] * 3
    _log(client, name, model_version=1)  # an older one-decision entry, read the same way
    client.xadd(name, {"decisions": json.dumps(batch)})
    window = read(client, name, Window(champion_version=1, challenger_version=2, size=2, last_id="0-0"))
    assert window.full and window.challenger.attempts == 2
    assert window.champion.decided == 2  # the old entry's and the one between the two challenger decisions
    rebuilt = read(client, name, Window(champion_version=1, challenger_version=2, size=2, last_id="0-0"))
    assert (rebuilt.last_id, rebuilt.champion.decided) == (window.last_id, window.champion.decided)
