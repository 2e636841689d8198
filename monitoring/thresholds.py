"""When the monitor raises an alert. Typed, with defaults; a JSON file passed as ``--thresholds`` overrides them.

``skewless monitor --print-thresholds`` prints the effective values as JSON, a starting point for such a file.
A file may set any subset of the fields, and per-feature overrides under ``"features"``::

    {"psi_significant": 0.25, "features": {"merchant_txn_count_30d": {"psi_significant": 0.5},
                                           "hour_of_day": {"ignore": true}}}

A feature drifts when its PSI reaches ``psi_significant`` or its distance reaches ``ks`` (numeric) or ``js``
(categorical). The distances catch what decile bins hide (a shift inside a bin, a reshuffle of rare categories);
their defaults sit at about the effect size of a PSI between 0.1 and 0.2 (a normal shifted by 0.4 standard
deviations has KS 0.16 and PSI 0.16), so they add sensitivity where the bins are blind, not noise.

Proportion checks (missing share, decision shares) alert only when the change is both larger than the threshold
and beyond sampling noise (a two-proportion z statistic of at least ``min_z``), so a quiet hour does not page.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from skewless.errors import BadInputError


class FeatureThresholds(BaseModel):
    """Overrides for one feature; unset fields fall back to the global values."""

    model_config = ConfigDict(extra="forbid")

    ignore: bool = False
    psi_significant: float | None = Field(default=None, gt=0)
    ks: float | None = Field(default=None, gt=0, le=1)
    js: float | None = Field(default=None, gt=0, le=1)
    missing_increase: float | None = Field(default=None, gt=0, le=1)


class MonitorThresholds(BaseModel):
    model_config = ConfigDict(extra="forbid")

    psi_moderate: float = Field(default=0.1, gt=0, description="PSI from here on is a moderate shift (warning).")
    psi_significant: float = Field(default=0.2, gt=0, description="PSI from here on is a significant shift (alert).")
    ks: float = Field(default=0.15, gt=0, le=1, description="KS distance alerting for a numeric feature.")
    js: float = Field(default=0.15, gt=0, le=1, description="Jensen-Shannon distance alerting for a categorical one.")
    min_values: int = Field(default=500, ge=1, description="Fewer present values on either side: drift not judged.")
    missing_increase: float = Field(
        default=0.05, gt=0, le=1, description="Rise in a feature's missing share (absolute) that alerts."
    )
    stale_share: float = Field(
        default=0.05, gt=0, le=1, description="Share of decisions that saw a feature past its TTL that alerts."
    )
    score_psi: float = Field(default=0.2, gt=0, description="PSI of the score distribution that alerts.")
    decision_ratio: float = Field(
        default=2.0, gt=1, description="A block or review share this many times higher or lower alerts."
    )
    min_z: float = Field(default=3.0, ge=0, description="Proportion changes must also be this many SEs away.")
    volume_ratio: float = Field(
        default=3.0, gt=1, description="Decisions this many times more or fewer than the previous window alert."
    )
    latency_p99_ms: float = Field(default=250.0, gt=0, description="p99 of logged scoring latency that alerts.")
    features: dict[str, FeatureThresholds] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _ordered(self) -> MonitorThresholds:
        if self.psi_moderate > self.psi_significant:
            raise ValueError(f"psi_moderate ({self.psi_moderate}) is above psi_significant ({self.psi_significant})")
        return self

    def for_feature(self, name: str) -> FeatureThresholds:
        """The thresholds that apply to ``name``, with the global values filled in."""
        own = self.features.get(name, FeatureThresholds())
        return FeatureThresholds(
            ignore=own.ignore,
            psi_significant=own.psi_significant or self.psi_significant,
            ks=own.ks or self.ks,
            js=own.js or self.js,
            missing_increase=own.missing_increase or self.missing_increase,
        )


def load_thresholds(path: Path | None) -> MonitorThresholds:
    """Defaults, overridden by the JSON file at ``path``; a clear error naming the file and field otherwise."""
    if path is None:
        return MonitorThresholds()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise BadInputError(f"{path}: thresholds file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInputError(f"{path}: not a readable JSON file ({exc})") from exc
    if not isinstance(data, dict):
        raise BadInputError(f"{path}: expected a JSON object of thresholds, found {type(data).__name__}")
    try:
        return MonitorThresholds.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(file)'}: {e['msg']} (got {e.get('input')!r})"
            for e in exc.errors()
        )
        raise BadInputError(f"{path}: {problems}") from None
