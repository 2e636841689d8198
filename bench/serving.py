"""`make bench-serving`: feast serve vs Skewless /score vs a bare FastAPI endpoint, side by side, under wrk.

Needs the demo's state (`make demo`: features in Redis, a champion in the registry). The three servers run side by
side, each with one worker and no access log, and are warmed up; then each is loaded in turn by the same wrk at
concurrency 1 and 8, for ``--rounds`` interleaved rounds. Prints the rounds' medians of requests/s, p50 and p99
(and the p99s' range) and the ratios, and the time of a /score/batch of 1,000 transactions, called after each
round's wrk runs: 1,000 recent transactions other than wrk's (1,000 customers), and for comparison the batch of
earlier versions of this benchmark, wrk's 200 five times over (200 customers, five payments each in one second).

The benchmark leaves the demo's state as it found it: the service logs its decisions to a stream of its own
(deleted at the end), and the real-time state its transactions touch is saved before and put back after. Without
that, each run's transactions (stamped now) stayed in their customers' windows, the next run's looked like
velocity fraud, and more of them were flagged and explained: the figures drifted with the runs before.
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
import redis

from serving.realtime import RealtimeAggregates
from skewless.settings import Settings
from skewless.store import open_store

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
STREAM = "skewless:bench:decisions"  # the service's decision log while benchmarked
BATCH = 1_000
BATCH_CALLS = 4  # per batch and round, after the round's wrk runs (two before the first round warm up, not counted)

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


class _KeptState:
    """Saves the real-time state that scoring ``transactions`` touches (``DUMP``) and puts it back on exit
    (``RESTORE``; keys that were not there are deleted), with their time to live; on exit the benchmark's decision
    stream (``STREAM``) is deleted too."""

    def __init__(self, transactions: list[dict]) -> None:
        self._client = redis.Redis.from_url(Settings().redis_url)
        store = open_store(ROOT)
        keys = {}  # every feature service's windowed views: whichever the champion reads
        for service in store.list_feature_services():
            aggregates = RealtimeAggregates.for_service(self._client, store, service)
            keys.update(dict.fromkeys(aggregates.state_keys(transactions)))
        self._keys = list(keys)
        self._saved: list[tuple[str, bytes | None, int]] = []

    def __enter__(self) -> _KeptState:
        with self._client.pipeline(transaction=False) as pipe:
            for key in self._keys:
                pipe.dump(key)
                pipe.pttl(key)
            replies = pipe.execute()
        self._saved = [(k, replies[2 * i], replies[2 * i + 1]) for i, k in enumerate(self._keys)]
        return self

    def __exit__(self, *exc: object) -> None:
        with self._client.pipeline(transaction=False) as pipe:
            for key, dumped, ttl in self._saved:
                if dumped is None:
                    pipe.delete(key)
                else:
                    pipe.restore(key, max(ttl, 0), dumped, replace=True)
            pipe.delete(STREAM)
            pipe.execute()
        self._client.close()


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


def _server_env(extra: dict) -> dict:
    """This environment and ``extra``, without the metrics folder Feast's import made for this process: Feast sets
    ``PROMETHEUS_MULTIPROC_DIR`` (and ``..._MULTIPROCESS_DIR``) to a ``feast_metrics_*`` temporary folder when they
    are unset (``feast/metrics.py``), and a server inheriting them would keep every metric in prometheus_client's
    multiprocess mode (memory-mapped files), which it would not run with when started from a shell. One the user
    set is kept."""
    env = {**os.environ, **extra}
    for name in ("PROMETHEUS_MULTIPROC_DIR", "PROMETHEUS_MULTIPROCESS_DIR"):
        if name in env and Path(env[name]).name.startswith("feast_metrics_"):
            del env[name]
    return env


def _run_server(cmd: list[str], ready_url: str, env: dict | None = None) -> subprocess.Popen:
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=_server_env(env or {}), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait(ready_url)
    except RuntimeError:
        proc.terminate()
        raise
    return proc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10, help="length of one wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="wrk runs per server and concurrency, interleaved")
    parser.add_argument("--workers", type=int, default=1, help="server processes, the same for all three")
    args = parser.parse_args()
    sample = _transactions(200 + BATCH)
    txns, batch_txns = sample[:200], sample[200:]
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
    runs: dict[str, dict[int, list[dict]]] = {name: {1: [], 8: []} for name, *_ in targets}
    batch_url = f"http://127.0.0.1:{score_port}/score/batch"
    batches = {  # name -> body; the first is the figure
        f"{BATCH:,} distinct": json.dumps({"transactions": batch_txns}).encode(),
        "200 x 5": json.dumps(
            {"transactions": [{**t, "txn_id": f"{t['txn_id']}-{i}"} for i in range(BATCH // 200) for t in txns]}
        ).encode(),
    }
    batch_ms: dict[str, list[list[float]]] = {name: [] for name in batches}  # per round
    flagged: dict[str, Counter[str]] = {}
    procs = []
    with _KeptState(sample):
        try:
            for name, cmd, port, path, bodies, ready in targets:
                base = f"http://127.0.0.1:{port}"
                procs.append(_run_server(cmd, base + ready, {"SKEWLESS_DECISION_STREAM": STREAM}))
                if ready == "/ready":
                    print(f"{name}: model runtime {_wait_runtime(base + ready)}")
                _wrk(base, bodies, path, 8, 2)  # warm-up
            for body in batches.values():  # warm-up; the first call records the transactions, later ones retry
                _batch(batch_url, body, 2)
            # All three are up; each run loads one of them while the others idle. Rounds interleave the servers, so
            # a slow stretch of a shared machine falls on all of them, and the figures are the rounds' medians.
            for round_no in range(args.rounds):
                for conc in (1, 8):
                    for name, _cmd, port, path, bodies, _ready in targets:
                        runs[name][conc].append(_wrk(f"http://127.0.0.1:{port}", bodies, path, conc, args.seconds))
                for name, body in list(batches.items())[:: -1 if round_no % 2 else 1]:  # the order alternates
                    times, answer = _batch(batch_url, body, BATCH_CALLS)
                    batch_ms[name].append(times)
                    # Flagged transactions get reasons, a prediction per feature each: the time depends on them.
                    flagged[name] = Counter(r["recommendation"] for r in json.loads(answer)["results"])
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(timeout=30)
    _report(runs, args)
    print(f"\n/score/batch of {BATCH:,} transactions, {BATCH_CALLS} calls after each round's wrk runs:")
    for name, rounds in batch_ms.items():
        medians = [statistics.median(times) for times in rounds]
        median = statistics.median([ms for times in rounds for ms in times])
        print(
            f"  {name:<12} median {median:6.1f} ms over {sum(map(len, rounds))} calls; rounds' medians "
            f"{min(medians):.1f}-{max(medians):.1f} ms; flagged {flagged[name]['review']} review, "
            f"{flagged[name]['block']} block (each explained by its reasons)"
        )
    return 0


def _batch(url: str, body: bytes, calls: int) -> tuple[list[float], bytes]:
    """``calls`` POSTs of ``body`` one after the other: each one's time in ms, and the last answer."""
    times = []
    answer = b""
    for _ in range(calls):
        started = time.perf_counter()
        request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as reply:
            if reply.status != 200:
                raise RuntimeError(f"/score/batch answered {reply.status}")
            answer = reply.read()
        times.append((time.perf_counter() - started) * 1000)
    return times, answer


