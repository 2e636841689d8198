"""Historical retrieval, stock Feast vs the ASOF offline store vs DuckDB's bare ASOF join, side by side.

    python -m bench.offline --sizes small          # 1M feature rows x 100k and 1M entity rows
    python -m bench.offline --sizes large          # 10M feature rows x 100k and 1M entity rows
    python -m bench.offline --sizes all --repeat 3

Every case is ``FeatureStore.get_historical_features(entity_df, features).to_df()`` for 4 features of one view
(10k users, 30 days, TTL 2 days unless ``--ttl-days`` says otherwise), timed inside a fresh process; "floor" is
DuckDB's ASOF LEFT JOIN of the same entity frame to the same Parquet, made into a DataFrame, with no TTL and no
tie-break. Variants of a case run one after another, never two at once. Stock's memory grows with the TTL (8 GB
at 10M x 1M with 2 days): it runs under a memory cap (free memory minus 3 GB unless ``--memory-cap`` says
otherwise) and a time limit, and is reported as killed or timed out when it hits them.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench import measure, workloads

SIZES = {
    "small": [(1_000_000, 100_000), (1_000_000, 1_000_000)],
    "large": [(10_000_000, 100_000), (10_000_000, 1_000_000)],
}
STORES = {
    "stock": "duckdb",
    "project": "feature_repo.stores.duckdb_asof.AsofDuckDBOfflineStore",
}
VARIANTS = ["stock", "project", "floor"]
_REDIS = "redis://localhost:6379/14"  # applying definitions needs an online store; retrieval never touches it


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    if args.case:
        measure.report(_run(json.loads(args.case)))
        return 0
    sizes = SIZES["small"] + SIZES["large"] if args.sizes == "all" else SIZES[args.sizes]
    cap = measure.parse_size(args.memory_cap) if args.memory_cap else _free_memory() - 3 * 2**30
    workdir = Path(args.workdir)
    rows = []
    for feature_rows, entity_rows in sizes:
        source = workloads.feature_folder(workdir, feature_rows)
        entities = workloads.entity_file(workdir, entity_rows)
        results: dict[str, list[measure.Outcome]] = {v: [] for v in VARIANTS}
        for run in range(args.repeat):
            for variant in VARIANTS:
                if variant == "stock" and run >= (args.stock_repeat or args.repeat):
                    continue
                case = {"variant": variant, "source": str(source), "entities": str(entities), "workdir": str(workdir)}
                case["ttl_days"] = args.ttl_days
                outcome = measure.run_case("bench.offline", case, args.timeout, cap)
                results[variant].append(outcome)
                print(f"  {feature_rows:>10,} x {entity_rows:>9,}  {variant:<8} {_seconds(outcome)}", file=sys.stderr)
        rows.append(_row(feature_rows, entity_rows, {v: measure.median(r) for v, r in results.items()}))
    measure.print_table(
        f"get_historical_features, 4 features, 10k users, TTL {args.ttl_days:g} days: median of {args.repeat} run(s) "
        f"({args.stock_repeat or args.repeat} for stock), peak RSS of each run's process",
        ["feature rows", "entity rows", "stock", "project", "floor", "stock/project", "project/floor",
         "stock mem", "project mem", "floor mem", "project/stock mem", "cpu s: stock/project/floor"],
        rows,
    )  # fmt: skip
    return 0


def _run(case: dict[str, Any]) -> dict[str, Any]:
    """One measurement, in this (child) process: setup untimed, then the retrieval timed."""
    import pandas as pd

    entity_df = pd.read_parquet(case["entities"])
    if case["variant"] == "floor":
        return _floor(case["source"], entity_df)
    with tempfile.TemporaryDirectory(dir=case["workdir"]) as root:
        ttl = timedelta(days=case.get("ttl_days", 2))
        store = workloads.open_store(
            Path(root), Path(case["source"]), STORES[case["variant"]], "local", _REDIS, ttl=ttl
        )
        with measure.timed() as took:
            frame = store.get_historical_features(entity_df, features=workloads.FEATURE_REFS).to_df()
    return {**took, "rows": len(frame), "found": float(frame[workloads.FEATURES[0]].notna().mean())}


def _floor(source: str, entity_df: Any) -> dict[str, Any]:
    import duckdb

    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    con.register("entities", entity_df)
    features = ", ".join(f"f.{name}" for name in workloads.FEATURES)
    sql = (
        f"SELECT e.*, {features} FROM entities e ASOF LEFT JOIN read_parquet(['{source}']) f "
        "ON e.user_id = f.user_id AND e.event_timestamp >= f.event_timestamp"
    )
    with measure.timed() as took:
        frame = con.sql(sql).to_arrow_table().to_pandas()
    return {**took, "rows": len(frame), "found": float(frame[workloads.FEATURES[0]].notna().mean())}


def _row(feature_rows: int, entity_rows: int, best: dict[str, measure.Outcome]) -> list[str]:
    stock, project, floor = best["stock"], best["project"], best["floor"]
    return [
        f"{feature_rows:,}",
        f"{entity_rows:,}",
        _seconds(stock),
        _seconds(project),
        _seconds(floor),
        _ratio(stock.seconds, project.seconds),
        _ratio(project.seconds, floor.seconds),
        measure.gigabytes(stock.peak_rss) if stock.failure is None else stock.failure,
        measure.gigabytes(project.peak_rss),
        measure.gigabytes(floor.peak_rss),
        _ratio(project.peak_rss, stock.peak_rss if stock.failure is None else None),
        " / ".join(f"{o.cpu_seconds:.1f}" if o.cpu_seconds is not None else "-" for o in (stock, project, floor)),
    ]


def _seconds(outcome: measure.Outcome) -> str:
    return outcome.failure if outcome.failure else f"{outcome.seconds:.2f} s"


def _ratio(numerator: float | None, denominator: float | None) -> str:
    return f"{numerator / denominator:.2f}x" if numerator and denominator else "-"


def _free_memory() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 16 * 2**30


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.offline", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", choices=["small", "large", "all"], default="small")
    parser.add_argument("--repeat", type=int, default=3, help="runs per variant and size; the table shows medians")
    parser.add_argument("--stock-repeat", type=int, help="runs of stock per size (default: --repeat); it is slow")
    parser.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "skewless-bench"))
    parser.add_argument("--timeout", type=float, default=900, help="seconds before a run is killed")
    parser.add_argument("--memory-cap", help="kill a run above this RSS, e.g. 18GB (default: free memory - 3 GB)")
    parser.add_argument("--ttl-days", type=float, default=2, help="the view's TTL; stock's cost grows with it")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
