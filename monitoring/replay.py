"""`skewless replay`: send one day of raw transactions through a running service, optionally with drift injected.

A drill for the monitor, like `skewless inject-fault` is for the validation gates: the replayed decisions go
through the real scoring path (HTTP, online features, the champion model) and the decision log, so
`skewless worker` writes them as any other prediction log. The drifts change what arrives, never the service:

- ``older-users``: 60 % of the day's payments come from customers aged 55 and over (their payments from the
  raw days, moved onto this day at the same time of day);
- ``higher-amounts``: every amount doubles;
- ``broken-country``: half of the payments carry the same placeholder country, as an upstream default would.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, date, datetime

import duckdb
import numpy as np
import pandas as pd

from data.files import day_file, list_days
from feature_repo.transformations import age_in_years
from skewless.errors import BadInputError, DependencyUnavailableError, MissingDataError
from skewless.settings import Settings

DRIFTS = {
    "older-users": "60% of payments from customers aged 55+",
    "higher-amounts": "amounts doubled",
    "broken-country": "half the payments with the placeholder country US",
}
OLDER_SHARE, OLDER_AGE = 0.6, 55
AMOUNT_FACTOR = 2.0
BROKEN_SHARE, PLACEHOLDER_COUNTRY = 0.5, "US"


def parse_drifts(text: str | None) -> list[str]:
    names = [n.strip() for n in (text or "").split(",") if n.strip()]
    unknown = [n for n in names if n not in DRIFTS]
    if unknown:
        raise BadInputError(f"--drift {', '.join(unknown)}: unknown; known: {', '.join(DRIFTS)}")
    return names


def replay_frame(settings: Settings, day: date, drifts: Sequence[str], seed: int = 0) -> pd.DataFrame:
    """The day's raw transactions with the drifts applied, ordered by time."""
    folder = settings.raw_dir / "transactions"
    path = day_file(folder, day)
    if not path.exists():
        days = list_days(folder)
        known = f"{days[0]} to {days[-1]}" if days else "none"
        raise MissingDataError(f"{path}: no raw transactions for {day} (raw days: {known})")
    frame = pd.read_parquet(path)
    rng = np.random.default_rng(seed)
    if "older-users" in drifts:
        frame = _older_users(settings, frame, day, rng)
    if "higher-amounts" in drifts:
        frame["amount"] = (frame["amount"] * AMOUNT_FACTOR).round(2)
    if "broken-country" in drifts:
        broken = rng.random(len(frame)) < BROKEN_SHARE
        frame.loc[broken, "country"] = PLACEHOLDER_COUNTRY
    return frame.sort_values("event_timestamp", kind="stable").reset_index(drop=True)


def _older_users(settings: Settings, frame: pd.DataFrame, day: date, rng: np.random.Generator) -> pd.DataFrame:
    users = settings.raw_dir / "users"
    folder = settings.raw_dir / "transactions"
    files = [str(day_file(folder, d)) for d in list_days(folder) if d <= day]
    with duckdb.connect() as con:
        births = con.sql(
            "SELECT user_id, birth_year FROM read_parquet($f)",
            params={"f": [str(day_file(users, d)) for d in list_days(users)]},
        ).df()
        births = births[age_in_years(births["birth_year"], day.year) >= OLDER_AGE]
        con.register("older", births[["user_id"]])
        pool = con.sql("SELECT t.* FROM read_parquet($f) t JOIN older USING (user_id)", params={"f": files}).df()
    if pool.empty:
        raise MissingDataError(f"no raw payments by customers aged {OLDER_AGE}+ to replay for --drift older-users")
    replaced = rng.random(len(frame)) < OLDER_SHARE
    picked = pool.iloc[rng.integers(0, len(pool), int(replaced.sum()))].copy()
    midnight = pd.Timestamp(day, tz="UTC")
    times = pd.to_datetime(picked["event_timestamp"], utc=True)
    picked["event_timestamp"] = midnight + (times - times.dt.floor("D"))
    picked["txn_id"] = [f"{t}-o{i}" for i, t in enumerate(picked["txn_id"])]
    frame = frame.astype({"txn_id": "object"})
    return pd.concat([frame[~replaced], picked.astype({"txn_id": "object"})], ignore_index=True)


