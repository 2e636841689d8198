"""Thresholds the suites compare against: JSON files beside the suites, under version control.

One file per suite kind in ``validation/thresholds/``:

- ``raw.json``: per source, per measure, a plausible range ``{"min": .., "max": ..}``. A measure is a column
  (``amount``) or a quantity derived from one and the partition day (``age_years`` from ``birth_year``).
- ``features.json``: per feature view, per feature: ``min``/``max`` for numbers or ``values`` for strings, and
  ``max_null_share``, the ceiling on the share of nulls.
- ``training_set.json``: row count, class balance and feature null-share bounds, set by hand (see the file).

Only facts fixed by the schema (keys not null, ``amount >= 0``, the country and currency sets, label in {0, 1})
are written in the suites themselves; everything tuned to data lives here.

``skewless validate profile {raw|features} --day D`` recomputes ``raw.json`` or ``features.json`` from data
known to be good, with the rules below, prints the differences and writes only with ``--write``. An entry marked
``"pinned": true`` (with a ``"note"`` saying why) is a bound set by hand from what the quantity means, such as an
age or a rate, and a profile keeps it as it is. The rules:

- range: the observed ``[lo, hi]`` widened by four times its width on each side, and not below zero when
  ``lo >= 0``; then rounded outwards to two significant digits. A plausibility check, not drift detection (that
  is monitoring's job): it catches unit mistakes, sign errors and garbage. The margin is wide because amounts,
  sessions and counts are heavy-tailed and their maximum grows with the data: a profile of the demo (100k
  payments) must still pass 10M payments, whose largest amount is 2.6 times the demo's.
- null ceiling: 0 when the feature was never null (a count that turns up null is a bug), otherwise twice the
  observed share plus ten points, rounded up to a whole percent. Shares of features that need history (a
  spread needs two payments in 30 days) are higher while a dataset is young, hence the generous margin.
- values: the distinct values observed, sorted.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from data.files import write_text_atomic
from skewless.errors import BadInputError

THRESHOLDS_DIR = Path(__file__).resolve().parent / "thresholds"
KINDS = ("raw", "features", "training_set")
WIDENING = 4  # an observed range is widened by this many times its width on each side


def path_for(kind: str) -> Path:
    if kind not in KINDS:
        raise BadInputError(f"unknown thresholds {kind!r}; known: {', '.join(KINDS)}")
    return THRESHOLDS_DIR / f"{kind}.json"


def load(kind: str) -> dict[str, Any]:
    """The committed thresholds of ``kind``; a clear error when the file is missing or not JSON."""
    path = path_for(kind)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise BadInputError(f"{path}: thresholds file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadInputError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise BadInputError(f"{path}: expected a JSON object at the top")
    return data


def write(kind: str, data: dict[str, Any]) -> Path:
    """Write ``data`` as the thresholds of ``kind``: stable key order, temporary file renamed into place."""
    path = path_for(kind)
    write_text_atomic(json.dumps(data, indent=2, sort_keys=False) + "\n", path)
    return path


def widen(lo: float, hi: float) -> dict[str, float]:
    """A plausible range from an observed one (see the module docstring)."""
    margin = WIDENING * (hi - lo or max(abs(hi), 1.0))
    low = lo - margin
    if lo >= 0:
        low = max(0.0, low)
    return {"min": _round_out(low, up=False), "max": _round_out(hi + margin, up=True)}


def null_ceiling(share: float) -> float:
    """The ceiling on a feature's share of nulls, from the share seen in good data."""
    if share <= 0:
        return 0.0
    return min(1.0, math.ceil(round((share * 2 + 0.10) * 100, 6)) / 100)


def keep_pinned(old: Any, new: Any) -> Any:
    """``new`` with every entry that is pinned in ``old`` taken from ``old``."""
    if isinstance(old, dict) and old.get("pinned"):
        return old
    if isinstance(old, dict) and isinstance(new, dict):
        return {key: keep_pinned(old.get(key), value) for key, value in new.items()}
    return new


def diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Lines naming every threshold that differs, was added or would be removed, by dotted path."""
    if isinstance(old, dict) and isinstance(new, dict):
        lines: list[str] = []
        for key in [*old, *(k for k in new if k not in old)]:
            where = f"{prefix}.{key}" if prefix else str(key)
            if key not in new:
                lines.append(f"- {where}: {json.dumps(old[key])} (would be removed)")
            elif key not in old:
                lines.append(f"+ {where}: {json.dumps(new[key])} (new)")
            else:
                lines.extend(diff(old[key], new[key], where))
        return lines
    if old != new:
        return [f"~ {prefix}: {json.dumps(old)} -> {json.dumps(new)}"]
    return []


def _round_out(value: float, *, up: bool) -> float:
    """Round to two significant digits, away from the observed range; integers stay integers."""
    if value == 0:
        return 0
    step = 10 ** (math.floor(math.log10(abs(value))) - 1)
    rounded = float(f"{(math.ceil if up else math.floor)(value / step) * step:.12g}")
    return int(rounded) if rounded.is_integer() else rounded
