"""The registered Pipeline's arithmetic on plain column arrays, for scoring one transaction in microseconds.

The model in the registry is a scikit-learn Pipeline: a ColumnTransformer (numbers: float, median imputation with
missing indicators, optionally scaling; text: "missing" for None, one-hot) and an estimator. Called on a one-row
DataFrame it spends about a millisecond in pandas and input validation before doing any arithmetic, and a
200-tree gradient-boosting model adds a Python call per tree. Here the fitted parameters are read out once, at
load, and applied with numpy to the columns the scorer already holds. Tree models are scored by a shared library
compiled from the trees (``serving.native``, once ``compile_native`` has run, off the request path); until then
small batches go through Treelite's GTIL predictor (one C++ call for all trees), large ones to the estimator.

Nothing is trusted blindly: ``CompiledModel.build`` runs the original Pipeline and the compiled path on a probe
of edge cases (missing values, every known category, an unseen one) and refuses (returns ``None``, the caller
keeps the Pipeline) unless both the feature matrix and the probabilities agree; the native library is checked
on the same probe before it is used.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from feature_repo.transformations import as_float
from serving.native import NativeTrees, compile_library, library_path
from serving.variants import matrix_drops
from training.model import as_category
from training.model import as_float as frame_as_float

log = logging.getLogger(__name__)

# Up to this many rows GTIL beats the estimator's own predict (per-call overhead vs per-row cost), measured here.
GTIL_MAX_ROWS = 64
# Compiled and Pipeline probabilities must agree to this absolute difference on the probe.
AGREEMENT = 1e-12


def numeric_column(values: Any) -> np.ndarray:
    """float64, None as NaN; text that is not a number becomes NaN, as the Pipeline's own conversion does."""
    try:
        return np.asarray(values, dtype="float64")
    except (TypeError, ValueError):
        return as_float(values)


def _category(value: Any) -> str:
    """A value as its category, missing as "missing": what the Pipeline's ``as_category`` produces."""
    return "missing" if value is None or value != value else str(value)


@dataclass(frozen=True)
class _Numeric:
    columns: list[str]
    fill: np.ndarray | None  # imputer statistics
    indicate: np.ndarray | None  # indices of features with a missing indicator
    mean: np.ndarray | None
    scale: np.ndarray | None

    @property
    def width(self) -> int:
        return len(self.columns) + (len(self.indicate) if self.indicate is not None else 0)

    def places(self, name: str) -> list[int]:
        """The output columns of feature ``name``: its value, then its missing indicator if it has one. Each is
        computed from that feature alone."""
        j = self.columns.index(name)
        indicated = [] if self.indicate is None else np.flatnonzero(self.indicate == j).tolist()
        return [j] + [len(self.columns) + k for k in indicated]

    def __call__(self, columns: Mapping[str, Any], n: int) -> np.ndarray:
        out = np.zeros((n, self.width))
        self.into(columns, n, out, 0)
        return out

    def into(self, columns: Mapping[str, Any], n: int, out: np.ndarray, at: int) -> None:
        """Writes the rows' block at ``out[:, at:at + width]``."""
        k = len(self.columns)
        try:  # one conversion for all columns (None becomes NaN); text in a column takes the slow way
            if n == 1:  # a flat list of values: ~3x faster than k lists of one
                x = np.array([columns[name][0] for name in self.columns], dtype="float64").reshape(1, k)
            else:
                x = np.array([columns[name] for name in self.columns], dtype="float64").T.reshape(n, k)
        except (TypeError, ValueError):
            x = np.empty((n, k), dtype="float64")
            for j, name in enumerate(self.columns):
                x[:, j] = numeric_column(columns[name])
        missing = np.isnan(x)
        if self.fill is not None:
            np.copyto(x, self.fill, where=missing)
        block = out[:, at : at + self.width]
        block[:, :k] = x
        if self.indicate is not None:
            block[:, k:] = missing[:, self.indicate]
        if self.mean is not None:  # the scaler follows the indicators: it scales them too
            block -= self.mean
        if self.scale is not None:
            block /= self.scale


