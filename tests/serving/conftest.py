"""A served repo: recent generated data, features in a Redis of its own, a deployed champion."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

from data.generate import GeneratorConfig, generate
from pipeline.run import run_pipeline
from skewless.settings import Settings
from skewless.store import apply_definitions, open_store
from tests.conftest import REPO_ROOT
from tests.training.conftest import settings_for
from training.lifecycle import approve, deploy, validate_model
from training.train import train

REDIS_SERVER = shutil.which("redis-server")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisProcess:
    """A real redis-server of the test's own, so a test can take it down and bring it back."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if REDIS_SERVER is None:
            pytest.fail("redis-server is not installed; the serving tests need a Redis they can stop")
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        for _ in range(100):
            try:
                client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        pytest.fail(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.proc:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


@dataclass
class ServedRepo:
    root: Path
    settings: Settings
    redis: RedisProcess
    champion: int

    def materialize(self) -> None:
        store = open_store(self.root)
        store.materialize(datetime.now(UTC) - timedelta(days=30), datetime.now(UTC))


@pytest.fixture(scope="module")
def served_repo(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[ServedRepo]:
    # ``redis_url`` (the shared Redis, session-wide) is settled first: asked for later, while REDIS_URL below
    # points at this module's own server, it would have kept that server's address after the server stopped.
    root = tmp_path_factory.mktemp("served_repo")
    project = f"skewless_test_{uuid.uuid4().hex[:10]}"
    config = (REPO_ROOT / "feature_store.yaml").read_text().replace("project: skewless\n", f"project: {project}\n")
    (root / "feature_store.yaml").write_text(config)
    server = RedisProcess(_free_port())
    server.start()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REDIS_URL", server.url)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.chdir(root)
        start = datetime.now(UTC).date() - timedelta(days=12)
        generate(GeneratorConfig(users=1500, days=12, seed=5, start=start), root / "data" / "raw")
        run_pipeline(root / "data" / "raw", root / "data" / "features")
        apply_definitions(open_store(root))
        settings = settings_for(
            root, model_poll_seconds=0.5, microbatch_wait_ms=1.0, max_batch_size=1000, decision_stream="test:decisions"
        )
        outcome = train(settings, seed=1)
        validate_model(settings, outcome.version)
        approve(settings, outcome.version, "tester")
        deploy(settings, outcome.version)
        repo = ServedRepo(root=root, settings=settings, redis=server, champion=outcome.version)
        repo.materialize()
        try:
            yield repo
        finally:
            server.stop()
