"""The compiled scoring path gives the registered Pipeline's numbers exactly, and refuses what it does not know."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import PolynomialFeatures
from threadpoolctl import threadpool_limits

from serving.compiled import GTIL_MAX_ROWS, CompiledModel
from serving.native import NativeTrees, compile_library, library_path
from serving.variants import column_drops
from training.model import FeatureKinds, candidate_models

KINDS = FeatureKinds(numeric=["amount", "orders", "always_missing", "ratio"], categorical=["country", "channel"])


def _frame(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    amount = rng.lognormal(3, 1, n)
    orders = rng.integers(0, 50, n).astype("float64")
    orders[rng.random(n) < 0.1] = np.nan
    country = rng.choice(["DE", "FR", "US", "NG"], n, p=[0.5, 0.3, 0.195, 0.005]).astype(object)  # NG is rare
    country[rng.random(n) < 0.05] = None
    channel = rng.choice(["web", "app", "pos"], n).astype(object)
    frame = pd.DataFrame(
        {
            "amount": amount,
            "orders": pd.array(np.where(np.isnan(orders), None, orders), dtype="Int64"),
            "always_missing": [None] * n,
            "ratio": amount / (np.nan_to_num(orders) + 1),
            "country": country,
            "channel": channel,
        }
    )
    y = ((amount > 60) & (channel == "web") | (country == "NG")).astype(int)
    return frame, y


@pytest.fixture(scope="module")
def fitted() -> dict[str, Pipeline]:
    frame, y = _frame(4_000, seed=1)
    with threadpool_limits(1):
        return {name: model.fit(frame, y) for name, model in candidate_models(KINDS, seed=0).items()}


@pytest.mark.parametrize("name", ["hist_gradient_boosting", "logistic_regression"])
def test_compiled_probabilities_equal_the_pipeline(fitted: dict[str, Pipeline], name: str) -> None:
    pipeline = fitted[name]
    compiled = CompiledModel.build(pipeline)
    assert compiled is not None, "the project's own candidate models must compile"
    assert compiled.uses_treelite == (name == "hist_gradient_boosting")
    frame, _ = _frame(300, seed=2)
    frame.loc[3, "country"] = "never-seen"
    frame.loc[4, "amount"] = None
    frame.loc[5, "channel"] = np.nan
    expected = pipeline.predict_proba(frame[list(pipeline.feature_names_in_)])[:, 1]
    with threadpool_limits(1):
        for rows in (1, 8, GTIL_MAX_ROWS, GTIL_MAX_ROWS + 1, 300):  # both predictors, either side of the switch
            part = frame.head(rows)
            columns = {c: part[c].tolist() for c in part.columns}  # lists holding None, as the scorer builds them
            got = compiled.probability(columns, rows)
            np.testing.assert_allclose(got, expected[:rows], rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", ["hist_gradient_boosting", "native", "logistic_regression"])
def test_drops_made_on_the_matrix_equal_the_pipeline_on_rebuilt_rows(
    fitted: dict[str, Pipeline], name: str, tmp_path: Path
) -> None:
    """Each row with one numeric feature at a value, one feature at a time: the drops the compiled model makes by
    editing its feature matrix equal the Pipeline's predictions of the rows rebuilt as frames, and so do the drops
    made from columns. A row whose input would not change (already at the value) is not predicted: exactly 0."""
    pipeline = fitted["hist_gradient_boosting" if name == "native" else name]
    compiled = CompiledModel.build(pipeline)
    assert compiled is not None
    if name == "native":
        assert compiled.compile_native(tmp_path)
    frame, _ = _frame(40, seed=7)
    frame.loc[2, "amount"] = None  # missing: its missing indicator changes too
    frame.loc[6, "orders"] = 10
    values = {"amount": 20.0, "orders": 10.0, "always_missing": 0.0, "ratio": float(frame.loc[5, "ratio"])}
    base = pipeline.predict_proba(frame)[:, 1]
    expected = np.array([base - pipeline.predict_proba(frame.assign(**{k: v}))[:, 1] for k, v in values.items()])
    columns = {c: frame[c].tolist() for c in frame.columns}
    with threadpool_limits(1):
        got = compiled.drops(columns, len(frame), base, values)
        from_columns = column_drops(compiled.probability, columns, len(frame), base, values)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(from_columns, expected, rtol=0, atol=1e-12)
    assert got[1, 6] == 0 and got[3, 5] == 0, "already at the value: not predicted"
    assert np.count_nonzero(got) > 20, "the other variants do move the scores"


def test_native_trees_equal_the_pipeline(fitted: dict[str, Pipeline], tmp_path: Path) -> None:
    """The trees compiled to a shared library give the Pipeline's probabilities at every batch size, come from the
    cache the second time, and read NaN as missing the way the estimator does."""
    pipeline = fitted["hist_gradient_boosting"]
    compiled = CompiledModel.build(pipeline)
    assert compiled is not None and compiled.runtime == "gtil"
    assert compiled.compile_native(tmp_path), "gcc is on this machine: the model must compile"
    assert compiled.runtime == "native"
    frame, _ = _frame(300, seed=5)
    frame.loc[7, "country"] = "never-seen"
    expected = pipeline.predict_proba(frame[list(pipeline.feature_names_in_)])[:, 1]
    for rows in (1, 8, 300):
        part = frame.head(rows)
        got = compiled.probability({c: part[c].tolist() for c in part.columns}, rows)
        np.testing.assert_allclose(got, expected[:rows], rtol=0, atol=1e-12)

    estimator = pipeline.steps[1][1]
    library = library_path(compiled._treelite_model, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [library.name], "one library, no partial files left"
    assert compile_library(compiled._treelite_model, tmp_path) == library  # from the cache
    x = pipeline.steps[0][1].transform(frame)
    x[::3, 0] = np.nan  # the trees' own missing-value branches, which imputation normally keeps them from
    np.testing.assert_allclose(NativeTrees(library)(x), estimator.predict_proba(x)[:, 1], rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="columns"):
        NativeTrees(library)(x[:, :-1])


def test_a_damaged_cached_library_leaves_the_model_scoring_as_before(
    fitted: dict[str, Pipeline], tmp_path: Path
) -> None:
    pipeline = fitted["hist_gradient_boosting"]
    compiled = CompiledModel.build(pipeline)
    assert compiled is not None
    library_path(compiled._treelite_model, tmp_path).write_bytes(b"not a shared library")
    assert not compiled.compile_native(tmp_path)
    assert compiled.runtime == "gtil"
    frame, _ = _frame(5, seed=6)
    got = compiled.probability({c: frame[c].tolist() for c in frame.columns}, 5)
    np.testing.assert_allclose(got, pipeline.predict_proba(frame)[:, 1], rtol=0, atol=1e-12)


def test_shapes_it_does_not_know_are_refused(fitted: dict[str, Pipeline]) -> None:
    """A step the compiler has no rule for: no compiled model, so the caller keeps scoring with the Pipeline."""
    preprocess = ColumnTransformer([("poly", PolynomialFeatures(2), ["amount", "ratio"])])
    frame, y = _frame(500, seed=3)
    pipeline = Pipeline([("features", preprocess), ("model", HistGradientBoostingClassifier(max_iter=5))])
    pipeline.fit(frame, y)
    assert CompiledModel.build(pipeline) is None


def test_a_probe_disagreement_is_refused(fitted: dict[str, Pipeline]) -> None:
    """The build checks itself: tamper with the fitted imputer after compiling and the check catches it."""
    pipeline = fitted["logistic_regression"]
    compiled = CompiledModel.build(pipeline)
    assert compiled is not None
    imputer = pipeline.named_steps["features"].named_transformers_["numeric"].named_steps["impute"]
    original = imputer.statistics_.copy()
    try:
        imputer.statistics_ = original + 1.0
        probe, _ = _frame(50, seed=4)
        assert not compiled.agrees(pipeline, probe[list(pipeline.feature_names_in_)])
    finally:
        imputer.statistics_ = original
