"""The `skewless` command end to end: exit codes and messages a user sees."""

from __future__ import annotations

from pathlib import Path

import pytest

from skewless.cli import main


def test_generate_then_pipeline(repo_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "--users", "50", "--days", "2", "--start", "2026-10-01", "--quiet"]) == 0
    assert "generated 2 days from 2026-10-01" in capsys.readouterr().out
    assert main(["pipeline", "--quiet"]) == 0
    assert "wrote 2 day(s) 2026-10-01..2026-10-02" in capsys.readouterr().out
    assert main(["pipeline", "--quiet"]) == 0
    assert "up to date" in capsys.readouterr().out


def test_out_of_range_argument_exits_non_zero_naming_it(repo_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "--users", "5", "--days", "2"]) == 2
    assert "--users must be between 10 and 50,000,000, got 5" in capsys.readouterr().err
    assert not (repo_root / "data" / "raw").exists()


def test_pipeline_without_raw_data_says_what_to_do(repo_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pipeline"]) == 2
    assert "run `skewless generate` first" in capsys.readouterr().err


def test_malformed_day_is_a_usage_error(repo_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["pipeline", "--from", "yesterday"])
    assert info.value.code == 2
    assert "expected a day as YYYY-MM-DD" in capsys.readouterr().err
