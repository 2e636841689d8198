"""Monitoring a served repo: the champion's reference profile, drift replayed through the real app, and the
metric names in deploy/ against the app's own /metrics."""

from __future__ import annotations

import json
import re
from datetime import date, timedelta
from pathlib import Path

import mlflow
import pytest
import redis
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from data.files import list_days
from feature_repo.windows import service_windows
from monitoring.reference import ARTIFACT, feature_specs
from monitoring.replay import as_requests, replay_frame
from serving.app import create_app
from serving.worker import PredictionLogWorker
from skewless.cli import main
from skewless.store import feature_service, open_store
from tests.conftest import REPO_ROOT
from tests.serving.conftest import ServedRepo
from training import registry

pytestmark = [pytest.mark.integration, pytest.mark.slow]
DEPLOY = REPO_ROOT / "deploy"
SUFFIXES = {"histogram": ("_bucket", "_count", "_sum", "_created"), "counter": ("_total", "_created")}
STREAM = "test:monitoring:decisions"


@pytest.fixture(scope="module")
def replayed(served_repo: ServedRepo, tmp_path_factory: pytest.TempPathFactory) -> tuple[ServedRepo, Path, str, list]:
    """Two raw days scored through the app: the earlier as it was, the later with every drift; logs written."""
    settings = served_repo.settings.model_copy(update={"decision_stream": STREAM, "worker_group": "monitor-test"})
    client = redis.Redis.from_url(served_repo.redis.url)
    client.delete(STREAM)
    days = list_days(settings.raw_dir / "transactions")
    clean, drifted = days[-3], days[-2]  # both before the newest snapshot, so both read it alike
    with TestClient(create_app(settings)) as app:
        for day, drifts in ((clean, []), (drifted, ["older-users", "higher-amounts", "broken-country"])):
            transactions = as_requests(replay_frame(settings, day, drifts))
            for i in range(0, len(transactions), 500):
                reply = app.post("/score/batch", json={"transactions": transactions[i : i + 500]})
                assert reply.status_code == 200, reply.text
        exposition = app.get("/metrics").text
    out = tmp_path_factory.mktemp("monitored") / "predictions"
    worker = PredictionLogWorker(client, STREAM, "monitor-test", out)
    worker.ensure_group()
    while worker.step(block_ms=200):
        pass
    return served_repo, out, exposition, [clean, drifted]


def test_the_champion_carries_a_reference_profile_of_its_feature_service(served_repo: ServedRepo) -> None:
    client = registry.connect(served_repo.settings)
    mv = registry.model_version(client, served_repo.settings.model_name, version=served_repo.champion)
    profile = mlflow.artifacts.load_dict(f"runs:/{mv.run_id}/{ARTIFACT}")
    store = open_store(served_repo.root)
    specs = feature_specs(store, feature_service(store, mv.tags["feature_service"]))
    assert list(profile["features"]) == [s.name for s in specs]
    assert {"amount", "country", "channel"} <= {s.name for s in specs if s.origin == "request"}
    age = profile["features"]["age"]
    assert len(age["quantiles"]) == 101 and sum(age["counts"]) == age["rows"] - age["missing"]
    assert profile["decisions"]["block"] > 0 and set(profile["thresholds"]) == {"block", "review"}


def test_replayed_drift_is_flagged_on_exactly_the_features_it_touches(
    replayed: tuple[ServedRepo, Path, str, list[date]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, logs, _, (_, drifted) = replayed
    monkeypatch.setenv("SKEWLESS_REPO_ROOT", str(repo.root))
    monkeypatch.setenv("REDIS_URL", repo.redis.url)
    out = tmp_path / "report"
    args = ["monitor", "--logs", str(logs), "--out", str(out), "--no-publish"]
    assert main([*args, "--date", drifted.isoformat(), "--against", "previous-window"]) == 1
    report = json.loads((out / "report.json").read_text())
    flagged = set(report["summary"]["drifted_features"])
    injected = {"age", "age_group", "txn_amount", "amount", "amount_to_typical", "country", "is_foreign_country"}
    # Velocity features are computed from the replayed stream, so they may move with it (amounts doubled, older
    # customers' payments gathered onto the day); no stored or unrelated feature may be flagged.
    store = open_store(repo.root)
    windowed = {f.name for w in service_windows(store, feature_service(store, repo.settings.feature_service))
                for f in w.features}  # fmt: skip
    assert injected <= flagged, f"missed {sorted(injected - flagged)}"
    assert flagged - injected <= windowed, f"flagged unrelated {sorted(flagged - injected - windowed)}"
    assert report["volume"]["previous_window"] > 0
    # Against the reference the same window is judged too (the profile trained with the champion).
    assert main([*args, "--window", "2d", "--until", (drifted + timedelta(days=1)).isoformat()]) in (0, 1)
    assert json.loads((out / "report.json").read_text())["against"] == "reference"


def test_every_metric_name_in_deploy_is_exposed_by_the_app(replayed: tuple[ServedRepo, Path, str, list]) -> None:
    _, _, exposition, _ = replayed
    families = {f.name: f for f in text_string_to_metric_families(exposition)}
    samples = {s.name: set(s.labels) for f in families.values() for s in f.samples}
    exposed = set(samples)
    for name, family in families.items():
        exposed.add(name)
        exposed.update(name + suffix for suffix in SUFFIXES.get(family.type, ()))
    used: dict[str, set[str]] = {}
    for path in [*DEPLOY.rglob("*.yml"), *DEPLOY.rglob("*.json")]:
        text = path.read_text()
        for match in re.finditer(r"\b(skewless_[a-z0-9_]+)(\{([^}]*)\})?", text):
            labels = set(re.findall(r"([a-z_]+)\s*=~?", match.group(3) or ""))
            used.setdefault(match.group(1), set()).update(labels)
    assert len(used) >= 10, "deploy/ should use the service's metrics"
    assert sorted(set(used) - exposed) == []
    for name, labels in used.items():
        if name in samples:
            assert labels <= samples[name], f"{name} has no label {labels - samples[name]}"
