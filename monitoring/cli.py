"""`skewless monitor` and `skewless replay`."""

from __future__ import annotations

import argparse
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from skewless.cli_types import day, register_command
from skewless.errors import BadInputError
from skewless.settings import Settings

if TYPE_CHECKING:
    from monitoring.report import MonitorReport

_SHOWN_ALERTS = 20


def _monitor(args: argparse.Namespace, settings: Settings) -> int:
    from monitoring.logs import Window, parse_duration, parse_until
    from monitoring.monitor import MonitorRequest, run_monitor
    from monitoring.thresholds import load_thresholds

    # MLflow draws a progress bar for every artifact it fetches; the monitor fetches one small JSON file.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    thresholds = load_thresholds(args.thresholds)
    if args.print_thresholds:
        print(json.dumps(thresholds.model_dump(), indent=2))
        return 0
    length = parse_duration(args.window)
    if args.date is not None:
        end = datetime(args.date.year, args.date.month, args.date.day, tzinfo=UTC) + timedelta(days=1)
    elif args.until is not None:
        end = parse_until(args.until)
    else:
        end = datetime.now(UTC)
    request = MonitorRequest(
        window=Window.ending(end, length),
        against=args.against,
        model_version=args.model_version,
        thresholds=thresholds,
        logs_dir=args.logs,
    )
    report = run_monitor(settings, request)
    out = args.out or settings.reports_dir / "monitoring" / f"{end:%Y%m%dT%H%M}-{args.window}-{args.against}"
    _write(report, out)
    _print(report, out)
    if report.assessment.alerts and not args.no_publish:
        import redis

        from monitoring.alerts import publish

        client = redis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=2)
        context = {
            "window_start": report.window.start.isoformat(),
            "window_end": report.window.end.isoformat(),
            "model": f"{report.model_name} v{report.model_version}",
            "report": str(out / "report.html"),
        }
        try:
            publish(client, settings.alert_stream, report.assessment.alerts, context)
        finally:
            client.close()
        print(f"alerts published to the Redis stream {settings.alert_stream!r}")
    return report.exit_code


def _write(report: MonitorReport, out: Path) -> None:
    from monitoring.html import render_html
    from monitoring.report import write_json, write_text_atomic

    write_json(report, out / "report.json")
    write_text_atomic(render_html(report), out / "report.html")


def _print(report: MonitorReport, out: Path) -> None:
    a = report.assessment
    v, lat, dec = a.volume, a.latency_ms, a.predictions.decisions
    print(
        f"monitor {report.model_name} v{report.model_version}, window {report.window} against the "
        f"{report.against.replace('-', ' ')} "
        f"({report.baseline.source}, {report.baseline.rows:,} rows)"
    )
    change = f" (x{v['change']:.2f} the previous window)" if v.get("change") is not None else ""
    latency = f"latency p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms" if lat.get("p50") is not None else ""
    print(f"  decisions {v['decisions']:,}{change}; {latency}")
    score = a.predictions.score
    if score is not None and score.psi is not None:
        print(f"  score PSI {score.psi:.3f} ({a.predictions.score_psi_band}), KS {score.distance:.3f}")
    for name in ("block", "review"):
        r = dec[name]
        print(
            f"  {name:<6} share now {_pct(r['current'])}, reference {_pct(r['reference'])}, "
            f"previous window {_pct(r['previous_window'])}"
        )
    by_status: dict[str, list[str]] = {}
    for f in a.features:
        by_status.setdefault(f.status, []).append(f.name)
    print("  features: " + "; ".join(f"{len(names)} {status}" for status, names in sorted(by_status.items())))
    shown = [f for f in a.features if f.status in ("drift", "moderate")]
    if shown:
        print(f"    {'feature':<28} {'status':<9} {'PSI':>7} {'test':>4} {'dist':>6}  missing")
        for f in sorted(shown, key=lambda f: -(f.psi or 0)):
            print(
                f"    {f.name:<28} {f.status:<9} {f.psi or 0:>7.3f} {f.test:>4} {f.distance or 0:>6.3f}  "
                f"{_pct(f.baseline_missing)} -> {_pct(f.current_missing)}"
            )
    for note in report.notes:
        print(f"  note: {note}")
    if a.alerts:
        print(f"ALERTS ({len(a.alerts)}):")
        for alert in a.alerts[:_SHOWN_ALERTS]:
            print(f"  [{alert.kind}] {alert.message}")
        if len(a.alerts) > _SHOWN_ALERTS:
            print(f"  ... and {len(a.alerts) - _SHOWN_ALERTS} more in the report")
    else:
        print("no alerts")
    print(f"report: {out / 'report.html'} (and report.json)")


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.2f}%"


