"""One pipelined round trip to Redis, for the scoring path's reads and script calls.

Scripts are called by their SHA (``EVALSHA``): a restarted or flushed Redis forgets them and answers
``NoScriptError``. Then the caller's ``load`` puts them back and the commands are sent once more; every command
sent here is a read or an idempotent update, so sending twice changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import redis

from skewless.errors import DependencyUnavailableError


def send(client: redis.Redis, commands: Sequence[Sequence[Any]], what: str, load: Callable[[], None]) -> list[Any]:
    """The replies to ``commands``, in order; a command's error is its reply (callers check their own).
    ``what`` names the store in the error when Redis cannot be reached."""
    for attempt in (1, 2):
        try:
            pipe = client.pipeline(transaction=False)
            for command in commands:
                pipe.execute_command(*command)
            replies = pipe.execute(raise_on_error=False)
        except redis.RedisError as exc:
            raise DependencyUnavailableError(f"{what} unavailable: {exc}") from exc
        if not any(isinstance(r, redis.exceptions.NoScriptError) for r in replies):
            return replies
        if attempt == 1:
            load()
    raise DependencyUnavailableError(f"{what} keeps refusing its scripts after loading them")
