"""A real MLflow store (SQLite in a temp folder) holding a few bare versions, and the real Redis (test database)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from release import state
from skewless.settings import Settings
from tests.training.conftest import settings_for
from training import registry


@dataclass
class Releases:
    settings: Settings
    reg: state.Registry
    events: redis.Redis

    def version(self, approved: bool = True) -> int:
        """A registered version without artifacts: the registry moves never load a model."""
        client = self.reg.client
        mv = client.create_model_version(self.settings.model_name, source="file:///nowhere", run_id=None)
        if approved:
            client.set_model_version_tag(self.settings.model_name, mv.version, "validation_status", "passed")
            client.set_model_version_tag(self.settings.model_name, mv.version, "approved_by", "tester")
        return int(mv.version)

    def stream_events(self) -> list[dict]:
        import json

        return [json.loads(f[b"event"]) for _, f in self.events.xrange(self.settings.release_stream)]


@pytest.fixture(scope="module")
def release_store(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Path]:
    """One MLflow store per module (creating one costs seconds); each test registers a model of its own in it."""
    root = tmp_path_factory.mktemp("release_store")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        registry.connect(settings_for(root, redis_url=redis_url))
        yield root


@pytest.fixture
def releases(release_store: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Releases]:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    tag = uuid.uuid4().hex[:8]
    settings = settings_for(
        release_store,
        redis_url=redis_url,
        model_name=f"fraud-detector-{tag}",
        decision_stream=f"test:decisions:{tag}",
        release_stream=f"test:releases:{tag}",
    )
    client = registry.connect(settings)
    client.create_registered_model(settings.model_name)
    events = redis.Redis.from_url(redis_url)
    try:
        yield Releases(settings, state.Registry(settings), events)
    finally:
        events.delete(settings.decision_stream, settings.release_stream)
        events.close()