@dataclass(frozen=True)
class _OneHot:
    columns: list[str]
    positions: list[dict[str, int]]  # per feature: category -> output column (offset within the block)
    unknown: list[int | None]  # per feature: the infrequent column unseen categories go to, or None (all zero)
    width: int

    def into(self, columns: Mapping[str, Any], n: int, out: np.ndarray, at: int) -> None:
        """Sets the rows' ones at ``out[:, at:at + width]`` (C-contiguous, zero there): per feature, each row's
        category (``_category``; text is its own) is looked up, and all the ones are set by one numpy assignment
        (1,000 rows: ~4x faster than a row at a time)."""
        width = out.shape[1]
        starts = range(at, n * width, width)
        hits: list[int] = []
        for name, positions, unknown in zip(self.columns, self.positions, self.unknown, strict=True):
            get = positions.get
            places = [get(v if v.__class__ is str else _category(v), unknown) for v in columns[name]]
            hits += [start + j for start, j in zip(starts, places, strict=True) if j is not None]
        if hits:
            out.reshape(-1)[hits] = 1.0  # a view: ``out`` is C-contiguous


Block = _Numeric | _OneHot  # a part of the feature matrix: ``width`` columns, written by ``into``


def _numeric_block(steps: list[Any], names: list[str]) -> _Numeric | None:
    fill = indicate = mean = scale = None
    for step in steps:
        if isinstance(step, FunctionTransformer) and step.func is frame_as_float:
            continue
        if isinstance(step, SimpleImputer) and step.strategy in ("median", "mean") and _is_nan(step.missing_values):
            fill = np.asarray(step.statistics_, dtype="float64")
            if step.indicator_ is not None:
                if step.indicator_.features != "missing-only":
                    return None
                indicate = np.asarray(step.indicator_.features_, dtype="int64")
            continue
        if isinstance(step, StandardScaler) and fill is not None:
            mean = np.asarray(step.mean_, dtype="float64") if step.with_mean else None
            scale = np.asarray(step.scale_, dtype="float64") if step.with_std else None
            continue
        return None
    return _Numeric(names, fill, indicate, mean, scale)


def _onehot_block(steps: list[Any], names: list[str]) -> _OneHot | None:
    if len(steps) != 2 or not (isinstance(steps[0], FunctionTransformer) and steps[0].func is as_category):
        return None
    encoder = steps[1]
    if not isinstance(encoder, OneHotEncoder) or encoder.drop_idx_ is not None:
        return None
    if encoder.handle_unknown not in ("ignore", "infrequent_if_exist"):
        return None
    infrequent = getattr(encoder, "infrequent_categories_", [None] * len(names))
    positions: list[dict[str, int]] = []
    unknown: list[int | None] = []
    offset = 0
    for categories, rare in zip(encoder.categories_, infrequent, strict=True):
        rare_set = set() if rare is None else {str(c) for c in rare}
        frequent = [str(c) for c in categories if str(c) not in rare_set]
        mapping = {c: offset + k for k, c in enumerate(frequent)}
        offset += len(frequent)
        rare_column = None
        if rare_set:
            rare_column = offset
            mapping.update(dict.fromkeys(rare_set, offset))
            offset += 1
        positions.append(mapping)
        unknown.append(rare_column if encoder.handle_unknown == "infrequent_if_exist" else None)
    return _OneHot(names, positions, unknown, offset)


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and np.isnan(value)


def _blocks(preprocess: ColumnTransformer) -> list[Block] | None:
    if preprocess.remainder != "drop" and any(name == "remainder" for name, *_ in preprocess.transformers_):
        return None
    blocks: list[Block] = []
    for name, transformer, columns in preprocess.transformers_:
        if name == "remainder" or transformer == "drop":
            continue
        steps = [s for _, s in transformer.steps] if isinstance(transformer, Pipeline) else [transformer]
        block = _numeric_block(steps, list(columns)) or _onehot_block(steps, list(columns))
        if block is None:
            return None
        blocks.append(block)
    return blocks


