from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from data import schemas
from data.files import list_days
from data.generate import GeneratorConfig, generate
from skewless.errors import BadInputError
from tests.conftest import SMALL


def _read(raw: Path, source: str) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(p) for p in sorted((raw / source).glob("*.parquet"))], ignore_index=True)


def test_every_source_has_one_file_per_day_with_its_schema(small_raw: Path) -> None:
    for source, schema in schemas.SOURCES.items():
        days = list_days(small_raw / source)
        assert len(days) == SMALL.days, source
        for path in (small_raw / source).glob("*.parquet"):
            assert pq.read_schema(path).remove_metadata().equals(schema, check_metadata=False), path


def test_fraud_rate_is_realistic_and_patterns_are_present(small_raw: Path) -> None:
    tx = _read(small_raw, "transactions")
    labels = _read(small_raw, "labels")
    assert tx["txn_id"].is_unique
    assert (tx["amount"] >= 0).all()
    # Every transaction is labelled eventually, but only labels that arrived in the window are written.
    assert labels["txn_id"].isin(tx["txn_id"]).all()
    assert (labels["reported_at"] > labels["txn_timestamp"]).all()
    frauds = labels[labels["is_fraud"] == 1]
    assert len(frauds) > 0
    behaviour = _read(small_raw, "behaviour")
    assert (behaviour["event_type"] == "login_failed").any()
    devices = _read(small_raw, "devices")
    assert devices["is_emulator"].any()


def test_overall_fraud_rate_between_half_and_two_percent(tmp_path: Path) -> None:
    summary = generate(dataclasses.replace(SMALL, users=3000, days=6), tmp_path / "raw")
    assert 0.005 <= summary.fraud_rate <= 0.02


def test_same_seed_gives_same_bytes_and_longer_runs_extend_shorter_ones(tmp_path: Path) -> None:
    short = dataclasses.replace(SMALL, users=200, days=3)
    generate(short, tmp_path / "a")
    generate(short, tmp_path / "b")
    generate(dataclasses.replace(short, days=5), tmp_path / "c")
    for source in schemas.SOURCES:
        for path in sorted((tmp_path / "a" / source).glob("*.parquet")):
            same = (tmp_path / "b" / source / path.name).read_bytes()
            assert path.read_bytes() == same, f"{source}/{path.name} differs between identical runs"
            if source != "labels":  # labels in flight at the end of a shorter run arrive later in a longer one
                assert path.read_bytes() == (tmp_path / "c" / source / path.name).read_bytes()
    assert len(list_days(tmp_path / "c" / "transactions")) == 5


def test_other_seed_gives_other_data(tmp_path: Path) -> None:
    generate(dataclasses.replace(SMALL, users=100, days=1), tmp_path / "a")
    generate(dataclasses.replace(SMALL, users=100, days=1, seed=12), tmp_path / "b")
    a = next((tmp_path / "a" / "transactions").glob("*.parquet")).read_bytes()
    b = next((tmp_path / "b" / "transactions").glob("*.parquet")).read_bytes()
    assert a != b


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"users": 5}, "--users"),
        ({"days": 0}, "--days"),
        ({"seed": -1}, "--seed"),
        ({"txns_per_user_day": 0}, "--txns"),
    ],
)
def test_out_of_range_arguments_are_refused_naming_the_argument(tmp_path: Path, change: dict, field: str) -> None:
    with pytest.raises(BadInputError, match=field):
        generate(dataclasses.replace(SMALL, **change), tmp_path / "raw")
    assert not (tmp_path / "raw").exists() or not any((tmp_path / "raw").rglob("*.parquet"))


def test_smallest_valid_config_is_accepted() -> None:
    GeneratorConfig(users=10, days=1).validate()
