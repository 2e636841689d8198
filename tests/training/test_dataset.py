from __future__ import annotations

import pandas as pd
import pytest

from skewless.errors import BadInputError
from skewless.settings import Settings
from training.dataset import mature_labels, split_by_time
from training.train import check_label_set


def _frame(days: int, fraud_every: int = 5) -> pd.DataFrame:
    ts = pd.date_range("2026-11-01", periods=days * 4, freq="6h", tz="UTC")
    return pd.DataFrame(
        {
            "txn_id": range(len(ts)),
            "event_timestamp": ts,
            "is_fraud": [int(i % fraud_every == 0) for i in range(len(ts))],
        }
    )


def test_split_trains_on_the_past_and_validates_on_the_latest_window() -> None:
    train, valid = split_by_time(_frame(20), 0.25)
    assert train["event_timestamp"].max() < valid["event_timestamp"].min()
    assert 0.2 < len(valid) / (len(train) + len(valid)) < 0.3


def test_split_refuses_a_window_with_one_class() -> None:
    frame = _frame(20)
    frame.loc[frame.index[-20:], "is_fraud"] = 0
    with pytest.raises(BadInputError, match=r"validation window .* needs both classes"):
        split_by_time(frame, 0.25)


def test_immature_labels_are_dropped() -> None:
    frame = _frame(20)
    frame.attrs["labels_known_until"] = pd.Timestamp("2026-11-21", tz="UTC")
    kept = mature_labels(frame, 7)
    assert kept["event_timestamp"].max() < pd.Timestamp("2026-11-14", tz="UTC")
    assert kept.attrs["labels_known_until"] == frame.attrs["labels_known_until"]
    assert len(mature_labels(frame, 0)) == len(frame)


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (_frame(0), "label set is empty"),
        (_frame(20).assign(is_fraud=0), "single class"),
        (_frame(2), "label set too small: 8 rows, need at least 1,000"),
    ],
)
def test_unusable_label_sets_are_refused(frame: pd.DataFrame, message: str) -> None:
    with pytest.raises(BadInputError, match=message):
        check_label_set(frame, Settings())


def test_too_few_fraud_labels_are_refused() -> None:
    with pytest.raises(BadInputError, match="has 1 fraud labels, need at least 20"):
        check_label_set(_frame(400, fraud_every=10_000), Settings(min_training_rows=10))
