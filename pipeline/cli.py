"""`skewless pipeline`."""

from __future__ import annotations

import argparse

from skewless.cli_types import day, register_command
from skewless.settings import Settings


def _pipeline(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.run import run_pipeline

    result = run_pipeline(
        settings.raw_dir,
        settings.features_dir,
        args.from_day,
        args.to_day,
        progress=None if args.quiet else print,
        reports_dir=settings.reports_dir,
    )
    if not result.days:
        print("feature tables are up to date; nothing to do")
        return 0
    rows = ", ".join(f"{name} {n:,}" for name, n in result.rows.items())
    print(f"wrote {len(result.days)} day(s) {result.days[0]}..{result.days[-1]}: {rows} -> {settings.features_dir}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    pipe = register_command(sub, "pipeline", "compute feature tables from raw sources (incremental by day)", _pipeline)
    pipe.add_argument("--from", dest="from_day", type=day, default=None, help="first day to (re)compute")
    pipe.add_argument("--to", dest="to_day", type=day, default=None, help="last day to (re)compute")
    pipe.add_argument("--quiet", action="store_true", help="no per-day progress")
