"""Shared fixtures: the real Redis (a test database), temp repo roots with their own Feast project."""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import pytest
import redis

from data.generate import GeneratorConfig, generate

REPO_ROOT = Path(__file__).resolve().parents[1]
TEST_REDIS_DB = 15  # the demo uses database 0; tests never touch it


def _test_redis_url() -> str:
    base = urlparse(os.environ.get("REDIS_URL", "redis://localhost:6379"))
    return urlunparse(base._replace(path=f"/{TEST_REDIS_DB}"))


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of the real Redis, test database. Waits briefly for it; fails loudly if it never answers."""
    url = _test_redis_url()
    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                pytest.fail(f"no Redis answering at {url}; start one (make redis) or set REDIS_URL")
            time.sleep(0.2)
    client.close()
    return url


@pytest.fixture
def repo_root(tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temp repo root: the real feature_store.yaml with a project of its own, and the working directory there."""
    project = f"skewless_test_{uuid.uuid4().hex[:10]}"
    config = (REPO_ROOT / "feature_store.yaml").read_text()
    config = config.replace("project: skewless\n", f"project: {project}\n")
    (tmp_path / "feature_store.yaml").write_text(config)
    (tmp_path / "data").mkdir()
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("SKEWLESS_REPO_ROOT", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


SMALL = GeneratorConfig(users=400, days=10, seed=11, start=date(2026, 10, 1))


@pytest.fixture(scope="session")
def small_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated raw dataset, made once per session; copy it before changing it."""
    raw = tmp_path_factory.mktemp("small") / "raw"
    generate(SMALL, raw)
    return raw


@pytest.fixture
def feast_store(repo_root: Path) -> Iterator[object]:
    """A Feast store on the temp repo root; its online data is torn down afterwards."""
    from skewless.store import open_store

    store = open_store(repo_root)
    yield store
    with contextlib.suppress(Exception):  # nothing was applied
        store.teardown()
