"""Where a feature view's Parquet lives, and how DuckDB reads it.

Stock Feast hands a FileSource's path to DuckDB as it is, so a relative path (``data/features/user_profile``)
only works from the directory that happens to be current, and a missing folder surfaces as a raw DuckDB
``IOException``. Here a relative path is looked up under the repo root (``config.repo_path``) first and the
working directory second, and a missing folder, an empty one or a missing column is a ``MissingDataError`` /
``SchemaMismatchError`` that names the feature view, the path and what is absent.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import duckdb
from feast.data_format import ParquetFormat
from feast.data_source import DataSource
from feast.infra.offline_stores.file_source import FileSource

from skewless.errors import MissingDataError, SchemaMismatchError


def quote(identifier: str) -> str:
    """A DuckDB identifier, quoted so any column name is safe in generated SQL."""
    return '"' + identifier.replace('"', '""') + '"'


def literal(text: str) -> str:
    """A DuckDB string literal."""
    return "'" + text.replace("'", "''") + "'"


def is_local_parquet(source: DataSource | None) -> bool:
    """True for the sources this store reads itself: FileSources of Parquet on the local disk."""
    if not isinstance(source, FileSource):
        return False
    is_parquet = isinstance(source.file_format, ParquetFormat) or (
        source.file_format is None and source.path.endswith(".parquet")
    )
    scheme = urlparse(source.path).scheme
    return is_parquet and (not scheme or scheme == "file" or len(scheme) == 1)  # len 1: a Windows drive letter


@dataclass(frozen=True)
class ParquetTable:
    """A resolved Parquet file or folder, with its columns and their DuckDB types."""

    owner: str  # what the data is for, for error messages: "feature view 'user_activity'"
    path: Path
    columns: dict[str, str]

    @property
    def scan(self) -> str:
        """The ``read_parquet`` call DuckDB scans; a folder reads every Parquet file in it, as stock does."""
        return f"read_parquet([{literal(str(self.path))}])"

    def require(self, names: list[str]) -> None:
        """Fail with the missing column names, the path and the columns that are there."""
        missing = [name for name in names if name not in self.columns]
        if missing:
            raise SchemaMismatchError(
                f"{self.owner}: {self.path} has no column(s) {missing}; it has {sorted(self.columns)}"
            )


def resolve_path(source: FileSource, repo_path: Path | None, owner: str) -> Path:
    """The local path of ``source``: absolute as given, relative under the repo root, else the working directory."""
    raw = source.path[len("file://") :] if source.path.startswith("file://") else source.path
    given = Path(raw)
    if given.is_absolute():
        candidates = [given]
    else:
        candidates = [Path(repo_path) / given] if repo_path else []
        candidates.append(Path.cwd() / given)
    for candidate in candidates:
        if candidate.exists():
            return candidate
    tried = " or ".join(str(c) for c in dict.fromkeys(candidates))
    raise MissingDataError(
        f"{owner}: source {source.name!r} path {source.path!r} does not exist (looked for {tried}); "
        "run the feature pipeline first (`skewless pipeline`)"
    )


def open_table(con: duckdb.DuckDBPyConnection, source: FileSource, repo_path: Path | None, owner: str) -> ParquetTable:
    """Resolve ``source`` and read its schema (Parquet footers only, no data)."""
    path = resolve_path(source, repo_path, owner)
    if path.is_dir() and not any(p.is_file() for p in path.rglob("*.parquet")):
        raise MissingDataError(f"{owner}: source folder {path} holds no Parquet files; run the feature pipeline first")
    try:
        described = con.sql(f"DESCRIBE SELECT * FROM read_parquet([{literal(str(path))}])").fetchall()
    except duckdb.Error as exc:
        raise MissingDataError(f"{owner}: cannot read Parquet at {path}: {exc}") from exc
    return ParquetTable(owner=owner, path=path, columns={row[0]: row[1] for row in described})
