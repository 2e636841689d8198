"""The scoring path's Redis channel, against a real redis-server of the test's own (it is restarted here)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from itertools import islice
from typing import Any

import pytest
import redis

from serving.pipeline_calls import Channel
from skewless.errors import DependencyUnavailableError
from tests.serving.conftest import RedisProcess, _free_port

pytestmark = pytest.mark.integration

ECHO = "return ARGV[1]"


@pytest.fixture
def server() -> Iterator[RedisProcess]:
    process = RedisProcess(_free_port())
    process.start()
    yield process
    process.stop()


def _client(server: RedisProcess) -> redis.Redis:
    return redis.Redis.from_url(server.url, socket_connect_timeout=0.5, socket_timeout=2)


def test_replies_in_order_with_errors_as_replies(server: RedisProcess) -> None:
    client = _client(server)
    client.set("text", "x")
    channel = Channel(client, "test store")
    replies = channel.send([("SET", "a", 1), ("INCR", "text"), ("GET", "a"), ("HGET", "missing", "f")])
    assert replies[0] is True or replies[0] == b"OK"
    assert isinstance(replies[1], redis.ResponseError) and "not an integer" in str(replies[1])
    assert replies[2:] == [b"1", None]


def test_a_partly_read_or_failed_use_leaves_the_connection_in_step(server: RedisProcess) -> None:
    channel = Channel(_client(server), "test store")
    commands = [("ECHO", str(i)) for i in range(50)]
    assert channel.exchange(commands, lambda replies: next(replies), None) == b"0"

    def fails(replies: Iterator[Any]) -> None:
        list(islice(replies, 3))
        raise ValueError("the caller's own mistake")

    with pytest.raises(ValueError, match="own mistake"):
        channel.exchange(commands, fails, None)
    assert channel.send([("ECHO", "next")]) == [b"next"]  # not a leftover reply of the calls above


def test_a_lost_script_is_loaded_and_the_batch_sent_again(server: RedisProcess) -> None:
    client = _client(server)
    sha = client.script_load(ECHO)
    channel = Channel(client, "test store")
    loads: list[int] = []
    seen: list[list[Any]] = []

    def use(replies: Iterator[Any]) -> list[Any]:
        seen.append(list(replies))
        return seen[-1]

    client.script_flush()
    got = channel.exchange(
        [("EVALSHA", sha, 0, "a"), ("ECHO", "b")], use, lambda: loads.append(client.script_load(ECHO) and 1)
    )
    assert got == [b"a", b"b"] and len(loads) == 1 and len(seen) == 2
    assert isinstance(seen[0][0], redis.exceptions.NoScriptError)

    with pytest.raises(DependencyUnavailableError, match="keeps refusing its scripts"):
        channel.send([("EVALSHA", "0" * 40, 0)], load=lambda: None)


def test_a_restarted_redis_is_reached_again_without_an_error(server: RedisProcess) -> None:
    channel = Channel(_client(server), "test store")
    assert channel.send([("SET", "k", "before")])
    server.stop()
    with pytest.raises(DependencyUnavailableError, match="test store unavailable"):
        channel.send([("GET", "k")])
    server.start()
    assert channel.send([("SET", "k", "after"), ("GET", "k")])[1] == b"after"
    server.stop()
    server.start()  # the connection held since the last call is dead; the next call reopens it
    assert channel.send([("GET", "k")]) == [None]


def test_threads_have_connections_of_their_own(server: RedisProcess) -> None:
    channel = Channel(_client(server), "test store")
    errors: list[str] = []

    def work(name: str) -> None:
        for i in range(300):
            commands = [("ECHO", f"{name}-{i}-{j}") for j in range(5)]
            got = channel.send(commands)
            if got != [c[1].encode() for c in commands]:
                errors.append(f"{name} {i}: {got}")

    threads = [threading.Thread(target=work, args=(f"t{k}",)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
