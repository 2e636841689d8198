"""The `skewless` command: one subcommand per stage. Thin: parse, call the stage, print, exit."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta

from skewless.errors import SkewlessError
from skewless.settings import Settings


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a day as YYYY-MM-DD, got {value!r}") from None


def _cmd_generate(args: argparse.Namespace, settings: Settings) -> int:
    from data.generate import GeneratorConfig, generate

    start = args.start or (datetime.now(UTC).date() - timedelta(days=args.days))
    config = GeneratorConfig(
        users=args.users,
        days=args.days,
        seed=args.seed,
        start=start,
        txns_per_user_day=args.txns_per_user_day,
    )
    config.validate()
    summary = generate(config, settings.raw_dir, progress=None if args.quiet else print)
    print(
        f"generated {summary.days} days from {start}: {summary.transactions:,} transactions "
        f"({summary.fraud_rate:.2%} fraud), {summary.labels:,} labels, {summary.behaviour_events:,} logins, "
        f"{summary.devices:,} devices, {summary.users:,} users -> {settings.raw_dir}"
    )
    return 0


def _cmd_pipeline(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.run import run_pipeline

    result = run_pipeline(
        settings.raw_dir,
        settings.features_dir,
        args.from_day,
        args.to_day,
        progress=None if args.quiet else print,
    )
    if not result.days:
        print("feature tables are up to date; nothing to do")
        return 0
    rows = ", ".join(f"{name} {n:,}" for name, n in result.rows.items())
    print(f"wrote {len(result.days)} day(s) {result.days[0]}..{result.days[-1]}: {rows} -> {settings.features_dir}")
    return 0


def _cmd_inspect(args: argparse.Namespace, settings: Settings) -> int:
    from skewless.summary import print_summary

    print_summary(settings, service_name=args.feature_service or settings.feature_service, sample=args.sample)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="skewless", description="Fraud detection without training-serving skew.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    gen = sub.add_parser("generate", help="write synthetic raw sources (Parquet, one file per day)")
    gen.add_argument("--users", type=int, default=5_000, help="number of customer accounts (10..50M)")
    gen.add_argument("--days", type=int, default=14, help="number of days (1..3660)")
    gen.add_argument("--seed", type=int, default=7, help="random seed; same seed, same bytes")
    gen.add_argument("--start", type=_day, default=None, help="first day (default: DAYS days before today)")
    gen.add_argument("--txns-per-user-day", type=float, default=1.0, help="average payments per user per day")
    gen.add_argument("--quiet", action="store_true", help="no per-day progress")
    gen.set_defaults(handler=_cmd_generate)

    pipe = sub.add_parser("pipeline", help="compute feature tables from raw sources (incremental by day)")
    pipe.add_argument("--from", dest="from_day", type=_day, default=None, help="first day to (re)compute")
    pipe.add_argument("--to", dest="to_day", type=_day, default=None, help="last day to (re)compute")
    pipe.add_argument("--quiet", action="store_true", help="no per-day progress")
    pipe.set_defaults(handler=_cmd_pipeline)

    insp = sub.add_parser("inspect", help="summarise a training set and online vectors of a feature service")
    insp.add_argument("--feature-service", default=None, help="feature service name (default: fraud_model_v1)")
    insp.add_argument("--sample", type=int, default=3, help="online feature vectors to print")
    insp.set_defaults(handler=_cmd_inspect)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    settings = Settings()
    # Feast resolves feature source paths against the working directory, like `feast` itself run at the root.
    os.chdir(settings.repo_root)
    handler: Callable[[argparse.Namespace, Settings], int] = args.handler
    try:
        return handler(args, settings)
    except SkewlessError as exc:
        print(f"skewless {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"skewless {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
