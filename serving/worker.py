"""`skewless worker`: the decision stream -> prediction logs as Parquet, one folder per day.

At-least-once from Redis (a consumer group; entries are acknowledged only after their file is renamed into
place) and exactly-once on disk: each file is named by the stream ids it holds, and an entry at or below the
highest id already on disk is acknowledged without being written again. So a worker that dies between writing
and acknowledging writes nothing twice when it comes back; entries it had read but not written are re-read.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute
import redis

from data.files import write_parquet_atomic
from serving.events import decisions_of
from skewless.errors import DependencyUnavailableError

log = logging.getLogger(__name__)
_FILE = re.compile(r"^(\d+)-(\d+)_(\d+)-(\d+)\.parquet$")


def _id_tuple(entry_id: bytes | str) -> tuple[int, int]:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, seq = text.split("-")
    return int(ms), int(seq)


def written_ranges(out_dir: Path) -> dict[str, list[tuple[tuple[int, int], tuple[int, int]]]]:
    """Per day, the stream-id ranges of the batches already on disk (from the file names)."""
    ranges: dict[str, list[tuple[tuple[int, int], tuple[int, int]]]] = {}
    for path in out_dir.glob("day=*/*.parquet"):
        match = _FILE.match(path.name)
        if match:
            day = path.parent.name.removeprefix("day=")
            first = (int(match.group(1)), int(match.group(2)))
            last = (int(match.group(3)), int(match.group(4)))
            ranges.setdefault(day, []).append((first, last))
    return ranges


def to_table(payloads: list[dict]) -> pa.Table:
    frame = pd.DataFrame(payloads)
    frame["features"] = frame["features"].map(json.dumps)
    for column in ("reasons", "missing_features", "stale_features", "unknown_entities"):
        frame[column] = frame[column].map(json.dumps)
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True, format="ISO8601")
    frame["logged_at"] = pd.to_datetime(frame["logged_at"], utc=True, format="ISO8601")
    return pa.Table.from_pandas(frame, preserve_index=False)


class PredictionLogWorker:
    def __init__(self, client: redis.Redis, stream: str, group: str, out_dir: Path, batch: int = 500) -> None:
        self.client = client
        self.stream = stream
        self.group = group
        self.out_dir = out_dir
        self.batch = batch
        self.consumer = f"{socket.gethostname()}-worker"
        self.written = 0
        self.idle = False

    def ensure_group(self) -> None:
        try:
            self.client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def step(self, block_ms: int = 1000) -> int:
        """Handle one batch: first this consumer's unacknowledged entries, then new ones. Returns entries seen."""
        try:
            entries = self._read("0", block_ms=None) or self._read(">", block_ms=block_ms)
        except redis.RedisError as exc:
            raise DependencyUnavailableError(f"decision stream (Redis) unavailable: {exc}") from exc
        self.idle = not entries
        if not entries:
            return 0
        done = written_ranges(self.out_dir)
        payloads, ids, days = [], [], []
        for eid, data in entries:
            entry = _id_tuple(eid)
            for payload in decisions_of(data):
                day = str(payload["event_timestamp"])[:10]
                if any(lo <= entry <= hi for lo, hi in done.get(day, [])):
                    continue  # written before a crash, not yet acknowledged
                payloads.append(payload)
                ids.append(entry)
                days.append(day)
        if payloads:
            table = to_table(payloads)
            name = f"{ids[0][0]}-{ids[0][1]}_{ids[-1][0]}-{ids[-1][1]}.parquet"
            day_array = pa.array(days)
            for day in sorted(set(days)):
                rows = table.filter(pa.compute.equal(day_array, day))
                write_parquet_atomic(rows, self.out_dir / f"day={day}" / name)
            self.written += len(payloads)
        self.client.xack(self.stream, self.group, *[eid for eid, _ in entries])
        return len(entries)

    def _read(self, start: str, block_ms: int | None) -> list:
        reply = self.client.xreadgroup(
            self.group, self.consumer, {self.stream: start}, count=self.batch, block=block_ms
        )
        if not reply:
            return []
        return list(reply[0][1])

    def run(self, should_stop: Callable[[], bool] = lambda: False) -> None:
        self.ensure_group()
        while not should_stop():
            try:
                self.step()
            except DependencyUnavailableError as exc:
                log.warning("%s; retrying in 1 s", exc)
                time.sleep(1)