def _report(runs: dict[str, dict[int, list[dict]]], args: argparse.Namespace) -> None:
    """Each cell: the median over the rounds (p99: also the lowest and highest); "vs feast": the median of the
    rounds' own ratios, each round's two runs made minutes apart at most."""
    feast = runs["feast serve (features only)"]
    print(f"\n{args.workers} worker process(es) per server; medians of {args.rounds} interleaved {args.seconds} s runs")
    head = f"{'target':<38}{'conc':>5}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'p99 range':>17}{'errors':>8}"
    print(f"{head}{'vs feast':>10}")
    for name, by_conc in runs.items():
        for conc, results in by_conc.items():
            rps = statistics.median(r["rps"] for r in results)
            p50 = statistics.median(r["p50_us"] for r in results) / 1000
            p99s = [r["p99_us"] / 1000 for r in results]
            ratio = statistics.median(r["rps"] / f["rps"] for r, f in zip(results, feast[conc], strict=True))
            errors = sum(r["errors"] + r["non2xx"] for r in results)
            spread = f"{min(p99s):.2f}-{max(p99s):.2f}"
            line = f"{name:<38}{conc:>5}{rps:>10,.0f}{p50:>9.2f}{statistics.median(p99s):>9.2f}{spread:>17}"
            print(f"{line}{errors:>8}{ratio:>9.2f}x")


if __name__ == "__main__":
    raise SystemExit(main())