class CompiledModel:
    """``probability(columns)``: the Pipeline's fraud probability for columns given as arrays or lists."""

    def __init__(self, blocks: list[Block], estimator: Any, treelite_model: Any | None) -> None:
        self._blocks = blocks
        self._placed = [(block.into, sum(b.width for b in blocks[:i])) for i, block in enumerate(blocks)]
        self._width = sum(block.width for block in blocks)
        self._estimator = estimator
        self._treelite_model = treelite_model
        self._trees = _gtil(treelite_model) if treelite_model is not None else None
        self._native: Callable[[np.ndarray], np.ndarray] | None = None  # set once compiled and checked
        self._probe: tuple[dict[str, list[Any]], np.ndarray] | None = None  # columns and expected probabilities
        self._plans: dict[tuple[Any, ...], Any] = {}  # for ``drops``, per set of values

    @classmethod
    def build(cls, pipeline: Pipeline, probe: pd.DataFrame | None = None) -> CompiledModel | None:
        """Compile ``pipeline``, or None when its shape is not one this knows or the probe disagrees."""
        if len(pipeline.steps) != 2 or not isinstance(pipeline.steps[0][1], ColumnTransformer):
            return None
        estimator = pipeline.steps[1][1]
        if list(getattr(estimator, "classes_", [])) != [0, 1]:
            return None
        blocks = _blocks(pipeline.steps[0][1])
        if blocks is None:
            return None
        compiled = cls(blocks, estimator, _treelite(estimator))
        probe = probe if probe is not None else probe_frame(pipeline)
        if not compiled.agrees(pipeline, probe):
            log.warning("compiled model disagrees with its Pipeline on the probe; scoring through the Pipeline")
            return None
        columns = {c: probe[c].tolist() for c in probe.columns}
        compiled._probe = (columns, pipeline.predict_proba(probe)[:, 1])
        return compiled

    @property
    def uses_treelite(self) -> bool:
        return self._trees is not None

    @property
    def runtime(self) -> str:
        """What scores the trees: native (compiled), gtil (small batches; the estimator past them) or estimator."""
        if self._native is not None:
            return "native"
        return "gtil" if self._trees is not None else "estimator"

    def start_native(self, cache_dir: Path) -> threading.Thread | None:
        """``compile_native`` now when the library is in the cache (milliseconds), else on a thread of its own,
        returned, while this model scores as before."""
        if self._treelite_model is None or self._probe is None:
            return None
        if library_path(self._treelite_model, cache_dir).is_file():
            self.compile_native(cache_dir)
            return None
        thread = threading.Thread(target=self.compile_native, args=(cache_dir,), name="native-trees", daemon=True)
        thread.start()
        return thread

    def compile_native(self, cache_dir: Path) -> bool:
        """Compile the trees to a shared library (or load it from ``cache_dir``), check it against the probe and
        switch every batch size to it. Slow the first time (seconds): call it off the request path. False, with
        the reason logged, when it cannot be done here; scoring goes on as before."""
        if self._treelite_model is None or self._probe is None:
            return False
        columns, expected = self._probe
        try:
            trees = NativeTrees(compile_library(self._treelite_model, cache_dir))
            got = trees(self.matrix(columns, len(expected)))
        except Exception as exc:  # never worse than before: the model keeps scoring as it did
            log.warning("native tree scoring unavailable, staying with %s: %s", self.runtime, exc)
            return False
        if got.shape != expected.shape or float(np.max(np.abs(got - expected))) > AGREEMENT:
            log.warning("native trees %s disagree with the Pipeline on the probe; not used", trees.library.name)
            return False
        self._native = trees
        log.info("native tree scoring from %s", trees.library)
        return True

    def matrix(self, columns: Mapping[str, Any], n: int) -> np.ndarray:
        """The rows' feature matrix, each block written in place into one array (no stacking)."""
        out = np.zeros((n, self._width))
        for into, at in self._placed:
            into(columns, n, out, at)
        return out

    def probability(self, columns: Mapping[str, Any], n: int) -> np.ndarray:
        return self.predict_matrix(self.matrix(columns, n), n)

    def drops(self, columns: Mapping[str, Any], n: int, scores: np.ndarray, values: Mapping[str, float]) -> np.ndarray:
        """``ServedModel.drops`` made on this model's feature matrix (``serving.variants.matrix_drops``)."""
        return matrix_drops(self, columns, n, scores, values, self._plans)

    @property
    def blocks(self) -> list[Block]:
        """The preprocessing's blocks, in the matrix's column order."""
        return list(self._blocks)

    def predict_matrix(self, x: np.ndarray, n: int) -> np.ndarray:
        """Probabilities of the ``n`` rows of a feature matrix ``x``."""
        native = self._native
        if native is not None:
            return native(x)
        if self._trees is not None and n <= GTIL_MAX_ROWS:
            return np.asarray(self._trees(x), dtype="float64").reshape(n)
        return np.asarray(self._estimator.predict_proba(x)[:, 1], dtype="float64")

    def agrees(self, pipeline: Pipeline, probe: pd.DataFrame) -> bool:
        """The same feature matrix as the Pipeline's preprocessing, and the same probabilities through both
        predictors (GTIL for small batches, the estimator past ``GTIL_MAX_ROWS``)."""
        n = len(probe)
        columns = {c: probe[c].tolist() for c in probe.columns}
        if not np.array_equal(self.matrix(columns, n), pipeline.steps[0][1].transform(probe), equal_nan=True):
            return False
        expected = pipeline.predict_proba(probe)[:, 1]
        repeat = GTIL_MAX_ROWS // n + 1
        checks = [
            (self.probability({c: v[:1] for c, v in columns.items()}, 1), expected[:1]),
            (self.probability(columns, n), expected),
            (self.probability({c: v * repeat for c, v in columns.items()}, n * repeat), np.tile(expected, repeat)),
        ]
        return all(float(np.max(np.abs(got - want))) <= AGREEMENT for got, want in checks)


