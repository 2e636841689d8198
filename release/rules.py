"""The canary's verdict: the challenger against the champion over one window, by documented bounds.

Pure functions of two samples; reading them (release/window.py) and acting on the verdict (release/state.py) are
elsewhere. The bounds (``SKEWLESS_CANARY_*``, recorded on the challenger when its canary starts):

- **errors**: the challenger's failed scoring attempts (an exception, or a score outside [0, 1]; the champion
  answered those) over its attempts, at most ``max_error_rate``. The champion's own failures fail the request
  and are no fault of the challenger's, so they are not counted.
- **latency**: the p99 of the challenger's model-call time at most ``p99_ratio`` times the champion's plus
  ``p99_slack_ms``. Features are read once for both, so only the model's own time differs.
- **score shift**: the population stability index of the challenger's scores against the champion's, with the
  champion's deciles as bins, at most ``max_psi`` (0.1 is a small shift, 0.25 a large one).
- **block rate**: the challenger's share of ``block`` answers within ``max_block_rate_change`` (absolute) of the
  champion's.

All within bounds: promote. Any outside: roll back. Errors are judged early as well: once the challenger has
failed more often than the whole window allows, waiting longer cannot save it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np

from skewless.settings import Settings

PSI_BINS = 10
PSI_FLOOR = 1e-4  # share given to an empty bin, so that the index stays finite
MIN_BASELINE = 100  # champion decisions needed in the window for a comparison to mean anything


@dataclass(frozen=True)
class Bounds:
    window: int
    max_error_rate: float
    p99_ratio: float
    p99_slack_ms: float
    max_psi: float
    max_block_rate_change: float

    @classmethod
    def from_settings(cls, settings: Settings) -> Bounds:
        return cls(
            window=settings.canary_window,
            max_error_rate=settings.canary_max_error_rate,
            p99_ratio=settings.canary_max_p99_ratio,
            p99_slack_ms=settings.canary_p99_slack_ms,
            max_psi=settings.canary_max_psi,
            max_block_rate_change=settings.canary_max_block_rate_change,
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Bounds:
        return cls(**json.loads(text))

    def describe(self) -> str:
        return (
            f"window {self.window} challenger decisions; errors <= {self.max_error_rate:.2%}; "
            f"model-call p99 <= {self.p99_ratio:g} x champion's + {self.p99_slack_ms:g} ms; "
            f"score PSI <= {self.max_psi:g}; block rate within {self.max_block_rate_change:.2%} of champion's"
        )


@dataclass
class Sample:
    """What one model did in the window: its scores, answers, model-call times and failures."""

    scores: list[float] = field(default_factory=list)
    blocks: int = 0
    model_ms: list[float] = field(default_factory=list)
    errors: int = 0

    @property
    def decided(self) -> int:
        return len(self.scores)

    @property
    def attempts(self) -> int:
        return len(self.scores) + self.errors

    def add(self, score: float, recommendation: str, model_ms: float | None) -> None:
        self.scores.append(score)
        self.blocks += recommendation == "block"
        if model_ms is not None:
            self.model_ms.append(model_ms)


@dataclass(frozen=True)
class Check:
    name: str
    value: float
    bound: float
    passed: bool
    text: str


@dataclass(frozen=True)
class Verdict:
    decided: bool  # False: the window is not full yet (and nothing failed early)
    promote: bool
    checks: list[Check]
    progress: str

    @property
    def reasons(self) -> list[str]:
        return [c.text for c in self.checks if not c.passed]

    def summary(self) -> str:
        return "; ".join(c.text for c in self.checks)

    def metrics(self) -> dict[str, float]:
        return {c.name: round(c.value, 6) for c in self.checks}


def psi(baseline: list[float] | np.ndarray, other: list[float] | np.ndarray, bins: int = PSI_BINS) -> float:
    """Population stability index of ``other`` against ``baseline``, on the baseline's quantile bins."""
    base = np.asarray(baseline, dtype="float64")
    new = np.asarray(other, dtype="float64")
    if not len(base) or not len(new):
        return 0.0
    edges = np.unique(np.quantile(base, np.linspace(0, 1, bins + 1)[1:-1]))
    expected = np.bincount(np.searchsorted(edges, base, side="right"), minlength=len(edges) + 1) / len(base)
    actual = np.bincount(np.searchsorted(edges, new, side="right"), minlength=len(edges) + 1) / len(new)
    expected = np.maximum(expected, PSI_FLOOR)
    actual = np.maximum(actual, PSI_FLOOR)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def p99(values: list[float]) -> float:
    return float(np.percentile(values, 99)) if values else 0.0


def judge(champion: Sample, challenger: Sample, bounds: Bounds) -> Verdict:
    """The verdict on a window; ``decided`` is False while the window is still filling."""
    allowed_errors = bounds.max_error_rate * bounds.window
    progress = (
        f"{challenger.attempts}/{bounds.window} challenger decisions "
        f"({challenger.errors} failed), {champion.decided} champion decisions"
    )
    if challenger.errors > allowed_errors:
        check = _error_check(challenger, bounds, over=bounds.window)
        return Verdict(decided=True, promote=False, checks=[check], progress=progress)
    if challenger.attempts < bounds.window or champion.decided < MIN_BASELINE:
        return Verdict(decided=False, promote=False, checks=_checks(champion, challenger, bounds), progress=progress)
    checks = _checks(champion, challenger, bounds)
    return Verdict(decided=True, promote=all(c.passed for c in checks), checks=checks, progress=progress)


def _checks(champion: Sample, challenger: Sample, bounds: Bounds) -> list[Check]:
    checks = [_error_check(challenger, bounds, over=max(challenger.attempts, 1))]
    if not challenger.decided or not champion.decided:
        return checks
    ours, theirs = p99(challenger.model_ms), p99(champion.model_ms)
    limit = theirs * bounds.p99_ratio + bounds.p99_slack_ms
    checks.append(
        Check(
            "p99_model_ms",
            ours,
            limit,
            ours <= limit,
            f"model-call p99 {ours:.2f} ms vs champion {theirs:.2f} ms (bound {limit:.2f} ms)",
        )
    )
    shift = psi(champion.scores, challenger.scores)
    checks.append(
        Check(
            "psi", shift, bounds.max_psi, shift <= bounds.max_psi, f"score PSI {shift:.3f} (bound {bounds.max_psi:g})"
        )
    )
    ours_rate, theirs_rate = challenger.blocks / challenger.decided, champion.blocks / champion.decided
    change = abs(ours_rate - theirs_rate)
    checks.append(
        Check(
            "block_rate_change",
            change,
            bounds.max_block_rate_change,
            change <= bounds.max_block_rate_change,
            f"block rate {ours_rate:.2%} vs champion {theirs_rate:.2%} "
            f"(change {change:.2%}, bound {bounds.max_block_rate_change:.2%})",
        )
    )
    return checks


def _error_check(challenger: Sample, bounds: Bounds, over: int) -> Check:
    rate = challenger.errors / over
    return Check(
        "error_rate",
        rate,
        bounds.max_error_rate,
        rate <= bounds.max_error_rate,
        f"errors {challenger.errors}/{over} ({rate:.2%}, bound {bounds.max_error_rate:.2%})",
    )
