from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from data.faults import inject_fault
from skewless.errors import BadInputError


def test_fault_breaks_only_the_copy(small_raw: Path, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    shutil.copytree(small_raw, raw)
    newest = sorted((raw / "transactions").glob("*.parquet"))[-1]
    before = newest.read_bytes()
    broken = inject_fault(raw, tmp_path / "drill", "negative-amounts")
    assert newest.read_bytes() == before
    assert broken.name == newest.name
    amounts = pd.read_parquet(broken)["amount"]
    assert (amounts < 0).mean() == pytest.approx(0.1, abs=0.01)
    other = sorted((tmp_path / "drill" / "data" / "raw" / "transactions").glob("*.parquet"))[0]
    assert other.read_bytes() == (raw / "transactions" / other.name).read_bytes()


def test_unknown_fault_is_named(small_raw: Path, tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="--fault must be one of"):
        inject_fault(small_raw, tmp_path / "drill", "gremlins")