def _treelite(estimator: Any) -> Any | None:
    """Treelite's model of a gradient-boosted estimator, or None."""
    if not isinstance(estimator, HistGradientBoostingClassifier):
        return None
    try:
        import treelite.sklearn

        return treelite.sklearn.import_model(estimator)
    except Exception as exc:  # a model treelite cannot import still scores through the estimator
        log.warning("treelite could not import the model (%s); small batches use the estimator", exc)
        return None


def _gtil(model: Any) -> Callable[[np.ndarray], np.ndarray]:
    """Treelite's GTIL predictor. The GTIL configuration (a JSON parse in C++) is made once here rather than on
    every call as ``treelite.gtil.predict`` does; when this treelite has no such entry point the public function
    is used."""
    import treelite.gtil

    try:
        from treelite.gtil.gtil import GTILConfig, _predict_impl

        config = GTILConfig(nthread=1, predict_type="default")
        return lambda x: _predict_impl(model, x, config=config)
    except ImportError:
        return lambda x: treelite.gtil.predict(model, x, nthread=1)


def probe_frame(pipeline: Pipeline) -> pd.DataFrame:
    """Rows that exercise every branch of the preprocessing: typical, extreme and missing numbers, every known
    category, an unseen one and a missing one."""
    preprocess: ColumnTransformer = pipeline.steps[0][1]
    numeric: dict[str, list[Any]] = {}
    text: dict[str, list[Any]] = {}
    for name, transformer, columns in preprocess.transformers_:
        if name == "remainder":
            continue
        steps = [s for _, s in transformer.steps] if isinstance(transformer, Pipeline) else [transformer]
        encoder = next((s for s in steps if isinstance(s, OneHotEncoder)), None)
        imputer = next((s for s in steps if isinstance(s, SimpleImputer)), None)
        for j, column in enumerate(columns):
            if encoder is not None:
                text[column] = [str(c) for c in encoder.categories_[j]] + ["never-seen-before", None]
            else:
                typical = float(imputer.statistics_[j]) if imputer is not None else 0.0
                numeric[column] = [typical, None, 0, typical * 3 + 1, -1.5, 1e9]
    rows = max([len(v) for v in [*numeric.values(), *text.values()]] + [1])
    data = {c: [v[i % len(v)] for i in range(rows)] for c, v in {**numeric, **text}.items()}
    return pd.DataFrame(data, dtype="object")[list(pipeline.feature_names_in_)]
