"""`feast apply`, `feast materialize-incremental` and `feast serve` at a repo root, as an operator runs them."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from pipeline.run import run_pipeline
from tests.conftest import REPO_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FEAST = str(Path(sys.executable).with_name("feast"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _feast(repo_root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([FEAST, *args], cwd=repo_root, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"feast {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def test_apply_materialize_and_serve_at_the_repo_root(repo_root: Path, small_raw: Path) -> None:
    shutil.copytree(
        REPO_ROOT / "feature_repo", repo_root / "feature_repo", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(REPO_ROOT / ".feastignore", repo_root / ".feastignore")
    # Re-date the newest snapshot to yesterday (so as of today's midnight, as the pipeline would write it):
    # materialize-incremental's first window is now - TTL .. now.
    features = repo_root / "data" / "features"
    run_pipeline(small_raw, features)
    midnight = pd.Timestamp(datetime.now(UTC)).floor("D")
    snapshot = f"{(midnight - pd.Timedelta(days=1)).date().isoformat()}.parquet"
    for view_dir in features.iterdir():
        frame = pd.read_parquet(sorted(view_dir.glob("*.parquet"))[-1])
        for column in ("event_timestamp", "created_timestamp"):
            frame[column] = pd.Series(midnight, index=frame.index).astype("datetime64[us, UTC]")
        for old in view_dir.glob("*.parquet"):
            old.unlink()
        frame.to_parquet(view_dir / snapshot, index=False)
    user_id = int(pd.read_parquet(features / "user_activity" / snapshot)["user_id"].iloc[0])

    _feast(repo_root, "apply")
    _feast(repo_root, "materialize-incremental", datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"))

    port = _free_port()
    server = subprocess.Popen(
        [FEAST, "serve", "--host", "127.0.0.1", "--port", str(port), "--no-access-log"],
        cwd=repo_root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        body = json.dumps(
            {
                "feature_service": "fraud_model_v1",
                "entities": {
                    "user_id": [user_id],
                    "device_id": [1],
                    "merchant_id": [1],
                    "amount": [42.0],
                    "country": ["DE"],
                    "channel": ["web"],
                    "event_timestamp": [datetime.now(UTC).isoformat()],
                },
            }
        ).encode()
        deadline = time.monotonic() + 90
        response = None
        while time.monotonic() < deadline:
            try:
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/get-online-features",
                    data=body,
                    headers={"Content-Type": "application/json"},
                )
                with urllib.request.urlopen(request, timeout=5) as reply:
                    response = json.loads(reply.read())
                break
            except OSError:
                assert server.poll() is None, "feast serve exited"
                time.sleep(0.5)
        assert response is not None, "feast serve did not answer within 90 s"
        names = response["metadata"]["feature_names"]
        values = dict(zip(names, (r["values"][0] for r in response["results"]), strict=True))
        expected = pd.read_parquet(features / "user_activity" / snapshot).set_index("user_id").loc[user_id]
        assert values["txn_count_7d"] == expected["txn_count_7d"]
        assert values["txn_amount"] == 42.0
    finally:
        server.terminate()
        server.wait(timeout=20)
        subprocess.run([FEAST, "teardown"], cwd=repo_root, capture_output=True, timeout=120)
