"""The model: a scikit-learn Pipeline (preprocessing + estimator), registered whole so preprocessing has no copy.

Which columns are numeric and which categorical is asked of the feature service's Feast schema (String fields
are categorical), never listed here.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import version

import numpy as np
import pandas as pd
from feast import FeatureService
from feast.types import String
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

# Types inside the saved Pipeline that skops must be told are safe: we wrote them, and we load only our own models.
TRUSTED_TYPES = [
    "numpy.dtype",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "training.model.as_category",
    "training.model.as_float",
]


@dataclass(frozen=True)
class FeatureKinds:
    numeric: list[str]
    categorical: list[str]

    @property
    def all(self) -> list[str]:
        return self.numeric + self.categorical


def feature_kinds(service: FeatureService) -> FeatureKinds:
    numeric, categorical = [], []
    for projection in service.feature_view_projections:
        for field in projection.features:
            (categorical if field.dtype == String else numeric).append(field.name)
    return FeatureKinds(numeric=numeric, categorical=categorical)


def as_float(frame: pd.DataFrame) -> np.ndarray:
    """Numeric features as float64 whatever Feast handed over (ints, nullable ints, objects holding None)."""
    columns = [
        frame[c].to_numpy(dtype="float64", na_value=np.nan)
        if pd.api.types.is_numeric_dtype(frame[c])
        else pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
        for c in frame.columns
    ]
    return np.column_stack(columns) if columns else np.empty((len(frame), 0))


def as_category(frame: pd.DataFrame) -> np.ndarray:
    """Categorical features as strings, missing as the category "missing"."""
    return frame.astype("object").where(frame.notna(), "missing").astype(str).to_numpy()


def _preprocessing(kinds: FeatureKinds, scale: bool) -> ColumnTransformer:
    numeric_steps: list[tuple[str, object]] = [
        ("float", FunctionTransformer(as_float, feature_names_out="one-to-one")),
        ("impute", SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)),
    ]
    if scale:
        numeric_steps.append(("scale", StandardScaler()))
    categorical_steps = [
        ("text", FunctionTransformer(as_category, feature_names_out="one-to-one")),
        ("onehot", OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=20, sparse_output=False)),
    ]
    return ColumnTransformer(
        [
            ("numeric", Pipeline(numeric_steps), kinds.numeric),
            ("categorical", Pipeline(categorical_steps), kinds.categorical),
        ],
        verbose_feature_names_out=False,
    )


def candidate_models(kinds: FeatureKinds, seed: int = 0) -> dict[str, Pipeline]:
    """A gradient-boosted model and a linear baseline, both weighting the rare fraud class up."""
    return {
        "hist_gradient_boosting": Pipeline(
            [
                ("features", _preprocessing(kinds, scale=False)),
                (
                    "model",
                    HistGradientBoostingClassifier(
                        max_iter=200,
                        learning_rate=0.08,
                        max_leaf_nodes=31,
                        l2_regularization=1.0,
                        class_weight="balanced",
                        early_stopping=False,
                        random_state=seed,
                    ),
                ),
            ]
        ),
        "logistic_regression": Pipeline(
            [
                ("features", _preprocessing(kinds, scale=True)),
                ("model", LogisticRegression(class_weight="balanced", max_iter=2_000, C=0.5)),
            ]
        ),
    }


def model_requirements() -> list[str]:
    """What loading the Pipeline needs, stated instead of inferred (MLflow's inference runs a 30 s subprocess)."""
    return [f"{name}=={version(name)}" for name in ("scikit-learn", "numpy", "pandas", "scipy", "skops", "skewless")]


def fraud_probability(model: Pipeline, features: pd.DataFrame) -> np.ndarray:
    return np.asarray(model.predict_proba(features)[:, 1], dtype="float64")
