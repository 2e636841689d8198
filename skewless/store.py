"""Opening the Feast feature store and collecting the definitions in feature_repo/."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from feast import Entity, FeatureService, FeatureStore, FeatureView, OnDemandFeatureView
from feast.data_source import DataSource

from skewless.errors import BadInputError, MissingDataError

DEFINITION_MODULES = (
    "feature_repo.entities",
    "feature_repo.sources",
    "feature_repo.views",
    "feature_repo.on_demand",
    "feature_repo.aggregations",
    "feature_repo.services",
)
_KINDS = (Entity, DataSource, FeatureView, OnDemandFeatureView, FeatureService)


def open_store(repo_root: Path) -> FeatureStore:
    """The feature store configured by ``repo_root/feature_store.yaml``."""
    if not (repo_root / "feature_store.yaml").exists():
        raise MissingDataError(f"{repo_root / 'feature_store.yaml'}: not found; run from the repo root")
    return FeatureStore(repo_path=str(repo_root))


def definitions() -> list[Any]:
    """Every Feast object defined in feature_repo/, each once, in the order Feast applies them."""
    found: dict[tuple[type, str], Any] = {}
    for module_name in DEFINITION_MODULES:
        module = importlib.import_module(module_name)
        for value in vars(module).values():
            if isinstance(value, _KINDS):
                kind = next(k for k in _KINDS if isinstance(value, k))
                found.setdefault((kind, value.name), value)
    return list(found.values())


def apply_definitions(store: FeatureStore) -> None:
    """What `feast apply` does for this repo, from Python."""
    store.apply(definitions())


def feature_service(store: FeatureStore, name: str) -> FeatureService:
    try:
        return store.get_feature_service(name)
    except Exception as exc:  # Feast raises its own FeatureServiceNotFoundException
        known = ", ".join(sorted(s.name for s in store.list_feature_services())) or "none"
        raise BadInputError(f"feature service {name!r} is not registered (known: {known}); run `feast apply`") from exc


def service_features(service: FeatureService) -> list[str]:
    """The feature columns a feature service returns, in its order (asked of Feast, never listed by hand)."""
    return [feature.name for projection in service.feature_view_projections for feature in projection.features]


def service_request_fields(store: FeatureStore, service: FeatureService) -> list[str]:
    """Fields of the scored transaction that the service's on-demand views read from the request."""
    fields: list[str] = []
    for projection in service.feature_view_projections:
        try:
            odfv = store.get_on_demand_feature_view(projection.name)
        except Exception:  # a batch view, not an on-demand one
            continue
        for request_source in odfv.source_request_sources.values():
            fields.extend(f.name for f in request_source.schema if f.name not in fields)
    return fields