def as_requests(frame: pd.DataFrame) -> list[dict]:
    return [
        {"txn_id": str(r.txn_id), "user_id": int(r.user_id), "device_id": int(r.device_id),
         "merchant_id": int(r.merchant_id), "amount": float(r.amount), "currency": str(r.currency),
         "country": str(r.country), "channel": str(r.channel),
         "timestamp": pd.Timestamp(r.event_timestamp).tz_convert(UTC).isoformat()}
        for r in frame.itertuples()
    ]  # fmt: skip


def _post(url: str, endpoint: str, payload: object, what: str) -> dict:
    """POST JSON to the service; its 4xx is the caller's input (exit 2), anything else the service's (exit 3)."""
    request = urllib.request.Request(
        endpoint, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            return json.loads(reply.read())  # type: ignore[no-any-return]
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:500]
        error = BadInputError if 400 <= exc.code < 500 else DependencyUnavailableError
        raise error(f"{endpoint} answered {exc.code} for {what}: {detail}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise DependencyUnavailableError(f"scoring service at {url} did not answer: {exc}") from exc


def send(url: str, transactions: list[dict], batch: int) -> Counter[str]:
    """POST the transactions to ``/score/batch`` in chunks; the count of each recommendation."""
    counts: Counter[str] = Counter()
    endpoint = url.rstrip("/") + "/score/batch"
    for i in range(0, len(transactions), batch):
        chunk = {"transactions": transactions[i : i + batch]}
        results = _post(url, endpoint, chunk, f"transactions {i}..{i + batch - 1}")["results"]
        counts.update(r["recommendation"] for r in results)
    return counts


def send_one_by_one(url: str, transactions: list[dict]) -> Counter[str]:
    """POST each transaction to ``/score`` on its own, waiting for each answer: the order a live stream has."""
    endpoint = url.rstrip("/") + "/score"
    return Counter(
        _post(url, endpoint, txn, f"transaction {i} ({txn['txn_id']})")["recommendation"]
        for i, txn in enumerate(transactions)
    )


def reset_realtime(settings: Settings) -> int:
    """Delete the project's real-time aggregate state (every windowed view's); returns the keys removed."""
    import redis

    from serving.realtime import RealtimeAggregates
    from skewless.store import open_store

    store = open_store(settings.repo_root)
    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2)
    try:
        return RealtimeAggregates.for_service(client, store, settings.feature_service).reset()
    finally:
        client.close()


def warm_realtime(settings: Settings, day: date, chunk: int = 1_000) -> int:
    """Record a raw day's transactions in the real-time aggregates' state, in time order, without scoring them.

    What an operator runs before serving a model with windowed features (or before a replay): the windows of the
    first payments scored then hold the day before them, as offline they do. Idempotent (by txn_id)."""
    import redis

    from serving.realtime import RealtimeAggregates
    from skewless.store import open_store

    frame = replay_frame(settings, day, [])
    store = open_store(settings.repo_root)
    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2)
    try:
        aggregates = RealtimeAggregates.for_service(client, store, settings.feature_service)
        if not aggregates.views:
            raise BadInputError(f"feature service {settings.feature_service} has no windowed views to warm")
        rows = frame.to_dict("records")
        for row in rows:
            row["event_timestamp"] = pd.Timestamp(row["event_timestamp"]).tz_convert(UTC).to_pydatetime()
        for i in range(0, len(rows), chunk):
            aggregates.record(rows[i : i + chunk])
        return len(rows)
    finally:
        client.close()


def replay(
    settings: Settings, url: str, day: date, drifts: Sequence[str], batch: int | None = 100
) -> tuple[int, Counter]:
    """Replay the day in time order: in ``/score/batch`` requests of ``batch``, or one ``/score`` each (None)."""
    if batch is not None and not 1 <= batch <= settings.max_batch_size:
        raise BadInputError(f"--batch {batch}: expected 1 to {settings.max_batch_size} (SKEWLESS_MAX_BATCH_SIZE)")
    if day > datetime.now(UTC).date():
        raise BadInputError(f"--day {day} is in the future; the service refuses transactions from the future")
    transactions = as_requests(replay_frame(settings, day, drifts))
    if batch is None:
        return len(transactions), send_one_by_one(url, transactions)
    return len(transactions), send(url, transactions, batch)
