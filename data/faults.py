"""Fault drills: a copy of the raw sources with one day deliberately broken, to watch the gates refuse it.

The copy is made of hard links (or copies across file systems), so the real files are never touched; only the
broken day's file is rewritten, in the copy.
"""

from __future__ import annotations

import os
import shutil
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from data.files import day_file, list_days, write_parquet_atomic
from skewless.errors import BadInputError, MissingDataError

FAULTS = {
    "negative-amounts": "a tenth of the day's amounts made negative",
    "unknown-currency": "a tenth of the day's currencies replaced by 'XXX'",
    "retyped-amount": "the amount column written as text",
}


def inject_fault(raw_dir: Path, into: Path, fault: str, day: date | None = None) -> Path:
    """Copy ``raw_dir`` to ``into/data/raw`` and break one transactions day; returns the broken file."""
    if fault not in FAULTS:
        raise BadInputError(f"--fault must be one of {', '.join(FAULTS)}, got {fault!r}")
    days = list_days(raw_dir / "transactions")
    if not days:
        raise MissingDataError(f"{raw_dir / 'transactions'}: no raw files to copy; run `skewless generate` first")
    day = day or days[-1]
    if day not in days:
        raise MissingDataError(f"transactions/{day}.parquet: no such day in {raw_dir}")
    target_raw = into / "data" / "raw"
    if target_raw.exists():
        shutil.rmtree(target_raw)
    for source in raw_dir.iterdir():
        if source.is_dir():
            (target_raw / source.name).mkdir(parents=True)
            for path in source.glob("*.parquet"):
                _link_or_copy(path, target_raw / source.name / path.name)
    broken = day_file(target_raw / "transactions", day)
    table = pq.read_table(broken)
    broken.unlink()  # a hard link: rewrite the copy, never the original
    write_parquet_atomic(_break(table, fault), broken)
    return broken


def _break(table: pa.Table, fault: str) -> pa.Table:
    every_tenth = pa.array([i % 10 == 0 for i in range(table.num_rows)])
    index = table.schema.get_field_index
    if fault == "negative-amounts":
        amount = pc.if_else(every_tenth, pc.negate(table["amount"]), table["amount"])
        return table.set_column(index("amount"), "amount", amount)
    if fault == "unknown-currency":
        currency = pc.if_else(every_tenth, pa.scalar("XXX"), table["currency"])
        return table.set_column(index("currency"), "currency", currency)
    return table.set_column(index("amount"), "amount", table["amount"].cast(pa.string()))


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
