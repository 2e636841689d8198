"""One error root. Each subclass knows the exit code a command returns and the HTTP status a route returns."""

from __future__ import annotations

from pathlib import Path


class SkewlessError(Exception):
    """Base of every error the project raises on purpose. The message names what was wrong and where."""

    exit_code = 1
    http_status = 500


class BadInputError(SkewlessError):
    """The caller gave something unusable: an argument, a file, a column, a field."""

    exit_code = 2
    http_status = 422


class SchemaMismatchError(BadInputError):
    """A raw or feature file does not have the columns and types its schema promises."""


class MissingDataError(BadInputError):
    """A file, partition or folder that a stage needs is not there."""


class DependencyUnavailableError(SkewlessError):
    """Redis, the registry or another dependency is down. Retrying later can succeed."""

    exit_code = 3
    http_status = 503


class ValidationFailedError(BadInputError):
    """Data failed a validation gate. The message names the expectations, columns, failing shares and sample values;
    ``report_path`` is the folder holding the full result (JSON and data docs HTML)."""

    def __init__(self, message: str, report_path: Path | None = None) -> None:
        super().__init__(message)
        self.report_path = report_path
