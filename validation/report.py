"""What a gate found, in words a person can act on, and the full result saved where they can read it.

A finding names the target (file, table or frame), the expectation, the column, the failing share and a few
offending values. A report is saved under ``<reports_dir>/validation/<suite>/<UTC time>-<passed|failed>/``:
``result.json`` (the findings plus every GX validation result, complete) and, for refusals and on-demand runs,
``docs/index.html`` (GX data docs). The folder is assembled under a temporary name and renamed into place.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from skewless.errors import ValidationFailedError
from validation.runner import Outcome, build_docs

SHOWN_FINDINGS = 8  # findings spelled out in an error message; the report has all of them
_HIDDEN_KWARGS = {
    "column",
    "column_A",
    "column_B",
    "column_list",
    "result_format",
    "catch_exceptions",
    "meta",
    "notes",
    "batch_id",
}


@dataclass(frozen=True)
class Finding:
    target: str
    expectation: str
    column: str | None
    failing_share: float | None  # of the rows the expectation looked at
    failing_count: int | None
    checked_count: int | None  # rows the expectation looked at (after its row condition and null filter)
    sample: list[Any]
    expected: str
    observed: str | None = None

    def __str__(self) -> str:
        where = f" on `{self.column}`" if self.column else ""
        text = f"{self.target}: {self.expectation} failed{where}"
        if self.failing_share is not None:
            text += f" for {self.failing_share:.2%} of rows ({self.failing_count or 0:,}"
            text += f" of {self.checked_count:,})" if self.checked_count is not None else ")"
        if self.sample:
            text += ", e.g. " + ", ".join(_show(v) for v in self.sample)
        if self.observed is not None:
            text += f": observed {self.observed}"
        return text + (f" (expected {self.expected})" if self.expected else "")


@dataclass
class ValidationReport:
    """The outcome of one gate run: what was validated, what was checked, what failed, where the report is."""

    suite: str
    targets: list[str]
    findings: list[Finding]
    checked: list[str] = field(default_factory=list)
    path: Path | None = None

    @property
    def success(self) -> bool:
        return not self.findings

    def summary(self) -> str:
        status = "passed" if self.success else f"failed: {len(self.findings)} problem(s)"
        lines = [f"{self.suite} validation of {len(self.targets)} target(s) {status}"]
        lines += [f"  - {finding}" for finding in self.findings[:SHOWN_FINDINGS]]
        if len(self.findings) > SHOWN_FINDINGS:
            lines.append(f"  ... and {len(self.findings) - SHOWN_FINDINGS} more")
        if self.path is not None:
            docs = self.path / "docs" / "index.html"
            lines.append(f"full report: {self.path / 'result.json'}" + (f" and {docs}" if docs.exists() else ""))
        return "\n".join(lines)

    def raise_if_failed(self) -> ValidationReport:
        if not self.success:
            raise ValidationFailedError(self.summary(), report_path=self.path)
        return self


def findings_from(outcome: Outcome) -> list[Finding]:
    """A finding for each failed expectation of a GX result."""
    found = []
    for result in outcome.result.results:
        if result.success:
            continue
        config = result.expectation_config
        kwargs = dict(config.kwargs)
        details = result.result or {}
        error = (result.exception_info or {}).get("exception_message") if result.exception_info else None
        column = kwargs.get("column") or _pair(kwargs) or _compound(kwargs)
        observed = details.get("observed_value")
        checked = details.get("element_count")
        if checked is not None and details.get("missing_count") is not None:
            checked -= details["missing_count"]
        found.append(
            Finding(
                target=outcome.target,
                expectation=config.type,
                column=column,
                failing_share=_share(details),
                failing_count=details.get("unexpected_count"),
                checked_count=checked,
                sample=_distinct([_plain(v) for v in details.get("partial_unexpected_list") or []]),
                expected=_expected(kwargs),
                observed=error or (_show(_plain(observed)) if "observed_value" in details else None),
            )
        )
    return found


def save(report: ValidationReport, outcomes: Sequence[Outcome], reports_dir: Path, *, docs: bool) -> ValidationReport:
    """Write ``report`` (and the GX results behind it) under ``reports_dir``; sets and returns its path."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    folder = reports_dir / "validation" / report.suite / f"{stamp}-{'passed' if report.success else 'failed'}"
    staging = folder.with_name(f".{folder.name}.{uuid.uuid4().hex}.tmp")
    staging.mkdir(parents=True)
    try:
        body = {
            "suite": report.suite,
            "success": report.success,
            "targets": report.targets,
            "checked": report.checked,
            "findings": [{**asdict(f), "message": str(f)} for f in report.findings],
            "results": [{"target": o.target, **o.result.to_json_dict()} for o in outcomes],
        }
        (staging / "result.json").write_text(json.dumps(_plain(body), indent=2) + "\n")
        if docs and outcomes:
            build_docs(outcomes, staging / "docs", run_name=f"{report.suite}-{stamp}")
        os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    report.path = folder
    return report


def _pair(kwargs: dict[str, Any]) -> str | None:
    if "column_A" in kwargs:
        return f"{kwargs['column_A']}` vs `{kwargs['column_B']}"
    return None


def _compound(kwargs: dict[str, Any]) -> str | None:
    # Raw suites check keys per file with ["_file", key]; the file is already the finding's target.
    columns = [c for c in kwargs.get("column_list") or [] if c != "_file"]
    return "`, `".join(columns) or None


def _condition(value: Any) -> str:
    if isinstance(value, dict) and {"column", "operator", "parameter"} <= set(value):
        column = value["column"].get("name") if isinstance(value["column"], dict) else value["column"]
        return f"`{column}` {value['operator']} {value['parameter']!r}"
    return str(value)


def _distinct(values: list[Any]) -> list[Any]:
    """Sample values once each; rows of a per-file key check shown by their key alone."""
    seen: list[Any] = []
    for value in values:
        if isinstance(value, dict):
            value = {k: v for k, v in value.items() if k != "_file"}
            value = next(iter(value.values())) if len(value) == 1 else value
        if value is not None and value not in seen:
            seen.append(value)
    return seen


def _share(details: dict[str, Any]) -> float | None:
    percent = details.get("unexpected_percent")
    return None if percent is None else float(percent) / 100


def _expected(kwargs: dict[str, Any]) -> str:
    parts = []
    for key, value in kwargs.items():
        if key in _HIDDEN_KWARGS or key == "row_condition" or value is None:
            continue
        shown = value
        if isinstance(value, list | tuple | set) and len(value) > 8:
            shown = [*list(value)[:8], "..."]
        parts.append(f"{key}={_show(_plain(shown))}")
    if kwargs.get("row_condition"):
        parts.append(f"where {_condition(kwargs['row_condition'])}")
    return ", ".join(parts)


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return str(value)


def _plain(value: Any) -> Any:
    """JSON-ready: numpy scalars to Python, timestamps to ISO text, NaN to None."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_plain(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, np.datetime64):
        return pd.Timestamp(value).isoformat()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)
