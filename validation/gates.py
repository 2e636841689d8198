"""The gates: every stage that consumes data calls one first, and bad data stops there with its reason.

- ``raw_files_gate``: the pipeline, before it reads raw day files;
- ``feature_tables_gate``: materialization, before it pushes feature snapshots online;
- ``training_set_gate``: training, before a model sees the training frame.

Schema changes are caught first and cheaply (Parquet footers only) and raise ``SchemaMismatchError`` naming file
and column. Value problems raise ``ValidationFailedError``; both are ``BadInputError`` (exit code 2). A refusal's
message names the target, expectation, column, failing share and sample values, and ends with the path of the
full report (``result.json`` and GX data docs) under ``<reports_dir>/validation/<suite>/``. A pass returns the
``ValidationReport``; its ``result.json`` is saved too whenever a suite ran.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from data import schemas
from skewless.errors import MissingDataError, SchemaMismatchError
from validation import thresholds as committed
from validation.ledger import Ledger, Stamp, fingerprint
from validation.report import ValidationReport, findings_from, save

BATCH_ROWS = 2_000_000  # rows of one source validated in one GX run: bounds memory, amortises GX overhead


def raw_files_gate(
    raw_dir: Path,
    files: Iterable[Path],
    reports_dir: Path,
    *,
    remember: bool = True,
    revalidate: bool = False,
    docs_on_pass: bool = False,
) -> ValidationReport:
    """Validate raw day files (``raw_dir/<source>/<day>.parquet``) before anything reads them.

    Every file's schema is checked first, all files at once, so one message lists every schema change. Then the
    values go through the source's suite, many files per run (see ``validation.raw``); when a batch fails, each
    of its files is checked alone on the failed expectations so that every finding names its file. With
    ``remember``, files that pass are recorded, and recorded files are skipped while they and the suite stay the
    same (see ``validation.ledger``); ``revalidate`` validates them anyway (and still records passes), so that
    validating files as they arrive spares the pipeline the work. Reading the next batch overlaps with importing
    GX and validating the current one.
    """
    from validation.raw import batches, check_partition_schema, partition_of

    parts = [partition_of(raw_dir, path) for path in sorted(set(files))]
    problems = []
    for part in parts:
        try:
            check_partition_schema(part)
        except SchemaMismatchError as exc:
            problems.append(str(exc))
    if problems:
        raise SchemaMismatchError("\n".join(problems))

    limits = committed.load("raw")
    ledger = Ledger(reports_dir / "validation" / "raw" / "passed.json", _raw_suite_fingerprint()) if remember else None
    pending = [p for p in parts if ledger is None or revalidate or not ledger.passed(p.path, p.first)]
    report = ValidationReport(suite="raw", targets=[part.label for part in pending], findings=[])
    report.checked.append(f"{len(parts) - len(pending)} file(s) unchanged since they passed; not validated again")
    if not pending:
        if ledger is not None:
            ledger.save()
        return report

    from validation.raw import raw_suite
    from validation.runner import Runner

    todo = batches(pending, BATCH_ROWS)
    with ThreadPoolExecutor(max_workers=1) as reader:
        upcoming = reader.submit(_read_stamped, todo[0])
        runner = Runner()  # imports GX while the first batch is read
        for i, batch in enumerate(todo):
            frame, stamps = upcoming.result()
            if i + 1 < len(todo):
                upcoming = reader.submit(_read_stamped, todo[i + 1])
            failed = _validate_batch(runner, raw_suite(batch[0].source, limits), batch, frame, report)
            for part in batch:
                if ledger is not None and part.label not in failed:
                    ledger.record(part.path, stamps[part.path], part.first)
    if ledger is not None:
        ledger.save()
    return save(report, runner.outcomes, reports_dir, docs=docs_on_pass or not report.success).raise_if_failed()


def _read_stamped(batch: Sequence[Any]) -> tuple[pd.DataFrame, dict[Path, Stamp]]:
    """A batch's frame, and each file's stamp taken before it was read (what the ledger records if it passes)."""
    from validation.raw import read_partitions

    stamps = {part.path: Stamp.of(part.path) for part in batch}
    return read_partitions(batch), stamps


def _validate_batch(runner: Any, suite: Any, batch: Sequence[Any], frame: pd.DataFrame, report: Any) -> set[str]:
    """Validate one batch; on failure, find its failing files. Returns their labels."""
    from validation.raw import batch_label

    source = batch[0].source
    outcome = runner.validate(suite, frame, batch_label(batch), asset=source)
    if outcome.success:
        return set()
    failed = set()
    focused = runner.failed_only(outcome)
    for part in batch:
        alone = frame[frame["_file"] == part.label].reset_index(drop=True)
        outcome = runner.validate(focused, alone, part.label, asset=source, quick_first=False)
        if outcome.success:
            runner.outcomes.remove(outcome)
        else:
            report.findings += findings_from(outcome)
            failed.add(part.label)
    return failed


def feature_tables_gate(
    features_dir: Path,
    views: Sequence[Any],
    as_of: datetime,
    reports_dir: Path,
    *,
    days: Sequence[date] | None = None,
    docs_on_pass: bool = False,
) -> ValidationReport:
    """Validate feature snapshots before they are pushed online.

    ``views`` are Feast ``FeatureView`` objects (``validation.features.batch_views()`` gives the repo's, and
    ``store.list_feature_views()`` the registered ones). By default each view's newest snapshot not after
    ``as_of`` is checked, and it must be fresh as of ``as_of`` (within the view's TTL); ``days`` checks those
    days' snapshots instead. A naive ``as_of`` is taken as UTC.
    """
    from validation.features import feature_suite, latest_snapshot_day, read_table, table_folder
    from validation.runner import Runner

    as_of = as_of if as_of.tzinfo else as_of.replace(tzinfo=UTC)
    limits = committed.load("features")
    chosen: list[tuple[Any, date]] = []
    for view in views:
        view_days = list(days) if days else [latest_snapshot_day(features_dir, view, as_of)]
        if view_days == [None]:
            folder = table_folder(features_dir, view)
            raise MissingDataError(f"{folder}: no snapshot at or before {as_of.isoformat()}; run `skewless pipeline`")
        chosen += [(view, day) for day in view_days if day is not None]
    frames = [(view, day, read_table(features_dir, view, day)) for view, day in chosen]  # all schemas first

    runner = Runner()
    report = ValidationReport(suite="features", targets=[], findings=[])
    report.checked.append(f"fresh as of {as_of.isoformat()}")
    for view, day, frame in frames:
        target = f"{table_folder(features_dir, view).name}/{day.isoformat()}.parquet"
        report.targets.append(target)
        outcome = runner.validate(feature_suite(view, day, as_of, limits), frame, target, asset=view.name)
        report.findings += findings_from(outcome)
    return save(report, runner.outcomes, reports_dir, docs=docs_on_pass or not report.success).raise_if_failed()


def training_set_gate(
    frame: pd.DataFrame,
    features: Sequence[str],
    reports_dir: Path,
    *,
    features_dir: Path | None = None,
    views: Sequence[Any] | None = None,
    docs_on_pass: bool = False,
) -> ValidationReport:
    """Validate a training frame (``training.dataset.build_training_frame(...).frame``) before training.

    ``features`` is ``TrainingFrame.features``. Pass ``features_dir`` (the pipeline's feature tables) to check for
    leakage by re-deriving each batch feature point in time (see ``validation.training_set``); ``views`` default
    to the batch views of feature_repo/. Without it, leakage is not checked, and the report says so.
    """
    from validation.runner import Runner
    from validation.training_set import training_suite, with_as_of_values

    limits = committed.load("training_set")
    report = ValidationReport(suite="training_set", targets=["training set"], findings=[])
    checked = frame
    rederived: list[str] = []
    if features_dir is not None:
        from validation.features import batch_views

        checked, rederived = with_as_of_values(frame, features, features_dir, views or batch_views())
        report.checked.append(f"point in time: {len(rederived)} batch feature(s) re-derived from {features_dir}")
    else:
        report.checked.append("point in time: not checked (no feature tables given)")
    runner = Runner()
    outcome = runner.validate(training_suite(features, limits, rederived), checked, "training set", "training_set")
    report.findings += findings_from(outcome)
    return save(report, runner.outcomes, reports_dir, docs=docs_on_pass or not report.success).raise_if_failed()


def _raw_suite_fingerprint() -> str:
    """What a raw file passed against: the suite code, the schemas, the thresholds, the GX version."""
    import importlib.metadata

    here = Path(__file__).resolve().parent
    return fingerprint(
        (here / "raw.py").read_bytes(),
        (here / "runner.py").read_bytes(),
        Path(schemas.__file__).read_bytes(),
        committed.path_for("raw").read_bytes(),
        importlib.metadata.version("great-expectations"),
    )
