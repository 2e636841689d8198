"""The training-set gate on a real point-in-time training frame built through Feast from the small dataset."""

from __future__ import annotations

import contextlib
import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from skewless.cli import main
from skewless.errors import ValidationFailedError
from skewless.store import apply_definitions, open_store
from tests.conftest import REPO_ROOT
from training.dataset import TrainingFrame, build_training_frame, labelled_transactions
from validation.features import batch_views
from validation.gates import training_set_gate

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def repo(
    small_raw: Path, small_features: Path, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """A repo root with its own Feast project, the small raw data, its feature tables and applied definitions."""
    root = tmp_path_factory.mktemp("training_repo")
    config = (REPO_ROOT / "feature_store.yaml").read_text()
    (root / "feature_store.yaml").write_text(
        config.replace("project: skewless\n", f"project: skewless_test_{uuid.uuid4().hex[:10]}\n")
    )
    shutil.copytree(small_raw, root / "data" / "raw")
    shutil.copytree(small_features, root / "data" / "features")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REDIS_URL", redis_url)
        patch.setenv("SKEWLESS_REPO_ROOT", str(root))
        patch.chdir(root)
        store = open_store(root)
        apply_definitions(store)
        yield root
        with contextlib.suppress(Exception):
            store.teardown()


@pytest.fixture(scope="module")
def training(repo: Path) -> TrainingFrame:
    entities = labelled_transactions(repo / "data" / "raw")
    return build_training_frame(open_store(repo), "fraud_model_v1", entities)


def test_a_point_in_time_frame_passes_with_every_batch_feature_rederived(
    training: TrainingFrame, repo: Path, tmp_path: Path
) -> None:
    report = training_set_gate(training.frame, training.features, tmp_path, features_dir=repo / "data" / "features")
    batch_features = [f.name for view in batch_views() for f in view.features]
    assert report.success
    assert report.checked == [
        f"point in time: {len(batch_features)} batch feature(s) re-derived from {repo}/data/features"
    ]
    assert report.path is not None and (report.path / "result.json").exists()


def test_features_joined_from_a_later_snapshot_are_refused_as_leakage(
    training: TrainingFrame, repo: Path, tmp_path: Path
) -> None:
    """The classic leak: each payment gets its user's activity as of the end of its own day."""
    frame = training.frame.copy()
    day = frame["event_timestamp"].dt.strftime("%Y-%m-%d")
    end_of_day = pd.concat(
        pd.read_parquet(path).assign(day=path.stem)
        for path in sorted((repo / "data" / "features" / "user_activity").glob("*.parquet"))
    )
    leaked = frame.assign(day=day).merge(
        end_of_day[["user_id", "day", "txn_count_1d"]], on=["user_id", "day"], how="left"
    )
    frame["txn_count_1d"] = leaked["txn_count_1d_y"].to_numpy()

    with pytest.raises(ValidationFailedError) as info:
        training_set_gate(frame, training.features, tmp_path, features_dir=repo / "data" / "features")
    message = str(info.value)
    assert (
        "training set: expect_column_pair_values_to_be_equal failed on `txn_count_1d` vs `txn_count_1d__as_of`"
        in message
    )
    assert message.count("failed on") == 1, message
    report_path = info.value.report_path
    assert report_path is not None and (report_path / "docs" / "index.html").exists()


def test_duplicates_imbalance_too_few_rows_and_a_missing_feature_are_named(
    training: TrainingFrame, tmp_path: Path
) -> None:
    clean = training.frame[training.frame["is_fraud"] == 0].head(40)
    frame = pd.concat([clean, clean.head(5)]).drop(columns=[training.features[0]])

    with pytest.raises(ValidationFailedError) as info:
        training_set_gate(frame, training.features, tmp_path)
    assert info.value.report_path is not None
    saved = json.loads((info.value.report_path / "result.json").read_text())
    messages = [f["message"] for f in saved["findings"]]
    expected = [
        "training set: expect_table_row_count_to_be_between failed: observed 45 (expected min_value=1000)",
        "training set: expect_column_values_to_be_unique failed on `txn_id` for 22.22% of rows (10 of 45)",
        "training set: expect_column_mean_to_be_between failed on `is_fraud`: observed 0 (expected min_value=0.001",
        f"training set: expect_column_to_exist failed on `{training.features[0]}`",
    ]
    for fragment in expected:
        assert any(m.startswith(fragment) for m in messages), f"no finding starts with {fragment!r} in {messages}"
    assert saved["checked"] == ["point in time: not checked (no feature tables given)"]


def test_validate_training_set_command_builds_and_checks_the_frame(
    repo: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(repo)
    assert main(["validate", "training-set"]) == 0
    out = capsys.readouterr().out
    assert "training_set validation of 1 target(s) passed" in out
    assert str(repo / "data" / "reports" / "validation" / "training_set") in out
