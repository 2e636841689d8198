"""Materialization into Redis, stock Feast (LocalComputeEngine) vs the streaming engine, side by side.

    python -m bench.materialize --sizes small      # 500k entities
    python -m bench.materialize --sizes large      # 5M entities
    python -m bench.materialize --sizes all --repeat 3

Every case is ``FeatureStore.materialize(start, end)`` of one view with 4 features whose source holds two daily
snapshots of every entity (so the latest row per entity has to be picked), into the Redis at ``--redis-url``
(default: the server at ``REDIS_URL``, database 14), timed inside a fresh process. Each run writes under its own
Feast project and its keys are deleted afterwards. Throughput is entities written per second. Stock reads the
whole window into memory (about 2.8 GB per 500k entities), so at 5M it runs under a memory cap and a time limit
and is reported as killed or timed out when it hits them. Redis's own memory is not part of the peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

from bench import measure, workloads
from bench.offline import _free_memory, _ratio, _seconds

SIZES = {"small": [500_000], "large": [5_000_000]}
STORES = {
    "stock": ("duckdb", "local"),
    "project": (
        "feature_repo.stores.duckdb_asof.AsofDuckDBOfflineStore",
        "feature_repo.stores.streaming_engine.StreamingMaterializationEngine",
    ),
}


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    if args.case:
        measure.report(_run(json.loads(args.case)))
        return 0
    sizes = SIZES["small"] + SIZES["large"] if args.sizes == "all" else SIZES[args.sizes]
    cap = measure.parse_size(args.memory_cap) if args.memory_cap else _free_memory() - 3 * 2**30
    workdir = Path(args.workdir)
    rows = []
    for entities in sizes:
        source = workloads.snapshot_folder(workdir, entities)
        results: dict[str, list[measure.Outcome]] = {v: [] for v in STORES}
        for run in range(args.repeat):
            for variant in STORES:
                if variant == "stock" and run >= (args.stock_repeat or args.repeat):
                    continue
                case = {"variant": variant, "source": str(source), "workdir": str(workdir), "redis": args.redis_url}
                outcome = measure.run_case("bench.materialize", case, args.timeout, cap)
                results[variant].append(outcome)
                print(f"  {entities:>10,}  {variant:<8} {_seconds(outcome)}", file=sys.stderr)
        best = {v: measure.median(r) for v, r in results.items()}
        rows.append(_row(entities, best))
    measure.print_table(
        f"feast materialize, 4 features, 2 snapshots per entity, into Redis: median of {args.repeat} run(s) "
        f"({args.stock_repeat or args.repeat} for stock), peak RSS of each run's process",
        [
            "entities",
            "stock",
            "project",
            "stock rows/s",
            "project rows/s",
            "speed-up",
            "stock mem",
            "project mem",
            "cpu s: stock/project",
        ],
        rows,
    )
    return 0


def _run(case: dict[str, Any]) -> dict[str, Any]:
    """One materialization in this (child) process: setup and clean-up untimed."""
    import redis

    offline, engine = STORES[case["variant"]]
    start = workloads.START
    end = start + timedelta(days=3)
    with tempfile.TemporaryDirectory(dir=case["workdir"]) as root:
        store = workloads.open_store(Path(root), Path(case["source"]), offline, engine, case["redis"])
        client = redis.Redis.from_url(case["redis"])
        try:
            with measure.timed() as took:
                store.materialize(start, end)
            written = sum(1 for _ in client.scan_iter(match=f"*{store.project}", count=10_000))
        finally:
            _drop(client, store.project)
    return {**took, "written": written}


def _drop(client: Any, project: str) -> None:
    batch = []
    for key in client.scan_iter(match=f"*{project}", count=10_000):
        batch.append(key)
        if len(batch) == 10_000:
            client.unlink(*batch)
            batch.clear()
    if batch:
        client.unlink(*batch)


def _row(entities: int, best: dict[str, measure.Outcome]) -> list[str]:
    stock, project = best["stock"], best["project"]
    return [
        f"{entities:,}",
        _seconds(stock),
        _seconds(project),
        _rate(stock),
        _rate(project),
        _ratio(stock.seconds, project.seconds),
        measure.gigabytes(stock.peak_rss) if stock.failure is None else stock.failure,
        measure.gigabytes(project.peak_rss),
        " / ".join(f"{o.cpu_seconds:.1f}" if o.cpu_seconds is not None else "-" for o in (stock, project)),
    ]


def _rate(outcome: measure.Outcome) -> str:
    if outcome.failure or not outcome.seconds:
        return "-"
    return f"{outcome.extra.get('written', 0) / outcome.seconds:,.0f}"


def _bench_redis_url() -> str:
    """REDIS_URL's server, database 14: the demo uses 0 and the tests 15."""
    base = urlparse(os.environ.get("REDIS_URL", "redis://localhost:6379"))
    return urlunparse(base._replace(path="/14"))


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.materialize", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", choices=["small", "large", "all"], default="small")
    parser.add_argument("--repeat", type=int, default=3, help="runs per variant and size; the table shows medians")
    parser.add_argument("--stock-repeat", type=int, help="runs of stock per size (default: --repeat); it is slow")
    parser.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "skewless-bench"))
    parser.add_argument("--redis-url", default=_bench_redis_url(), help="default: REDIS_URL's server, database 14")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds before a run is killed")
    parser.add_argument("--memory-cap", help="kill a run above this RSS, e.g. 18GB (default: free memory - 3 GB)")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
