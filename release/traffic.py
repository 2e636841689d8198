"""`skewless canary replay`: recent raw transactions sent to a running service, so a canary has traffic to judge.

For demos and drills on a machine without live payments: ``n`` transactions of the raw data (the newest, or those
before the newest ``skip``), moved in time together so that the last happens now (the gaps between them, which
the real-time velocity features see, stay as they were), each with a txn_id of its own (the original id plus a run
tag, so replays never collide in the logs), posted to ``/score/batch`` in chunks.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from datetime import UTC, datetime

import pyarrow.parquet as pq

from data import schemas
from data.files import day_file, list_days
from skewless.errors import BadInputError, DependencyUnavailableError, MissingDataError
from skewless.settings import Settings

FIELDS = [f.name for f in schemas.TRANSACTIONS]


def recent_transactions(settings: Settings, n: int, skip: int = 0) -> list[dict]:
    if n < 1 or skip < 0:
        raise BadInputError(f"--n must be at least 1 and --skip not negative, got {n} and {skip}")
    folder = settings.raw_dir / "transactions"
    days = list_days(folder)
    if not days:
        raise MissingDataError(f"{folder}: no raw transactions to replay; run `skewless generate`")
    rows: list[dict] = []
    for day in reversed(days):
        table = pq.read_table(day_file(folder, day), columns=FIELDS)
        rows = table.to_pylist() + rows
        if len(rows) >= n + skip:
            break
    rows = rows[-(n + skip) : len(rows) - skip]
    if not rows:
        raise MissingDataError(f"{folder}: fewer than {skip + 1:,} transactions; nothing to replay")
    tag = uuid.uuid4().hex[:6]
    shift = datetime.now(UTC) - max(r["event_timestamp"] for r in rows)
    return [
        {
            **{k: v for k, v in row.items() if k != "event_timestamp"},
            "txn_id": f"{row['txn_id']}-{tag}",
            "timestamp": (row["event_timestamp"] + shift).isoformat(),
        }
        for row in rows
    ]


def serves_challenger(url: str, version: int, timeout: float) -> bool:
    """Wait until the service at ``url`` has loaded challenger ``version`` (its /ready says so)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url.rstrip("/") + "/ready", timeout=5) as reply:
                if str(json.loads(reply.read()).get("challenger", "")).startswith(f"v{version}"):
                    return True
        except (urllib.error.URLError, OSError, ValueError):
            pass  # not up yet, or not ready: keep waiting
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)


def replay(settings: Settings, url: str, n: int, skip: int = 0, chunk: int = 100) -> Counter[tuple[str, int, str]]:
    """Send the transactions; count the answers by (role, model version, recommendation)."""
    answers: Counter[tuple[str, int, str]] = Counter()
    transactions = recent_transactions(settings, n, skip)
    for start in range(0, len(transactions), chunk):
        body = json.dumps({"transactions": transactions[start : start + chunk]}).encode()
        request = urllib.request.Request(
            url.rstrip("/") + "/score/batch", data=body, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as reply:
                results = json.loads(reply.read())["results"]
        except (urllib.error.URLError, OSError) as exc:
            raise DependencyUnavailableError(f"scoring service at {url} did not answer: {exc}") from exc
        for r in results:
            answers[(r.get("model_role") or "champion", r["model_version"], r["recommendation"])] += 1
    return answers