def _replay(args: argparse.Namespace, settings: Settings) -> int:
    from monitoring.replay import DRIFTS, parse_drifts, replay

    drifts = parse_drifts(args.drift)
    if args.reset_realtime:
        from monitoring.replay import reset_realtime

        print(f"real-time aggregates: {reset_realtime(settings):,} keys of state removed")
    if args.warm_only:
        from monitoring.replay import warm_realtime

        if drifts:
            raise BadInputError("--warm-only records the day as it was; it takes no --drift")
        print(f"real-time aggregates: {warm_realtime(settings, args.day):,} payments of {args.day} recorded")
        return 0
    batch = None if args.one_by_one else args.batch
    count, decisions = replay(settings, args.url, args.day, drifts, batch)
    injected = "; ".join(f"{d}: {DRIFTS[d]}" for d in drifts) or "none"
    summary = ", ".join(f"{decisions[k]:,} {k}" for k in ("approve", "review", "block"))
    print(f"replayed {count:,} payments of {args.day} through {args.url} (drift: {injected}): {summary}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    mon = register_command(
        sub,
        "monitor",
        "check logged decisions for drift, missing values and prediction shifts; exit 1 when an alert fires",
        _monitor,
    )
    mon.add_argument("--window", default="1d", help="window length: 30m, 6h, 1d, 2w (default 1d)")
    end = mon.add_mutually_exclusive_group()
    end.add_argument("--until", default=None, help="end of the window, exclusive: YYYY-MM-DD or ISO time (default now)")
    end.add_argument("--date", type=day, default=None, help="a day to check: the window ends at that day's end")
    mon.add_argument(
        "--against", choices=("reference", "previous-window"), default="reference", help="baseline (default reference)"
    )
    mon.add_argument("--model-version", type=int, default=None, help="default: the version with most decisions")
    mon.add_argument("--thresholds", type=Path, default=None, help="JSON file overriding the default thresholds")
    mon.add_argument("--print-thresholds", action="store_true", help="print the effective thresholds as JSON")
    mon.add_argument("--logs", type=Path, default=None, help="prediction log folder (default data/predictions)")
    mon.add_argument("--out", type=Path, default=None, help="report folder (default data/reports/monitoring/...)")
    mon.add_argument("--no-publish", action="store_true", help="do not put the alerts on the Redis stream")

    rep = register_command(sub, "replay", "score a raw day through a running service, optionally drifted", _replay)
    rep.add_argument("--day", type=day, required=True, help="raw day to replay (YYYY-MM-DD)")
    rep.add_argument("--drift", default=None, help="comma-separated: older-users, higher-amounts, broken-country")
    rep.add_argument("--url", default="http://127.0.0.1:8000", help="where the service listens")
    rep.add_argument("--batch", type=int, default=100, help="transactions per /score/batch request")
    rep.add_argument(
        "--one-by-one", action="store_true", help="send each payment to /score on its own, in time order, as live"
    )
    rep.add_argument(
        "--warm-only",
        action="store_true",
        help="only record the day in the real-time aggregates' state (no scoring, no decisions): warms the windows",
    )
    rep.add_argument(
        "--reset-realtime",
        action="store_true",
        help="forget the real-time aggregates' state first (a replay re-sends ids the state may already hold)",
    )
