"""`python -m bench.monitor`: wall time of `skewless monitor` over one day of 1M logged predictions.

The day is made of real logged decisions (the worker's Parquet, from `make demo` or any prediction log folder),
resampled to ``--rows`` rows spread over the day, with fresh transaction ids, and written the way the worker
writes them: one file per batch of 500 decisions under ``day=YYYY-MM-DD/``. Then the monitor runs ``--repeat``
times against the version's reference profile, each in a fresh process (imports and the MLflow connection
included), and the median wall time is printed, with each run's CPU time and the load average beside it.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
WORKER_BATCH = 500


def synthesize(source: Path, out: Path, day: date, rows: int, seed: int = 0) -> int:
    """Write ``rows`` resampled decisions from the logs under ``source`` as ``out/day=<day>/``; files written."""
    logged = ds.dataset(source, format="parquet", partitioning="hive").to_table()
    logged = logged.drop_columns([c for c in ("day",) if c in logged.column_names])
    if logged.num_rows == 0:
        raise SystemExit(f"bench-monitor: no logged decisions under {source}; run `make demo` first")
    rng = np.random.default_rng(seed)
    table = logged.take(pa.array(rng.integers(0, logged.num_rows, rows)))
    start_us = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1e6)
    times = np.sort(start_us + rng.integers(0, 86_400_000_000, rows)).astype("int64") * 1000
    event_type = table.schema.field("event_timestamp").type
    table = table.set_column(
        table.schema.get_field_index("event_timestamp"), "event_timestamp", pa.array(times, event_type)
    )
    ids = pc.binary_join_element_wise(pa.array(np.arange(rows).astype(str)), pa.scalar("b"), "")
    table = table.set_column(table.schema.get_field_index("txn_id"), "txn_id", ids)
    folder = out / f"day={day.isoformat()}"
    folder.mkdir(parents=True, exist_ok=True)
    files = 0
    for first in range(0, rows, WORKER_BATCH):
        last = min(first + WORKER_BATCH, rows) - 1
        pq.write_table(table.slice(first, WORKER_BATCH), folder / f"{first}-0_{last}-0.parquet", compression="zstd")
        files += 1
    return files


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _load() -> str:
    return " ".join(f"{v:.1f}" for v in os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=ROOT / "data" / "predictions", help="logged decisions")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", type=Path, default=None, help="write the synthetic logs here and keep them")
    args = parser.parse_args()
    day = datetime.now(UTC).date() - timedelta(days=1)
    with tempfile.TemporaryDirectory(prefix="bench-monitor-") as tmp:
        logs = args.keep or Path(tmp) / "predictions"
        started = time.perf_counter()
        files = synthesize(args.source, logs, day, args.rows)
        print(f"wrote {args.rows:,} decisions for {day} in {files:,} files in {time.perf_counter() - started:.1f} s")
        command = [str(BIN / "skewless"), "monitor", "--date", day.isoformat(), "--logs", str(logs)]
        command += ["--no-publish", "--out", str(Path(tmp) / "report")]
        walls = []
        for i in range(args.repeat):
            started, cpu_before = time.perf_counter(), _children_cpu()
            done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=os.environ.copy())
            walls.append(time.perf_counter() - started)
            if done.returncode not in (0, 1):
                print(done.stdout, done.stderr, sep="\n", file=sys.stderr)
                return done.returncode
            cpu = _children_cpu() - cpu_before
            print(f"run {i + 1}: {walls[-1]:.1f} s wall, {cpu:.1f} s CPU (exit {done.returncode}; load {_load()})")
        runs = ", ".join(f"{w:.1f}" for w in walls)
        print(f"monitor over {args.rows:,} logged predictions: median {statistics.median(walls):.1f} s ({runs} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
