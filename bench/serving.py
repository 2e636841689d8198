"""`make bench-serving`: feast serve vs Skewless /score vs a bare FastAPI endpoint, side by side, under wrk.

Needs the demo's state (`make demo`: features in Redis, a champion in the registry). Each server runs alone
with one worker and no access log, is warmed up, then loaded by the same wrk at concurrency 1 and 8.
Prints requests/s, p50 and p99 and the ratios; then the time of one 1,000-transaction /score/batch call.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

LUA = """
local bodies = {BODIES}
local i = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  i = i %% #bodies + 1
  return wrk.format(nil, "%s", nil, bodies[i])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('RESULT {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p99_us": %%d, ' ..
    '"errors": %%d, "non2xx": %%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status))
end
"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _transactions(n: int) -> list[dict]:
    files = sorted((ROOT / "data" / "raw" / "transactions").glob("*.parquet"))
    if not files:
        sys.exit("bench-serving: no demo data; run `make demo` first")
    frame = pd.read_parquet(files[-1]).sample(n, random_state=1)
    now = datetime.now(UTC).isoformat()
    return [
        {"txn_id": f"b{r.txn_id}", "user_id": int(r.user_id), "device_id": int(r.device_id),
         "merchant_id": int(r.merchant_id), "amount": float(r.amount), "currency": r.currency,
         "country": r.country, "channel": r.channel, "timestamp": now}
        for r in frame.itertuples()
    ]  # fmt: skip


def _feast_body(t: dict) -> dict:
    return {
        "feature_service": "fraud_model_v1",
        "entities": {
            "user_id": [t["user_id"]], "device_id": [t["device_id"]], "merchant_id": [t["merchant_id"]],
            "amount": [t["amount"]], "country": [t["country"]], "channel": [t["channel"]],
            "event_timestamp": [t["timestamp"]],
        },
    }  # fmt: skip


def _wait(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not come up")


def _wait_runtime(url: str, timeout: float = 180) -> str:
    """The service scores with GTIL until its tree model is compiled (seconds, once per model): wait for that."""
    deadline = time.monotonic() + timeout
    while True:
        with urllib.request.urlopen(url, timeout=2) as reply:
            runtime = str(json.load(reply).get("model_runtime"))
        if runtime != "gtil" or time.monotonic() > deadline:
            return runtime
        time.sleep(0.5)


def _wrk(url: str, bodies: list[str], path: str, connections: int, seconds: int) -> dict:
    lua = LUA.replace("{BODIES}", "{" + ",".join(json.dumps(b) for b in bodies) + "}") % path
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(lua)
    threads = min(connections, 2)
    out = subprocess.run(
        ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "-s", f.name, url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    os.unlink(f.name)
    line = next(x for x in out.splitlines() if x.startswith("RESULT "))
    result = json.loads(line.removeprefix("RESULT "))
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    return result


def _run_server(cmd: list[str], ready_url: str, env: dict | None = None) -> subprocess.Popen:
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _wait(ready_url)
    return proc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--workers", type=int, default=1, help="server processes, the same for all three")
    args = parser.parse_args()
    txns = _transactions(200)
    score_bodies = [json.dumps(t) for t in txns]
    feast_bodies = [json.dumps(_feast_body(t)) for t in txns]
    feast_port, score_port, bare_port = _port(), _port(), _port()
    feast_cmd = [str(BIN / "feast"), "serve", "--host", "127.0.0.1", "--port", str(feast_port)]
    workers = str(args.workers)
    feast_cmd += ["--workers", workers, "--no-access-log"]
    score_cmd = [str(BIN / "skewless"), "serve", "--port", str(score_port), "--workers", workers]
    bare_cmd = [str(BIN / "uvicorn"), "bench.bare_app:app", "--port", str(bare_port), "--workers", workers]
    bare_cmd += ["--no-access-log", "--log-level", "warning"]
    targets = [
        ("feast serve (features only)", feast_cmd, feast_port, "/get-online-features", feast_bodies, "/health"),
        ("skewless /score (features + model)", score_cmd, score_port, "/score", score_bodies, "/ready"),
        ("bare FastAPI (constant)", bare_cmd, bare_port, "/score", score_bodies, "/docs"),
    ]
    results: dict[str, dict[int, dict]] = {}
    batch_ms: list[float] = []
    flagged: Counter[str] = Counter()
    for name, cmd, port, path, bodies, ready in targets:
        base = f"http://127.0.0.1:{port}"
        proc = _run_server(cmd, base + ready)
        try:
            if ready == "/ready":
                runtime = _wait_runtime(base + ready)
                print(f"{name}: model runtime {runtime}")
            _wrk(base, bodies, path, 8, 2)  # warm-up
            results[name] = {c: _wrk(base, bodies, path, c, args.seconds) for c in (1, 8)}
            if path == "/score" and "skewless" in name:
                body = json.dumps(
                    {"transactions": [{**t, "txn_id": f"{t['txn_id']}-{i}"} for i in range(5) for t in txns]}
                ).encode()
                for _ in range(12):
                    started = time.perf_counter()
                    req = urllib.request.Request(
                        base + "/score/batch", data=body, headers={"Content-Type": "application/json"}
                    )
                    with urllib.request.urlopen(req, timeout=30) as reply:
                        assert reply.status == 200
                        answer = reply.read()
                    batch_ms.append((time.perf_counter() - started) * 1000)
                # Flagged transactions get reasons, a prediction per feature each: the batch's time depends on them.
                flagged = Counter(r["recommendation"] for r in json.loads(answer)["results"])
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    feast = results["feast serve (features only)"]
    print(f"\n{args.workers} worker process(es) per server")
    print(f"{'target':<38}{'conc':>5}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'vs feast':>10}")
    for name, by_conc in results.items():
        for conc, r in by_conc.items():
            ratio = r["rps"] / feast[conc]["rps"]
            errors = r["errors"] + r["non2xx"]
            line = f"{name:<38}{conc:>5}{r['rps']:>10,.0f}{r['p50_us'] / 1000:>9.2f}{r['p99_us'] / 1000:>9.2f}"
            print(f"{line}{errors:>8}{ratio:>9.2f}x")
    if batch_ms:
        median = statistics.median(batch_ms[2:])
        print(f"\n/score/batch of 1,000 transactions: median {median:.1f} ms over {len(batch_ms) - 2} calls")
        print(f"  flagged: {flagged['review']} review, {flagged['block']} block (each explained by its reasons)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
