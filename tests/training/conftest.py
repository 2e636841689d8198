"""A trained-on repo root for the lifecycle tests: generated data, features, Feast definitions applied."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import psycopg
import pytest

from data.generate import GeneratorConfig, generate
from pipeline.run import run_pipeline
from skewless.settings import Settings
from skewless.store import apply_definitions, open_store
from tests.conftest import REPO_ROOT

TRAINING_DATA = GeneratorConfig(users=1500, days=12, seed=5, start=date(2026, 10, 1))
POSTGRES_ADMIN = os.environ.get("SKEWLESS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


@dataclass(frozen=True)
class TrainingRepo:
    root: Path
    settings: Settings


def settings_for(root: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "repo_root": root,
        "label_maturity_days": 0,
        "min_training_rows": 500,
        "min_positive_labels": 10,
        "min_pr_auc": 0.2,
        "min_recall_at_1pct_fpr": 0.2,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def training_repo(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[TrainingRepo]:
    root = tmp_path_factory.mktemp("training_repo")
    project = f"skewless_test_{uuid.uuid4().hex[:10]}"
    config = (REPO_ROOT / "feature_store.yaml").read_text().replace("project: skewless\n", f"project: {project}\n")
    (root / "feature_store.yaml").write_text(config)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REDIS_URL", redis_url)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.chdir(root)
        generate(TRAINING_DATA, root / "data" / "raw")
        run_pipeline(root / "data" / "raw", root / "data" / "features")
        store = open_store(root)
        apply_definitions(store)
        yield TrainingRepo(root=root, settings=settings_for(root))
        store.teardown()


@pytest.fixture
def postgres_tracking_uri() -> Iterator[str]:
    """A fresh PostgreSQL database on the machine's server for one MLflow store, dropped afterwards."""
    name = f"skewless_test_{uuid.uuid4().hex[:10]}"
    admin = psycopg.connect(POSTGRES_ADMIN, autocommit=True)
    try:
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        base = POSTGRES_ADMIN.rsplit("/", 1)[0]
        yield f"{base}/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
