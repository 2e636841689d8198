"""`skewless validate`: run a suite on demand, or re-profile its thresholds from good data."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from skewless.cli_types import day, register_command
from skewless.errors import BadInputError
from skewless.settings import Settings


def _raw(args: argparse.Namespace, settings: Settings) -> int:
    from data import schemas
    from data.files import day_file, list_days
    from validation.gates import raw_files_gate

    files = [
        day_file(settings.raw_dir / source, d)
        for source in schemas.SOURCES
        for d in list_days(settings.raw_dir / source)
        if args.day is None or d == args.day
    ]
    if not files:
        where = f"for {args.day} " if args.day else ""
        raise BadInputError(f"{settings.raw_dir}: no raw files {where}to validate; run `skewless generate` first")
    # Always validates; files that pass are recorded, so a pipeline run after this one need not check them again.
    report = raw_files_gate(settings.raw_dir, files, settings.reports_dir, revalidate=True, docs_on_pass=True)
    print(report.summary())
    return 0


def _features(args: argparse.Namespace, settings: Settings) -> int:
    from validation.features import batch_views, snapshot_time
    from validation.gates import feature_tables_gate

    as_of = args.as_of or (snapshot_time(args.day).to_pydatetime() if args.day else datetime.now(UTC))
    days = [args.day] if args.day else None
    report = feature_tables_gate(
        settings.features_dir, batch_views(), as_of, settings.reports_dir, days=days, docs_on_pass=True
    )
    print(report.summary())
    return 0


def _training_set(args: argparse.Namespace, settings: Settings) -> int:
    from skewless.store import open_store
    from training.dataset import build_training_frame, labelled_transactions
    from validation.gates import training_set_gate

    store = open_store(settings.repo_root)
    entities = labelled_transactions(settings.raw_dir, args.from_day, args.to_day)
    training = build_training_frame(store, settings.feature_service, entities)
    report = training_set_gate(
        training.frame,
        training.features,
        settings.reports_dir,
        features_dir=settings.features_dir,
        docs_on_pass=True,
    )
    print(report.summary())
    return 0


def _profile(args: argparse.Namespace, settings: Settings) -> int:
    from validation import thresholds
    from validation.features import batch_views
    from validation.profile import profile_features, profile_raw

    if args.kind == "raw":
        proposal = profile_raw(settings.raw_dir, args.day)
    else:
        proposal = profile_features(settings.features_dir, args.day, batch_views())
    path = thresholds.path_for(args.kind)
    changes = thresholds.diff(thresholds.load(args.kind), proposal)
    if not changes:
        print(f"{path}: thresholds already match a profile of {args.day}; nothing to change")
        return 0
    print(f"{path}: a profile of {args.day} proposes {len(changes)} change(s):")
    print("\n".join(f"  {line}" for line in changes))
    if args.write:
        thresholds.write(args.kind, proposal)
        print(f"wrote {path}; review and commit it")
    else:
        print("nothing written; run again with --write to adopt these thresholds")
    return 0


def _timestamp(value: str) -> datetime:
    """argparse type for an ISO timestamp; a bare day means its midnight, and no zone means UTC."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an ISO timestamp such as 2026-11-03T00:00, got {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def register(sub: argparse._SubParsersAction) -> None:
    validate = sub.add_parser("validate", help="run a validation suite on demand", description=__doc__)
    suites = validate.add_subparsers(dest="suite", required=True, metavar="SUITE")

    raw = register_command(suites, "raw", "validate raw day files (every source) against their suites", _raw)
    raw.add_argument("--day", type=day, default=None, help="only this day's files (default: every file)")

    feats = register_command(suites, "features", "validate feature snapshots, fresh as of a time", _features)
    feats.add_argument("--day", type=day, default=None, help="this day's snapshots (default: the newest)")
    feats.add_argument("--as-of", type=_timestamp, default=None, help="judge freshness at this time (default: now)")

    train = register_command(
        suites, "training-set", "build the training set through Feast and validate it", _training_set
    )
    train.add_argument("--from", dest="from_day", type=day, default=None, help="first transaction day")
    train.add_argument("--to", dest="to_day", type=day, default=None, help="last transaction day")

    prof = register_command(
        suites, "profile", "propose thresholds from known-good data; writes only with --write", _profile
    )
    prof.add_argument("kind", choices=("raw", "features"), help="which thresholds to re-profile")
    prof.add_argument("--day", type=day, required=True, help="profile data up to (raw) or of (features) this day")
    prof.add_argument("--write", action="store_true", help="write the proposal to validation/thresholds/")
