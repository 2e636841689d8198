"""The served vectors the decision log carries: the same plain values whichever way a batch's size sends them."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from pydantic_core import to_json

from serving.scoring import _PLAIN_TYPES, _vectors


def test_vectors_are_the_same_plain_values_for_one_a_few_and_many_rows() -> None:
    n = 20
    columns = {
        "amount": [float(i) if i % 5 else None for i in range(n)],  # a list holding None
        "ratio": np.array([np.nan if i % 4 == 0 else i / 3 for i in range(n)]),  # numpy floats, NaN
        "hour": np.arange(n, dtype="int64"),  # numpy ints
        "channel": np.array(["web", "app"] * (n // 2), dtype=object),  # text
        "flag": np.array([np.int64(i % 2) for i in range(n)], dtype=object),  # numpy scalars in an object array
        "seen": [pd.Timestamp("2026-11-01", tz="UTC")] * n,  # anything else
    }
    names = list(columns)
    whole = _vectors(names, columns, n)  # a column at a time
    few = [
        v
        for at in range(0, n, 8)
        for v in _vectors(names, {k: c[at : at + 8] for k, c in columns.items()}, min(8, n - at))
    ]
    ones = [_vectors(names, {k: c[i : i + 1] for k, c in columns.items()}, 1)[0] for i in range(n)]

    def logged(vector: tuple) -> list:  # as the decision log writes it: NaN and None are both null
        return json.loads(to_json(list(vector), inf_nan_mode="null"))

    as_json = [logged(v) for v in whole]
    assert [logged(v) for v in few] == as_json
    assert [logged(v) for v in ones] == as_json
    assert as_json[1] == [1.0, 1 / 3, 1, "app", 1, "2026-11-01T00:00:00+00:00"]
    assert as_json[0][:2] == [None, None]
    assert all(value.__class__ in _PLAIN_TYPES for v in whole + few + ones for value in v)
