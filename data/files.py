"""Day-partitioned Parquet files: naming, listing, checked reading and all-or-nothing writing."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterable
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from skewless.errors import MissingDataError, SchemaMismatchError

_DAY_FILE = re.compile(r"^(\d{4}-\d{2}-\d{2})\.parquet$")


def day_file(folder: Path, day: date) -> Path:
    return folder / f"{day.isoformat()}.parquet"


def list_days(folder: Path) -> list[date]:
    """Days that have a file in ``folder``, sorted. A missing folder has none."""
    if not folder.exists():
        return []
    if not folder.is_dir():
        raise MissingDataError(f"{folder}: expected a folder of day files, found a file")
    try:
        names = os.listdir(folder)
    except OSError as exc:
        raise MissingDataError(f"{folder}: cannot list folder ({exc.strerror})") from exc
    days = []
    for name in names:
        match = _DAY_FILE.match(name)
        if match:
            days.append(date.fromisoformat(match.group(1)))
    return sorted(days)


def replace_atomic(path: Path, write: Callable[[Path], object]) -> None:
    """Let ``write`` fill a temporary file beside ``path``, then rename it into place: readers never see half a
    file, and a failed write leaves the old one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_parquet_atomic(table: pa.Table, path: Path) -> None:
    replace_atomic(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))


def write_text_atomic(text: str, path: Path) -> None:
    replace_atomic(path, lambda tmp: tmp.write_text(text))


def read_schema(path: Path) -> pa.Schema:
    """The Parquet schema of ``path``, or a clear error naming the file when it is missing or not Parquet."""
    if not path.exists():
        raise MissingDataError(f"{path}: file not found")
    try:
        return pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise SchemaMismatchError(f"{path}: not a readable Parquet file ({exc})") from exc


def check_schema(path: Path, expected: pa.Schema, *, label: str | None = None, require_rows: bool = False) -> None:
    """Fail, naming the file and column, when ``path`` does not have exactly the ``expected`` columns and types."""
    name = label or str(path)
    actual = read_schema(path)
    problems = schema_differences(actual, expected)
    if problems:
        raise SchemaMismatchError(f"{name}: " + "; ".join(problems))
    if require_rows and pq.ParquetFile(path).metadata.num_rows == 0:
        raise SchemaMismatchError(f"{name}: file has no rows")


def schema_differences(actual: pa.Schema, expected: pa.Schema) -> list[str]:
    """Human-readable differences: dropped, unexpected and retyped columns."""
    problems = []
    actual_types = {f.name: f.type for f in actual}
    for field in expected:
        if field.name not in actual_types:
            problems.append(f"column `{field.name}` is missing (expected {field.type})")
        elif not _same_type(actual_types[field.name], field.type):
            problems.append(
                f"column `{field.name}` is {_describe(actual_types[field.name])}, expected {_describe(field.type)}"
            )
    expected_names = set(expected.names)
    for field in actual:
        if field.name not in expected_names:
            problems.append(f"unexpected column `{field.name}` ({field.type})")
    return problems


def _same_type(actual: pa.DataType, expected: pa.DataType) -> bool:
    if pa.types.is_dictionary(actual):
        actual = actual.value_type
    if pa.types.is_large_string(actual):
        actual = pa.string()
    return bool(actual == expected)


def _describe(data_type: pa.DataType) -> str:
    if pa.types.is_string(data_type) or pa.types.is_large_string(data_type):
        return "string"
    if pa.types.is_floating(data_type) and data_type.bit_width == 64:
        return "double"
    return str(data_type)


def files_for_days(folder: Path, days: Iterable[date]) -> list[Path]:
    """Existing day files of ``folder`` for ``days``, in order."""
    return [p for p in (day_file(folder, d) for d in days) if p.exists()]
