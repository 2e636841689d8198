"""`skewless generate`."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from pathlib import Path

from skewless.cli_types import day, register_command
from skewless.settings import Settings


def _generate(args: argparse.Namespace, settings: Settings) -> int:
    from data.generate import GeneratorConfig, generate

    start = args.start or (datetime.now(UTC).date() - timedelta(days=args.days))
    config = GeneratorConfig(
        users=args.users, days=args.days, seed=args.seed, start=start, txns_per_user_day=args.txns_per_user_day
    )
    config.validate()
    summary = generate(config, settings.raw_dir, progress=None if args.quiet else print)
    print(
        f"generated {summary.days} days from {start}: {summary.transactions:,} transactions "
        f"({summary.fraud_rate:.2%} fraud), {summary.labels:,} labels, {summary.behaviour_events:,} logins, "
        f"{summary.devices:,} devices, {summary.users:,} users -> {settings.raw_dir}"
    )
    return 0


def _inject_fault(args: argparse.Namespace, settings: Settings) -> int:
    from data.faults import FAULTS, inject_fault

    broken = inject_fault(settings.raw_dir, args.into, args.fault, args.day)
    print(f"copied {settings.raw_dir} to {args.into / 'data' / 'raw'}; broke {broken.name}: {FAULTS[args.fault]}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    gen = register_command(sub, "generate", "write synthetic raw sources (Parquet, one file per day)", _generate)
    gen.add_argument("--users", type=int, default=5_000, help="number of customer accounts (10..50M)")
    gen.add_argument("--days", type=int, default=14, help="number of days (1..3660)")
    gen.add_argument("--seed", type=int, default=7, help="random seed; same seed, same bytes")
    gen.add_argument("--start", type=day, default=None, help="first day (default: DAYS days before today)")
    gen.add_argument("--txns-per-user-day", type=float, default=1.0, help="average payments per user per day")
    gen.add_argument("--quiet", action="store_true", help="no per-day progress")

    fault = register_command(sub, "inject-fault", "copy the raw sources with one day broken, for drills", _inject_fault)
    fault.add_argument("--into", type=Path, required=True, help="scratch repo root for the broken copy")
    fault.add_argument("--fault", default="negative-amounts", help="negative-amounts, unknown-currency, retyped-amount")
    fault.add_argument("--day", type=day, default=None, help="day to break (default: the newest)")
