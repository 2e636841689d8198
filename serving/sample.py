"""`skewless score-sample`: send a few recent transactions, ordinary and fraudulent, to a running service."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from skewless.errors import DependencyUnavailableError
from skewless.settings import Settings
from training.dataset import labelled_transactions


def sample_transactions(settings: Settings, n: int) -> list[dict]:
    """Recent ordinary transactions, and as many fraudulent-looking ones made from them.

    The fraudulent-looking ones copy an ordinary customer and change what the fraud patterns change: an account
    takeover (a device never seen, a foreign country, 15 times the usual amount, on the web) and card testing
    (a device never seen, a tiny amount, at a merchant the customer never used).
    """
    labelled = labelled_transactions(settings.raw_dir)
    clean = labelled[labelled["is_fraud"] == 0].tail(max(n - n // 2, 1))
    rows = [
        {"txn_id": str(r.txn_id), "user_id": int(r.user_id), "device_id": int(r.device_id),
         "merchant_id": int(r.merchant_id), "amount": float(r.amount), "currency": r.currency,
         "country": r.country, "channel": r.channel, "timestamp": r.event_timestamp.isoformat(),
         "kind": "ordinary"}
        for r in clean.itertuples()
    ]  # fmt: skip
    unseen_device = int(labelled["device_id"].max()) + 1_000_000
    quiet_merchant = int(labelled["merchant_id"].value_counts().index[-1])
    for i, base in enumerate(rows[: n // 2]):
        if i % 2 == 0:
            foreign = "NG" if base["country"] != "NG" else "RU"
            fraud = {**base, "device_id": unseen_device + i, "country": foreign, "channel": "web",
                     "amount": round(base["amount"] * 15, 2), "kind": "takeover-like"}  # fmt: skip
        else:
            fraud = {**base, "device_id": unseen_device + i, "merchant_id": quiet_merchant, "channel": "web",
                     "amount": 1.37, "kind": "card-testing-like"}  # fmt: skip
        rows.append({**fraud, "txn_id": f"{base['txn_id']}-x"})
    return rows


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
