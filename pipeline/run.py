"""Running the feature pipeline: which days, which inputs, checked first, written all-or-nothing.

Incremental by day: with no range, every day that has raw transactions but no complete set of feature files is
computed. With ``--from/--to`` the range is recomputed. Either way a day's four tables are computed in full and
only then written, each to a temporary file renamed into place, so a failure leaves earlier files untouched.

Before anything is computed, every raw file the run will read goes through the raw validation gate
(``validation.gates.raw_files_gate``): schema first, then the source's suite. A file that fails stops the run
before a single feature table is written, with a message naming the file, expectation, column and bad values.
Files that passed before and have not changed since are not validated again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import pyarrow as pa

from data import schemas
from data.files import check_schema, day_file, list_days, write_parquet_atomic
from pipeline.features import TABLES, DayInputs
from skewless.errors import BadInputError, MissingDataError

WINDOW_DAYS = 30


@dataclass
class PipelineResult:
    days: list[date] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    skipped: list[date] = field(default_factory=list)


class _CheckedFiles:
    """Hands out lists of raw files; each file's schema is checked once per run unless the gate checks it."""

    def __init__(self, raw_dir: Path, *, check: bool = True) -> None:
        self.raw_dir = raw_dir
        self.available = {source: set(list_days(raw_dir / source)) for source in schemas.SOURCES}
        self._check = check
        self._checked: set[Path] = set()

    def files(self, source: str, first: date, last: date) -> list[Path]:
        days = sorted(d for d in self.available[source] if first <= d <= last)
        paths = [day_file(self.raw_dir / source, d) for d in days]
        for path in paths:
            if self._check and path not in self._checked:
                check_schema(
                    path,
                    schemas.SOURCES[source],
                    label=f"{source}/{path.name}",
                    require_rows=source == "transactions",
                )
            self._checked.add(path)
        return paths

    @property
    def used(self) -> set[Path]:
        return set(self._checked)


def days_to_run(raw_dir: Path, features_dir: Path, first: date | None, last: date | None) -> list[date]:
    raw_days = list_days(raw_dir / "transactions")
    if not raw_days:
        raise MissingDataError(f"{raw_dir / 'transactions'}: no raw transaction files; run `skewless generate` first")
    if first and last and first > last:
        raise BadInputError(f"--from {first} is after --to {last}")
    if first is None and last is None:
        return [d for d in raw_days if not all(day_file(features_dir / t, d).exists() for t in TABLES)]
    lo, hi = first or raw_days[0], last or raw_days[-1]
    wanted = [lo + timedelta(days=i) for i in range((hi - lo).days + 1)]
    missing = [d for d in wanted if d not in set(raw_days)]
    if missing:
        shown = ", ".join(str(d) for d in missing[:5])
        raise MissingDataError(f"transactions/: no raw file for {len(missing)} requested day(s): {shown}")
    return wanted


def inputs_for(files: _CheckedFiles, day: date) -> DayInputs:
    window_start = day - timedelta(days=WINDOW_DAYS - 1)
    epoch = date.min
    inputs = DayInputs(
        day=day,
        transactions=files.files("transactions", window_start, day),
        behaviour=files.files("behaviour", window_start, day),
        all_transactions=files.files("transactions", epoch, day),
        users=files.files("users", epoch, day),
        devices=files.files("devices", epoch, day),
        labels=files.files("labels", epoch, day),
    )
    for source, paths in (
        ("behaviour", inputs.behaviour),
        ("users", inputs.users),
        ("devices", inputs.devices),
        ("labels", inputs.labels),
    ):
        if not paths:
            raise MissingDataError(f"{files.raw_dir / source}: no raw files up to {day}")
    return inputs


def run_pipeline(
    raw_dir: Path,
    features_dir: Path,
    first: date | None = None,
    last: date | None = None,
    progress: Callable[[str], None] | None = None,
    *,
    reports_dir: Path | None = None,
    validate: bool = True,
) -> PipelineResult:
    """Compute and write the feature tables for the days asked (or all days not yet done).

    Every raw file the run reads is validated first (``validate=False`` checks schemas only, for benchmarks);
    validation reports go under ``reports_dir``, by default ``reports`` beside ``raw_dir`` (``data/reports``).
    """
    result = PipelineResult()
    files = _CheckedFiles(raw_dir, check=not validate)
    days = days_to_run(raw_dir, features_dir, first, last)
    inputs = [inputs_for(files, day) for day in days]
    if validate and inputs:
        from validation.gates import raw_files_gate

        report = raw_files_gate(raw_dir, files.used, reports_dir or raw_dir.parent / "reports")
        if progress and report.targets:
            progress(f"validated {len(report.targets)} raw file(s): passed")
    for day_inputs in inputs:
        tables: dict[str, pa.Table] = {name: build(day_inputs) for name, build in TABLES.items()}
        for name, table in tables.items():
            write_parquet_atomic(table, day_file(features_dir / name, day_inputs.day))
            result.rows[name] = result.rows.get(name, 0) + table.num_rows
        result.days.append(day_inputs.day)
        if progress:
            progress(f"{day_inputs.day}: " + ", ".join(f"{n} {t.num_rows:,}" for n, t in tables.items()))
    return result
