"""`skewless score-sample`: send a few recent transactions, ordinary and fraudulent, to a running service."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import UTC, datetime

import pandas as pd

from skewless.errors import DependencyUnavailableError
from skewless.settings import Settings
from training.dataset import labelled_transactions


def sample_transactions(settings: Settings, n: int) -> list[dict]:
    """The newest labelled transactions: half that were fraud, half that were not, timestamped now."""
    labelled = labelled_transactions(settings.raw_dir)
    fraud = labelled[labelled["is_fraud"] == 1].tail(n // 2)
    clean = labelled[labelled["is_fraud"] == 0].tail(n - len(fraud))
    now = datetime.now(UTC).isoformat()
    rows = pd.concat([clean, fraud])
    return [
        {"txn_id": str(r.txn_id), "user_id": int(r.user_id), "device_id": int(r.device_id),
         "merchant_id": int(r.merchant_id), "amount": float(r.amount), "currency": r.currency,
         "country": r.country, "channel": r.channel, "timestamp": now, "was_fraud": int(r.is_fraud)}
        for r in rows.itertuples()
    ]  # fmt: skip


def score_sample(settings: Settings, url: str, n: int) -> list[tuple[dict, dict]]:
    transactions = sample_transactions(settings, n)
    body = json.dumps({"transactions": transactions}).encode()
    request = urllib.request.Request(
        url.rstrip("/") + "/score/batch", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            results = json.loads(reply.read())["results"]
    except (urllib.error.URLError, OSError) as exc:
        raise DependencyUnavailableError(f"scoring service at {url} did not answer: {exc}") from exc
    return list(zip(transactions, results, strict=True))
