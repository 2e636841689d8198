"""`skewless canary replay`: recent raw transactions sent to a running service, so a canary has traffic to judge.

For demos and drills on a machine without live payments: the newest ``n`` transactions of the raw data, stamped
now, each with a txn_id of its own (the original id plus a run tag, so replays never collide in the logs), posted
to ``/score/batch`` in chunks.
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
from skewless.errors import DependencyUnavailableError, MissingDataError
from skewless.settings import Settings

FIELDS = [f.name for f in schemas.TRANSACTIONS if f.name != "event_timestamp"]  # replaced by "timestamp": now


def recent_transactions(settings: Settings, n: int) -> list[dict]:
    folder = settings.raw_dir / "transactions"
    days = list_days(folder)
    if not days:
        raise MissingDataError(f"{folder}: no raw transactions to replay; run `skewless generate`")
    rows: list[dict] = []
    for day in reversed(days):
        table = pq.read_table(day_file(folder, day), columns=FIELDS)
        rows = table.to_pylist() + rows
        if len(rows) >= n:
            break
    tag = uuid.uuid4().hex[:6]
    now = datetime.now(UTC).isoformat()
    return [{**row, "txn_id": f"{row['txn_id']}-{tag}", "timestamp": now} for row in rows[-n:]]


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


def replay(settings: Settings, url: str, n: int, chunk: int = 100) -> Counter[tuple[str, int, str]]:
    """Send the transactions; count the answers by (role, model version, recommendation)."""
    answers: Counter[tuple[str, int, str]] = Counter()
    transactions = recent_transactions(settings, n)
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
