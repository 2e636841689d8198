"""The reasons' arithmetic: how much each row's score falls when one feature takes another value.

``ServedModel.drops`` answers it for a batch of flagged rows and a value per candidate feature (their training
medians), in one prediction for every (feature, row) pair that changes anything. ``column_drops`` works for any
model: it builds the variants as columns. ``matrix_drops`` works on a compiled model's feature matrix: the rows'
matrix is built once and the variants are copies of its rows with the feature's own columns changed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from serving.compiled import CompiledModel

Plan = tuple[np.ndarray, np.ndarray, np.ndarray] | None


def column_drops(
    probability: Callable[[Mapping[str, Any], int], np.ndarray],
    columns: Mapping[str, Any],
    n: int,
    scores: np.ndarray,
    values: Mapping[str, float],
) -> np.ndarray:
    """``ServedModel.drops`` for any model: the variants are built as columns (each row once per feature not
    already at its value) and go to ``probability`` in one call."""
    names = list(values)
    tried: list[tuple[int, int]] = []  # (feature k, row j) pairs worth a prediction
    at: dict[str, list[int]] = {name: [] for name in names}  # per feature, where its pairs sit
    for j in range(n):
        for k, name in enumerate(names):
            if not _at_value(columns[name][j], values[name]):
                at[name].append(len(tried))
                tried.append((k, j))
    drops = np.zeros((len(names), n))  # untried pairs: no change
    if tried:
        ks, js = (np.array(part) for part in zip(*tried, strict=True))
        variants = {name: [column[j] for j in js.tolist()] for name, column in columns.items()}
        for name, positions in at.items():
            column = variants[name]
            for position in positions:
                column[position] = values[name]
        drops[ks, js] = scores[js] - probability(variants, len(tried))
    return drops


def _at_value(value: Any, wanted: float) -> bool:
    """True when setting the feature to ``wanted`` would change nothing (a missing value is not at it: its
    missing indicator would change)."""
    return isinstance(value, int | float | np.integer | np.floating) and value == wanted


def matrix_drops(
    model: CompiledModel,
    columns: Mapping[str, Any],
    n: int,
    scores: np.ndarray,
    values: Mapping[str, float],
    plans: dict[tuple[Any, ...], Plan],
) -> np.ndarray:
    """``ServedModel.drops`` on ``model``'s feature matrix, in a few whole-array steps: each variant is a copy
    of its row with the feature's own columns (value, missing indicator) set to what the value gives them. A
    variant whose columns would not change is not predicted (its drop is 0). ``plans`` keeps the columns and
    targets per set of values. Features outside the numeric blocks go to ``column_drops``."""
    key = tuple(values.items())
    if key not in plans:
        plans[key] = _plan(model.blocks, values)
    plan = plans[key]
    if plan is None:
        return column_drops(model.probability, columns, n, scores, values)
    first, second, targets = plan  # per feature: its value column, its indicator's (or the value's again)
    x = model.matrix(columns, n)
    k = len(first)
    differs = x[:, np.concatenate([first, second])] != targets  # NaN equals nothing: a missing value changes
    rows, features = np.nonzero(differs[:, :k] | differs[:, k:])
    drops = np.zeros((k, n))
    if not len(rows):
        return drops
    variants = x[rows]
    at = np.arange(len(rows))
    variants[at, first[features]] = targets[features]
    variants[at, second[features]] = targets[k + features]
    drops[features, rows] = scores[rows] - model.predict_matrix(variants, len(rows))
    return drops


def _plan(blocks: list[Any], values: Mapping[str, float]) -> Plan:
    """Per feature of ``values`` (in order): its value column, its missing indicator's column (the value's
    again without one), and what ``values`` puts in those columns (value columns first, then indicators).
    None when a feature is not in a numeric block (a block that can say where a feature lands: ``places``)."""
    offsets, at = {}, 0
    for block in blocks:
        if hasattr(block, "places"):
            for name in block.columns:
                offsets[name] = (block, at)
        at += block.width
    if any(name not in offsets for name in values):
        return None
    places = [[offsets[name][1] + c for c in offsets[name][0].places(name)] for name in values]
    first = np.array([cols[0] for cols in places], dtype="int64")
    second = np.array([cols[-1] for cols in places], dtype="int64")
    row = np.hstack(  # one matrix row holding ``values`` (only the given features' columns are read from it)
        [
            block({name: [values.get(name)] for name in block.columns}, 1)
            if hasattr(block, "places")
            else np.zeros((1, block.width))
            for block in blocks
        ]
    )[0]
    return first, second, np.concatenate([row[first], row[second]])
