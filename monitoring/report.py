"""The monitor's report: what was compared with what, the results and the alerts, as JSON and as HTML.

Exit codes of `skewless monitor`, documented here and in the README:

- 0: the window was checked and no alert fired;
- 1: at least one alert fired (the report is written and the alerts are on the stream);
- 2: bad input or missing data: an empty window, no logs in the window, a model version without a reference
  profile, a malformed thresholds file;
- 3: a dependency is down: the MLflow registry, or Redis when publishing the alerts.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from data.files import write_text_atomic
from monitoring.checks import Assessment, FeatureResult
from monitoring.logs import Window
from monitoring.profile import Profile

OK, ALERTED = 0, 1


@dataclass
class MonitorReport:
    window: Window
    against: str
    baseline: Profile
    model_name: str
    model_version: int
    assessment: Assessment
    other_versions: dict[int, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    generated_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def exit_code(self) -> int:
        return ALERTED if self.assessment.alerts else OK

    @property
    def drifted(self) -> list[str]:
        return [f.name for f in self.assessment.features if f.drifted]

    def to_dict(self) -> dict[str, Any]:
        a = self.assessment
        return {
            "window": {"start": self.window.start.isoformat(), "end": self.window.end.isoformat()},
            "against": self.against,
            "baseline": {
                "source": self.baseline.source,
                "rows": self.baseline.rows,
                "start": self.baseline.start,
                "end": self.baseline.end,
            },
            "model": {"name": self.model_name, "version": self.model_version},
            "feature_service": self.baseline.feature_service,
            "generated_at": self.generated_at.isoformat(),
            "exit_code": self.exit_code,
            "summary": {
                "alerts": len(a.alerts),
                "drifted_features": self.drifted,
                "moderate_features": [f.name for f in a.features if f.status == "moderate"],
            },
            "alerts": [alert.as_dict() for alert in a.alerts],
            "volume": {**a.volume, "other_model_versions": {str(k): v for k, v in self.other_versions.items()}},
            "latency_ms": a.latency_ms,
            "predictions": {
                "score": _comparison(a.predictions.score) if a.predictions.score else None,
                "score_psi_band": a.predictions.score_psi_band,
                "decisions": a.predictions.decisions,
            },
            "features": [_feature(f) for f in a.features],
            "unknown_entities": a.unknown_entities,
            "notes": self.notes,
        }


def _feature(f: FeatureResult) -> dict[str, Any]:
    return {
        "name": f.name,
        "kind": f.kind,
        "origin": f.origin,
        "status": f.status,
        "psi": f.psi,
        "psi_band": f.psi_band,
        "test": f.test,
        "distance": f.distance,
        "distance_threshold": f.distance_threshold,
        "missing": {
            "baseline": f.baseline_missing,
            "current": f.current_missing,
            "online_missing": f.online_missing,
            "stale": f.stale,
        },
        **_comparison(f.comparison),
    }


def _comparison(c: Any) -> dict[str, Any]:
    data = asdict(c)
    return {
        "rows": data["rows"],
        "present": data["present"],
        "psi": data["psi"],
        "distance": data["distance"],
        "baseline_stats": data["baseline_stats"],
        "current_stats": data["current_stats"],
        "new_values": data["new_values"],
        "bins": {"labels": data["bins"], "baseline": data["baseline_shares"], "current": data["current_shares"]},
    }


def write_json(report: MonitorReport, path: Path) -> None:
    write_text_atomic(json.dumps(report.to_dict(), indent=2, default=_plain) + "\n", path)


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, float | int):
        return value
    return str(value)
