"""`skewless monitor` end to end on worker-format logs: real Parquet, DuckDB, MLflow store and Redis stream."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import mlflow
import pytest
import redis

from monitoring.logs import Window, parse_duration, parse_until
from monitoring.profile import Profile
from monitoring.reference import ARTIFACT
from skewless.cli import main
from skewless.errors import BadInputError
from skewless.settings import Settings
from tests.monitoring.synthetic_logs import Drift, make_rows, reference, write_logs
from training import registry

pytestmark = pytest.mark.integration
DAY = date(2026, 10, 10)
BEFORE = date(2026, 10, 9)


@dataclass(frozen=True)
class Registry:
    root: Path
    with_profile: int
    without_profile: int
    stream: str


def _register(settings: Settings, profile: Profile | None) -> int:
    """A registered version whose run holds ``profile`` as the reference artifact (or none)."""
    client = registry.connect(settings)
    with mlflow.start_run() as run:
        mlflow.set_tags({"feature_service": "synthetic_service"})
        if profile is not None:
            mlflow.log_dict(profile.to_dict(), ARTIFACT)
        mlflow.log_dict({"stand_in": True}, "model/stand_in.json")
    if not registry.all_versions(client, settings.model_name):
        client.create_registered_model(settings.model_name)
    version = client.create_model_version(
        settings.model_name, source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id
    )
    return int(version.version)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Registry]:
    root = tmp_path_factory.mktemp("monitored_repo")
    (root / "data").mkdir()
    stream = f"test:alerts:{uuid.uuid4().hex[:8]}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REDIS_URL", redis_url)
        mp.setenv("SKEWLESS_REPO_ROOT", str(root))
        mp.setenv("SKEWLESS_ALERT_STREAM", stream)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        settings = Settings()
        first = _register(settings, reference())
        second = _register(settings, None)
        yield Registry(root, first, second, stream)
    redis.Redis.from_url(redis_url).delete(stream)


@pytest.fixture
def env(models: Registry, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Registry:
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("SKEWLESS_REPO_ROOT", str(models.root))
    monkeypatch.setenv("SKEWLESS_ALERT_STREAM", models.stream)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    redis.Redis.from_url(redis_url).delete(models.stream)
    return models


def _monitor(tmp_path: Path, *args: str) -> int:
    return main(["monitor", "--logs", str(tmp_path / "predictions"), "--out", str(tmp_path / "out"), *args])


def _report(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "out" / "report.json").read_text())


def _alerts(redis_url: str, stream: str) -> list[dict]:
    entries = redis.Redis.from_url(redis_url).xrange(stream)
    return [json.loads(fields[b"alert"]) for _, fields in entries]


def test_known_drift_is_flagged_reported_and_published(env: Registry, tmp_path: Path, redis_url: str) -> None:
    write_logs(make_rows(3_000, 3, Drift(older_users=True, broken_country=True)), tmp_path / "predictions", DAY)
    assert _monitor(tmp_path, "--date", DAY.isoformat()) == 1
    report = _report(tmp_path)
    assert set(report["summary"]["drifted_features"]) == {"age", "country"}
    assert report["model"]["version"] == env.with_profile and report["against"] == "reference"
    assert report["window"] == {"start": "2026-10-10T00:00:00+00:00", "end": "2026-10-11T00:00:00+00:00"}
    assert report["volume"]["decisions"] == 3_000
    published = _alerts(redis_url, env.stream)
    assert {(a["kind"], a["subject"]) for a in published} == {("feature_drift", "age"), ("feature_drift", "country")}
    assert published[0]["window_start"] == "2026-10-10T00:00:00+00:00"
    html = (tmp_path / "out" / "report.html").read_text()
    assert "<svg" in html and "age drifted against the reference" in html


def test_no_drift_exits_zero_and_publishes_nothing(env: Registry, tmp_path: Path, redis_url: str) -> None:
    write_logs(make_rows(3_000, 4), tmp_path / "predictions", DAY)
    assert _monitor(tmp_path, "--date", DAY.isoformat()) == 0
    assert _report(tmp_path)["alerts"] == []
    assert _alerts(redis_url, env.stream) == []


def test_missing_spike_and_decision_jump_alert_against_the_previous_window(
    env: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_logs(make_rows(3_000, 5), tmp_path / "predictions", BEFORE)
    write_logs(make_rows(3_000, 6, Drift(missing_age=0.3, block_share=0.1)), tmp_path / "predictions", DAY)
    assert _monitor(tmp_path, "--date", DAY.isoformat(), "--against", "previous-window", "--no-publish") == 1
    report = _report(tmp_path)
    kinds = {(a["kind"], a["subject"]) for a in report["alerts"]}
    assert {("missing_values", "age"), ("decision_rate", "block")} <= kinds
    assert report["baseline"]["source"] == "prediction logs of the previous window"
    assert report["predictions"]["decisions"]["block"]["reference"] is not None
    assert report["volume"]["previous_window"] == 3_000
    out = capsys.readouterr().out
    assert "ALERTS" in out and "age missing" in out


def test_window_ends_and_lengths_are_parsed() -> None:
    end = parse_until("2026-10-11")
    assert Window.ending(end, parse_duration("1d")).days() == [date(2026, 10, 10)]
    assert Window.ending(parse_until("2026-10-11T06:00"), parse_duration("12h")).days() == [
        date(2026, 10, 10),
        date(2026, 10, 11),
    ]
    with pytest.raises(BadInputError, match="empty window"):
        parse_duration("0d")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--window", "0d"], "empty window"),
        (["--window", "yesterday"], "expected a number and a unit"),
        (["--until", "soon"], "expected YYYY-MM-DD or an ISO time"),
        (["--date", "2026-10-20"], "no prediction logs in the window"),
        (["--date", DAY.isoformat(), "--model-version", "9"], "no decisions of fraud-detector v9"),
    ],
)
def test_bad_input_is_a_message_and_exit_2(
    env: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    write_logs(make_rows(600, 1), tmp_path / "predictions", DAY)
    assert _monitor(tmp_path, *args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_no_logs_at_all_says_to_run_the_worker(env: Registry, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert _monitor(tmp_path, "--date", DAY.isoformat()) == 2
    assert "run `skewless worker`" in capsys.readouterr().err


def test_a_version_without_reference_profile_is_named(env: Registry, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    write_logs(make_rows(600, 1), tmp_path / "predictions", DAY, model_version=env.without_profile)
    assert _monitor(tmp_path, "--date", DAY.isoformat()) == 2
    err = capsys.readouterr().err
    assert f"fraud-detector v{env.without_profile} has no reference profile" in err
    assert "--against previous-window" in err


def test_a_malformed_thresholds_file_names_the_field(env: Registry, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "thresholds.json"
    path.write_text(json.dumps({"psi_significant": -1, "features": {"age": {"nope": 1}}}))
    assert _monitor(tmp_path, "--thresholds", str(path)) == 2
    err = capsys.readouterr().err
    assert "psi_significant" in err and "features.age.nope" in err


def test_thresholds_print_as_json(env: Registry, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert _monitor(tmp_path, "--print-thresholds") == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["psi_significant"] == 0.2 and printed["ks"] == 0.15


def test_redis_down_when_publishing_is_exit_3_with_the_report_written(
    env: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_logs(make_rows(3_000, 3, Drift(older_users=True)), tmp_path / "predictions", DAY)
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    assert _monitor(tmp_path, "--date", DAY.isoformat()) == 3
    assert "alert(s) not published" in capsys.readouterr().err
    assert _report(tmp_path)["summary"]["drifted_features"] == ["age"]
