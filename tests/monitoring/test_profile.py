"""Profiles: what is kept of a distribution, and reading one back."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from monitoring.profile import OTHER, Profile, as_numeric, summarize_categorical, summarize_numeric
from skewless.errors import BadInputError
from tests.monitoring.synthetic_logs import reference


def test_numeric_summary_keeps_observed_percentiles_bins_and_missing() -> None:
    values = pd.Series([1, 2, 2, 3, None, 4, 5, 6, 7, 8, 9, 10], dtype="Int64")
    s = summarize_numeric(values)
    assert (s.rows, s.missing, s.present) == (12, 1, 11)
    assert set(s.quantiles) <= {1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0}
    assert sum(s.counts) == 11 and len(s.counts) == len(s.edges) + 1
    assert s.cdf[-1] == 1.0 and s.grid == sorted(s.grid)
    assert s.mean == pytest.approx(57 / 11)


def test_a_binary_feature_gets_one_bin_per_side() -> None:
    s = summarize_numeric(np.array([0.0] * 95 + [1.0] * 5))
    assert s.edges == [0.0] and s.counts == [95, 5]


def test_all_missing_is_a_summary_with_nothing_present() -> None:
    s = summarize_numeric(pa.array([None, None], pa.float64()))
    assert (s.present, s.missing_share, s.edges, s.counts) == (0, 1.0, [], [0])


def test_categorical_summary_keeps_the_top_values_and_lumps_the_rest() -> None:
    values = ["a"] * 5 + ["b"] * 3 + [f"rare{i}" for i in range(60)] + [None]
    s = summarize_categorical(values, max_categories=2)
    assert s.counts == {"a": 5, "b": 3, OTHER: 60}
    assert (s.rows, s.missing) == (69, 1)


def test_profile_round_trips_through_json() -> None:
    profile = reference(n=2_000)
    again = Profile.from_dict(json.loads(json.dumps(profile.to_dict())))
    assert again == profile
    assert [s.name for s in again.specs] == ["age", "txn_amount", "txn_count_1d", "home_country", "amount", "country"]
    assert again.decision_share("approve") > 0.5


@pytest.mark.parametrize("data", [{"format": 99}, [], {"format": 1, "features": {}}])
def test_a_malformed_profile_is_refused_by_name(data: object) -> None:
    with pytest.raises(BadInputError, match="model v3 reference"):
        Profile.from_dict(data, where="model v3 reference")  # type: ignore[arg-type]


def test_numbers_read_straight_from_arrow_are_summarized_without_writing_into_them() -> None:
    """One Arrow chunk without nulls converts to a read-only numpy view; the summary must not write into it."""
    column = pa.chunked_array([pa.array([0.1, float("inf"), 0.3])])
    view = column.to_numpy()
    assert not view.flags.writeable
    out = as_numeric(view)
    assert np.isnan(out[1]) and out[0] == 0.1 and view[1] == float("inf")
