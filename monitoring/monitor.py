"""`skewless monitor`: one model version's logged decisions in a window, against a baseline.

The baseline is the version's reference profile (made at training time, see ``monitoring.reference``) or the
previous window of the same length, profiled from the logs the same way. The monitored columns come from the
reference profile, which took them from the feature service; without a profile (previous-window mode only)
they are asked of the feature service named by the version's tags.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from monitoring.checks import PreviousWindow, assess
from monitoring.logs import PredictionLogs, Window, WindowData
from monitoring.profile import FeatureSpec, Profile, build_profile
from monitoring.reference import feature_specs, load_reference_profile
from monitoring.report import MonitorReport
from monitoring.thresholds import MonitorThresholds
from skewless.errors import BadInputError, MissingDataError
from skewless.settings import Settings
from training import registry

REFERENCE, PREVIOUS = "reference", "previous-window"
AGAINST = (REFERENCE, PREVIOUS)


@dataclass(frozen=True)
class MonitorRequest:
    window: Window
    against: str = REFERENCE
    model_version: int | None = None
    thresholds: MonitorThresholds = field(default_factory=MonitorThresholds)
    logs_dir: Path | None = None


def run_monitor(settings: Settings, request: MonitorRequest) -> MonitorReport:
    if request.against not in AGAINST:
        raise BadInputError(f"--against {request.against!r}: expected one of {', '.join(AGAINST)}")
    if request.window.length.total_seconds() <= 0:
        raise BadInputError(f"the window {request.window} is empty")
    logs = PredictionLogs(request.logs_dir or settings.predictions_dir)
    try:
        return _monitor(settings, request, logs)
    finally:
        logs.close()


def _monitor(settings: Settings, request: MonitorRequest, logs: PredictionLogs) -> MonitorReport:
    window = request.window
    # Opening the MLflow store is seconds of Python; the first scan of the logs is DuckDB's, off the GIL.
    with ThreadPoolExecutor(max_workers=1) as pool:
        connecting = pool.submit(registry.connect, settings)
        versions = logs.versions(window)
        client = connecting.result()
    if not versions:
        raise MissingDataError(f"the prediction logs under {logs.root} hold no decisions in the window {window}")
    version = request.model_version or max(versions, key=lambda v: (versions[v], v))
    if version not in versions:
        logged = ", ".join(f"v{v} ({n:,})" for v, n in versions.items())
        raise MissingDataError(f"no decisions of {settings.model_name} v{version} in {window}; logged: {logged}")
    label = f"{settings.model_name} v{version}"
    model = registry.model_version(client, settings.model_name, version=version)
    notes: list[str] = []
    reference: Profile | None = None
    try:
        reference = load_reference_profile(client, model.run_id or "", label)
    except MissingDataError as exc:
        if request.against == REFERENCE:
            raise
        notes.append(f"no reference shares: {exc}")
    specs = reference.specs if reference else _service_specs(settings, model.tags.get("feature_service"), label)
    current = logs.read(window, version, specs)
    notes += [f"request field {name!r} is not in the logs; not monitored" for name in current.absent]
    previous = _previous(logs, window.previous(), version)
    if request.against == PREVIOUS:
        if previous is None:
            raise MissingDataError(
                f"no decisions of {label} in the previous window {window.previous()} to compare with; "
                "use --against reference"
            )
        present = [s for s in specs if s.name not in current.absent]
        baseline = _window_profile(logs.read(window.previous(), version, present), present, reference)
        baseline_label = "previous window"
    else:
        assert reference is not None
        baseline = reference
        baseline_label = "reference"
    assessment = assess(current, baseline, baseline_label, request.thresholds, reference, previous)
    if current.rows < request.thresholds.min_values:
        notes.append(
            f"only {current.rows:,} decisions in the window: drift is judged from {request.thresholds.min_values:,} "
            "present values per feature (min_values)"
        )
    return MonitorReport(
        window=window,
        against=request.against,
        baseline=baseline,
        model_name=settings.model_name,
        model_version=version,
        assessment=assessment,
        other_versions={v: n for v, n in versions.items() if v != version},
        notes=notes,
    )


def _previous(logs: PredictionLogs, window: Window, version: int) -> PreviousWindow | None:
    if not logs.files(window):
        return None
    rows = logs.versions(window, "previous window").get(version, 0)
    return PreviousWindow(rows, logs.decisions(window, version)) if rows else None


def _window_profile(data: WindowData, specs: list[FeatureSpec], reference: Profile | None) -> Profile:
    return build_profile(
        data.columns,
        specs,
        data.scores,
        data.recommendations,
        source="prediction logs of the previous window",
        feature_service=reference.feature_service if reference else "",
        start=data.window.start.isoformat(),
        end=data.window.end.isoformat(),
    )


def _service_specs(settings: Settings, service_name: str | None, label: str) -> list[FeatureSpec]:
    if not service_name:
        raise MissingDataError(f"{label} has no feature_service tag; it was not trained by `skewless train`")
    from skewless.store import feature_service, open_store

    store = open_store(settings.repo_root)
    return feature_specs(store, feature_service(store, service_name))
