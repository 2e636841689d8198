"""`skewless canary start | status | evaluate | watch | stop | replay`, `skewless rollback`, `skewless retrain`."""

from __future__ import annotations

import argparse
import getpass
import json
import time
import urllib.error
import urllib.request

from skewless.cli_types import register_command
from skewless.settings import Settings


def _version(settings: Settings, value: str) -> int:
    from training.cli import _resolve, _version_or_alias

    try:
        return _resolve(settings, _version_or_alias(value))
    except argparse.ArgumentTypeError as exc:
        from skewless.errors import BadInputError

        raise BadInputError(f"--version: {exc}") from exc


def _start(args: argparse.Namespace, settings: Settings) -> int:
    from release import state
    from release.watch import events_client
    from release.window import stream_position

    version = _version(settings, args.version)
    events = events_client(settings)
    canary = state.start(
        state.Registry(settings), events, version, stream_position(events, settings.decision_stream),
        by=args.by, drill=args.drill,
    )  # fmt: skip
    assert canary.bounds is not None
    drill = " (a drill: it can be rolled back, never promoted)" if canary.drill else ""
    print(f"{settings.model_name} v{version} is @challenger, judged against champion v{canary.champion}{drill}")
    print(f"  bounds: {canary.bounds.describe()}")
    print("  the service routes its share within its poll interval; `skewless canary watch` gives the verdict")
    return 0


def _status(args: argparse.Namespace, settings: Settings) -> int:
    from release.watch import events_client, status_lines

    for line in status_lines(settings, events_client(settings)):
        print(line)
    return 0


def _evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from release.watch import Evaluator, describe, events_client

    print(describe(Evaluator(settings, events_client(settings)).run_once()))
    return 0


def _watch(args: argparse.Namespace, settings: Settings) -> int:
    from release.watch import watch

    result = watch(settings, interval=args.interval, until_decided=args.until_decided, timeout=args.timeout)
    if args.until_decided and result is None:
        print(f"canary: no verdict within {args.timeout:g} s; it keeps running")
        return 1
    return 0


def _stop(args: argparse.Namespace, settings: Settings) -> int:
    from release import state
    from release.watch import events_client

    version = state.stop(state.Registry(settings), events_client(settings), f"stopped by {args.by}: {args.reason}")
    print("no canary running" if version is None else f"canary of v{version} rolled back: @challenger removed")
    return 0


def _replay(args: argparse.Namespace, settings: Settings) -> int:
    from release import state
    from release.traffic import replay, serves_challenger

    challenger = state.Registry(settings).aliases().get("challenger")
    if challenger is not None and not serves_challenger(args.url, int(challenger), timeout=60):
        print(f"warning: the service has not loaded challenger v{challenger} within 60 s (see its /ready)")
    started = time.perf_counter()
    answers = replay(settings, args.url, args.n, args.skip)
    seconds = time.perf_counter() - started
    print(f"replayed {sum(answers.values()):,} recent transactions to {args.url} in {seconds:.1f} s:")
    for (role, version, recommendation), count in sorted(
        answers.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2])
    ):
        print(f"  {role:<10} v{version:<3} {recommendation:<8} {count:>6,}")
    return 0


def _rollback(args: argparse.Namespace, settings: Settings) -> int:
    from release import state
    from release.watch import events_client

    started = time.perf_counter()
    done = state.rollback_champion(
        state.Registry(settings), events_client(settings), to=args.to, reason=args.reason, by=args.by
    )
    if done.stopped_canary is not None:
        print(f"canary of v{done.stopped_canary} stopped first: it was judged against v{done.leaving}")
    print(
        f"{settings.model_name}@champion: v{done.leaving} -> v{done.restored} "
        f"({time.perf_counter() - started:.1f} s); services swap within {settings.model_poll_seconds:g} s"
    )
    if not done.event_sent:
        print(f"warning: the release stream {settings.release_stream!r} did not take the event (Redis down?)")
    for url in args.notify:
        print(f"  {url}: {_notify(url)}")
    return 0


def _notify(url: str) -> str:
    request = urllib.request.Request(url.rstrip("/") + "/admin/reload", data=b"", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            body = json.loads(reply.read())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return f"not reached ({exc}); it follows the alias by polling"
    return f"serving v{body.get('model_version')}"


def _retrain(args: argparse.Namespace, settings: Settings) -> int:
    from release.retrain import retrain

    started = time.perf_counter()
    outcome = retrain(settings, seed=args.seed, feature_service=args.feature_service, wait_seconds=args.wait)
    print(f"retrain: {'done' if outcome.ok else 'stopped'} in {time.perf_counter() - started:.1f} s")
    if not outcome.ok:
        return outcome.exit_code
    if outcome.verdict is not None and outcome.verdict.outcome == "rolled_back":
        return 1
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    canary = register_command(sub, "canary", "the challenger's canary: start, status, verdict, stop", _status)
    steps = canary.add_subparsers(dest="canary_command", metavar="STEP")

    start = register_command(steps, "start", "make an approved version @challenger and start its canary", _start)
    start.add_argument("--version", required=True, help="number, or an alias such as candidate")
    start.add_argument("--by", default=getpass.getuser(), help="who starts it (recorded)")
    start.add_argument(
        "--drill", action="store_true", help="allow an unapproved version: judged and rolled back, never promoted"
    )
    register_command(steps, "status", "champion, challenger, the canary's window against its bounds", _status)
    register_command(steps, "evaluate", "one pass: judge the window; promote or roll back once it is full", _evaluate)
    watch = register_command(steps, "watch", "evaluate again and again (run one beside the service)", _watch)
    watch.add_argument("--interval", type=float, default=2.0, help="seconds between passes")
    watch.add_argument("--until-decided", action="store_true", help="exit after the first verdict")
    watch.add_argument("--timeout", type=float, default=None, help="with --until-decided: give up after this long")
    stop = register_command(steps, "stop", "roll the running canary back now", _stop)
    stop.add_argument("--reason", required=True)
    stop.add_argument("--by", default=getpass.getuser())
    replay = register_command(steps, "replay", "send recent raw transactions to a running service", _replay)
    replay.add_argument("--url", default="http://127.0.0.1:8000")
    replay.add_argument("--n", type=int, default=2_000, help="how many transactions")
    replay.add_argument("--skip", type=int, default=0, help="leave out the newest SKIP transactions")

    rollback = register_command(sub, "rollback", "serve the previous champion again", _rollback)
    rollback.add_argument("--to", type=int, default=None, help="version to restore (default: the previous champion)")
    rollback.add_argument("--reason", default="manual rollback", help="recorded on the version rolled back")
    rollback.add_argument("--by", default=getpass.getuser())
    rollback.add_argument(
        "--notify", action="append", default=[], metavar="URL", help="service to reload at once (repeatable)"
    )

    retrain = register_command(
        sub, "retrain", "pipeline -> gates -> train -> validate -> @challenger -> canary, unattended", _retrain
    )
    retrain.add_argument("--seed", type=int, default=0)
    retrain.add_argument("--feature-service", default=None, help="default: SKEWLESS_FEATURE_SERVICE")
    retrain.add_argument("--wait", type=float, default=None, metavar="SECONDS", help="wait this long for the verdict")
