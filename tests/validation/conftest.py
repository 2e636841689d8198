"""Fixtures for the validation tests: copies of the small generated dataset and its feature tables."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.run import run_pipeline


@pytest.fixture
def raw(small_raw: Path, tmp_path: Path) -> Path:
    """A private copy of the small raw dataset, free to corrupt."""
    copy = tmp_path / "raw"
    shutil.copytree(small_raw, copy)
    return copy


@pytest.fixture(scope="session")
def small_features(small_raw: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Feature tables of the small dataset, built once (through the raw gate); copy before changing."""
    root = tmp_path_factory.mktemp("small_features")
    run_pipeline(small_raw, root / "features", reports_dir=root / "reports")
    return root / "features"


@pytest.fixture
def features(small_features: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "features"
    shutil.copytree(small_features, copy)
    return copy


def rewrite(path: Path, **columns: Any) -> None:
    """Replace columns of a Parquet file in place; each value is a function of the old column's Python list."""
    table = pq.read_table(path)
    for name, change in columns.items():
        index = table.schema.get_field_index(name)
        old = table[name]
        new = pa.array(change(old.to_pylist()), type=old.type)
        table = table.set_column(index, pa.field(name, old.type), new)
    pq.write_table(table, path)


def at(index: int, value: Any) -> Any:
    """A column change that sets one row's value."""

    def change(values: list[Any]) -> list[Any]:
        values[index] = value
        return values

    return change
