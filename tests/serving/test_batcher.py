"""The micro-batcher alone, with a scoring function of the test's own (the batcher's interface, not a dependency)."""

from __future__ import annotations

import asyncio

import pytest

from serving import batcher
from serving.batcher import MicroBatcher


async def _arrivals(late: int) -> list[list[int]]:
    """Request 0 is queued; ``late`` more are read from their sockets on the loop's next turn, as uvicorn reads
    requests (a task started per request by the protocol's callback). Returns the batches scored."""
    batches: list[list[int]] = []

    async def score(items: list[int]) -> list[int]:
        batches.append(list(items))
        await asyncio.sleep(0)  # waiting for Redis
        return [i * 10 for i in items]

    micro = MicroBatcher(lambda items: [], score, max_size=64, wait_s=0.0)
    micro.start()
    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Task[int]] = []

    def read_sockets() -> None:
        tasks.extend(loop.create_task(micro.submit(i)) for i in range(1, late + 1))

    first = loop.create_task(micro.submit(0))
    await asyncio.sleep(0)  # request 0 is queued and wakes the batcher
    loop.call_soon(read_sockets)
    answers = await asyncio.gather(first, *await _filled(tasks, late))
    await micro.stop()
    assert answers == [i * 10 for i in range(late + 1)]
    return batches


async def _filled(tasks: list[asyncio.Task[int]], n: int) -> list[asyncio.Task[int]]:
    while len(tasks) < n:
        await asyncio.sleep(0)
    return tasks


def test_requests_read_while_a_batch_forms_join_it() -> None:
    assert asyncio.run(_arrivals(7)) == [list(range(8))]


def test_without_gather_turns_the_late_requests_wait_for_the_next_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batcher, "GATHER_TURNS", 0)
    assert asyncio.run(_arrivals(7)) == [[0], list(range(1, 8))]


def test_a_lone_request_is_scored_alone() -> None:
    assert asyncio.run(_arrivals(0)) == [[0]]
