"""Micro-batching: single requests that arrive together are scored in one call ("20 requests, 1 prediction").

A lone request waits at most ``wait_s`` for company; while a batch is being scored the next one fills up, so
under load batches grow by themselves. Micro-batches are scored on the event loop itself (``inline``), by the
coroutine ``score_async``: they take a fraction of a millisecond, and a hop to a worker thread and back costs more
than that on a busy machine (each hop waits for the scheduler); while the coroutine waits for Redis, the loop reads
the next requests. Callers' own large batches go to one worker thread, off the loop, through ``score``.

A batch starts only after the loop has had ``GATHER_TURNS`` turns: requests whose bytes have already arrived are
read, parsed and queued by then, and join it rather than wait for the next one. Without them, a request woken a
turn too late waited for a whole batch. At concurrency 8 (wrk, ten pairs), batches grew from 3.3 requests on
average to 8, and /score served 1.3x the requests with a p99 lower by 30%; a lone request pays two loop turns
(microseconds).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, TypeVar

# Turns of the event loop a batch lets pass before it is formed: on the first, the loop reads the sockets that have
# data and starts a task per request; on the second, those tasks parse and queue their requests.
GATHER_TURNS = 2

T = TypeVar("T")
R = TypeVar("R")


class MicroBatcher(Generic[T, R]):
    def __init__(
        self,
        score: Callable[[list[T]], list[R]],
        score_async: Callable[[list[T]], Awaitable[list[R]]],
        max_size: int,
        wait_s: float,
        thread_setup: Callable[[], object] | None = None,
        inline: bool = True,
    ) -> None:
        self._score = score
        self._score_async = score_async
        self._max_size = max_size
        self._wait_s = wait_s
        self._queue: asyncio.Queue[tuple[T, asyncio.Future[R]]] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scorer", initializer=thread_setup)
        self._task: asyncio.Task[None] | None = None
        self._inline = inline
        self.batches = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="micro-batcher")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._executor.shutdown(wait=True)

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        await self._queue.put((item, future))
        return await future

    async def run_batch(self, items: list[T]) -> list[R]:
        """Score a caller's own batch on the same thread (no mixing with single requests)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._score, items)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            for _ in range(GATHER_TURNS):
                await asyncio.sleep(0)
            deadline = loop.time() + self._wait_s
            while len(batch) < self._max_size:
                try:
                    batch.append(self._queue.get_nowait())
                    continue
                except asyncio.QueueEmpty:
                    pass
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), remaining))
                except TimeoutError:
                    break
            live = [(item, fut) for item, fut in batch if not fut.cancelled()]
            if not live:
                continue
            self.batches += 1
            try:
                items = [i for i, _ in live]
                if self._inline:
                    results: list[Any] = await self._score_async(items)
                else:
                    results = await loop.run_in_executor(self._executor, self._score, items)
            except Exception as exc:  # every waiting request gets the same error
                for _, fut in live:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for (_, fut), result in zip(live, results, strict=True):
                if not fut.done():
                    fut.set_result(result)
