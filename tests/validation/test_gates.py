"""The raw gate inside the pipeline, its record of passed files, and `skewless validate` end to end."""

from __future__ import annotations

import json
import os
import shutil
from datetime import timedelta
from pathlib import Path

import pytest

from data.files import day_file
from pipeline.run import run_pipeline
from skewless.cli import main
from skewless.errors import ValidationFailedError
from tests.conftest import SMALL
from tests.validation.conftest import at, rewrite
from validation import thresholds

FIRST, LAST = SMALL.start, SMALL.start + timedelta(days=SMALL.days - 1)


def _reports(root: Path, suite: str = "raw") -> list[Path]:
    folder = root / "validation" / suite
    return sorted(p for p in folder.iterdir() if p.is_dir()) if folder.exists() else []


def test_pipeline_refuses_bad_raw_data_and_writes_nothing(raw: Path, tmp_path: Path) -> None:
    bad = day_file(raw / "transactions", SMALL.start + timedelta(days=4))
    rewrite(bad, amount=at(7, -12.5))
    features, reports = tmp_path / "features", tmp_path / "reports"
    with pytest.raises(ValidationFailedError) as info:
        run_pipeline(raw, features, reports_dir=reports)
    message = str(info.value)
    assert f"transactions/{bad.name}: expect_column_values_to_be_between failed on `amount`" in message
    assert "e.g. -12.5" in message
    assert not features.exists() or not list(features.rglob("*"))
    [report] = _reports(reports)
    assert report.name.endswith("-failed") and str(report) in message
    assert (report / "result.json").exists() and (report / "docs" / "index.html").exists()


def test_files_that_passed_are_not_validated_again_until_they_change(raw: Path, tmp_path: Path) -> None:
    features, reports = tmp_path / "features", tmp_path / "reports"
    run_pipeline(raw, features, SMALL.start, SMALL.start + timedelta(days=4), reports_dir=reports)
    assert [p.name.endswith("-passed") for p in _reports(reports)] == [True]
    ledger = json.loads((reports / "validation" / "raw" / "passed.json").read_text())
    assert len(ledger) == 5 * 5

    messages: list[str] = []
    run_pipeline(raw, features, reports_dir=reports, progress=messages.append)
    assert messages[0] == "validated 25 raw file(s): passed"  # only the five new days
    assert len(_reports(reports)) == 2

    run_pipeline(raw, features, LAST, LAST, reports_dir=reports)  # everything it reads has passed
    assert len(_reports(reports)) == 2

    touched = day_file(raw / "labels", LAST)
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))
    run_pipeline(raw, features, LAST, LAST, reports_dir=reports)  # same bytes: still passed
    assert len(_reports(reports)) == 2

    rewrite(day_file(raw / "labels", LAST), is_fraud=at(0, 7))
    with pytest.raises(ValidationFailedError, match=f"labels/{LAST}.parquet: expect_column_values_to_be_in_set"):
        run_pipeline(raw, features, LAST, LAST, reports_dir=reports)


def test_validate_raw_command_exits_non_zero_naming_the_file(
    raw: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.move(raw, tmp_path / "data" / "raw")
    monkeypatch.setenv("SKEWLESS_REPO_ROOT", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert main(["validate", "raw", "--day", str(FIRST)]) == 0
    out = capsys.readouterr().out
    assert "raw validation of 5 target(s) passed" in out and "docs/index.html" in out
    assert main(["validate", "raw", "--day", str(FIRST)]) == 0  # on demand: validated again, not skipped
    assert "raw validation of 5 target(s) passed" in capsys.readouterr().out
    passed = json.loads((tmp_path / "data" / "reports" / "validation" / "raw" / "passed.json").read_text())
    assert len(passed) == 5  # recorded, so the pipeline will not validate them again

    rewrite(day_file(tmp_path / "data" / "raw" / "users", FIRST), kyc_level=at(0, 9))
    assert main(["validate", "raw", "--day", str(FIRST)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("skewless validate: error: raw validation of 5 target(s) failed: 1 problem(s)")
    assert f"users/{FIRST}.parquet: expect_column_values_to_be_in_set failed on `kyc_level`" in err and "e.g. 9" in err

    (tmp_path / "data" / "raw" / "devices" / f"{FIRST}.parquet").write_bytes(b"not parquet")
    assert main(["validate", "raw", "--day", str(FIRST)]) == 2
    assert f"devices/{FIRST}.parquet: not a readable Parquet file" in capsys.readouterr().err


def test_validate_features_command_checks_the_snapshots_of_a_day(
    features: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "data").mkdir()
    shutil.move(features, tmp_path / "data" / "features")
    monkeypatch.setenv("SKEWLESS_REPO_ROOT", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert main(["validate", "features", "--day", str(LAST)]) == 0
    out = capsys.readouterr().out
    assert "features validation of 4 target(s) passed" in out and "docs/index.html" in out
    with pytest.raises(SystemExit) as info:
        main(["validate", "features", "--as-of", "yesterday"])
    assert info.value.code == 2
    assert "expected an ISO timestamp such as 2026-11-03T00:00, got 'yesterday'" in capsys.readouterr().err


def test_profile_shows_the_difference_and_writes_only_when_asked(
    raw: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.move(raw, tmp_path / "data" / "raw")
    monkeypatch.setenv("SKEWLESS_REPO_ROOT", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    committed = thresholds.path_for("raw").read_bytes()
    scratch = tmp_path / "thresholds"
    scratch.mkdir()
    shutil.copy(thresholds.path_for("raw"), scratch / "raw.json")
    monkeypatch.setattr(thresholds, "THRESHOLDS_DIR", scratch)

    assert main(["validate", "profile", "raw", "--day", str(LAST)]) == 0
    out = capsys.readouterr().out
    assert "proposes" in out and "~ transactions.amount.max:" in out and "nothing written" in out
    assert "users.age_years" not in out  # pinned by hand
    assert (scratch / "raw.json").read_bytes() == committed

    assert main(["validate", "profile", "raw", "--day", str(LAST), "--write"]) == 0
    assert "wrote" in capsys.readouterr().out
    written = json.loads((scratch / "raw.json").read_text())
    assert written["users"]["age_years"]["pinned"] is True
    assert written != json.loads(committed)
    assert main(["validate", "profile", "raw", "--day", str(LAST)]) == 0
    assert "nothing to change" in capsys.readouterr().out
