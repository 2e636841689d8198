"""Reading a windowed-aggregation declaration: the one vocabulary both the offline store and the service use.

A view declared in ``feature_repo.aggregations`` (a Feast ``StreamFeatureView`` with ``Aggregation`` s) becomes
a ``WindowedView``: its entity key, the event-id column that makes events idempotent, and each feature's function,
column and window in microseconds. The offline store turns it into SQL, the service into a Redis script; the
boundary rules they share are in ``feature_repo.aggregations``. A function outside ``FUNCTIONS``, a missing
window or name, or a view without its event-id tag is refused here, so neither side can read it differently.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from feast import Aggregation, Field
from feast.types import Float64, Int64, PrimitiveFeastType

from skewless.errors import BadInputError

EVENT_ID_TAG = "event_id"  # column naming one event: copies of it are one event
LATENESS_TAG = "allowed_lateness_seconds"  # how far out of order an event may arrive and still be exact online

# Function -> Feast type of the result. Every function has a value over an empty window (``WindowedFeature.empty``),
# so a windowed feature is never missing: a model sees "nothing in the window" as a number.
FUNCTIONS: dict[str, PrimitiveFeastType] = {
    "count": Int64,  # events in the window (the column only names what is counted); 0 when empty
    "sum": Float64,  # 0 when empty
    "max": Float64,  # of a non-negative column (amounts); 0 when empty
    "count_distinct": Int64,  # distinct non-missing values of the column; 0 when empty
    "seconds_since_last": Float64,  # the transaction's time minus the latest event's; the window length when empty
}
_US = 1_000_000


@dataclass(frozen=True)
class WindowedFeature:
    name: str
    function: str
    column: str  # a column of the transaction stream
    window_us: int

    @property
    def empty(self) -> int | float:
        """The value over an empty window."""
        if self.function == "seconds_since_last":
            return self.window_us / _US
        return 0 if self.is_integer else 0.0

    @property
    def is_integer(self) -> bool:
        return FUNCTIONS[self.function] == Int64


@dataclass(frozen=True)
class WindowedView:
    """One entity's windowed features, read from a stream feature view."""

    name: str
    key: str  # the entity's join key, also its column in the stream
    event_id: str
    timestamp: str
    features: tuple[WindowedFeature, ...]
    lateness_us: int

    @property
    def horizon_us(self) -> int:
        """The largest window: how far back any feature of this view looks."""
        return max(f.window_us for f in self.features)

    @property
    def value_columns(self) -> list[str]:
        """Stream columns the features read besides the event id and timestamp, in a fixed order."""
        skip = {self.event_id, self.timestamp}
        return sorted({f.column for f in self.features if f.function not in ("count", "seconds_since_last")} - skip)

    def only(self, names: Iterable[str]) -> WindowedView:
        """The same view with only the named features, in declaration order."""
        wanted = set(names)
        unknown = wanted - {f.name for f in self.features}
        if unknown:
            raise BadInputError(f"windowed view {self.name!r} has no feature(s) {sorted(unknown)}")
        return replace(self, features=tuple(f for f in self.features if f.name in wanted))


def aggregate_schema(aggregations: Iterable[Aggregation]) -> list[Field]:
    """The Feast fields a list of aggregations produces: their names, typed by function."""
    fields = []
    for agg in aggregations:
        if agg.function not in FUNCTIONS:
            known = sorted(FUNCTIONS)
            raise BadInputError(f"aggregation {agg.name!r}: function {agg.function!r} is not one of {known}")
        fields.append(Field(name=agg.resolved_name(agg.time_window), dtype=FUNCTIONS[agg.function]))
    return fields


def is_windowed(view: Any) -> bool:
    """True for a view whose features are windowed aggregations (computed, not read from a table)."""
    return bool(getattr(view, "aggregations", None)) and bool(getattr(view, "timestamp_field", ""))


def windowed_view(view: Any) -> WindowedView:
    """The ``WindowedView`` of a registered stream feature view; errors name the view and what is wrong."""
    where = f"stream feature view {view.name!r}"
    if not is_windowed(view):
        raise BadInputError(f"{where} declares no aggregations with a timestamp field")
    if len(view.entity_columns) != 1:
        raise BadInputError(
            f"{where} needs exactly one entity with a known join key (has {[c.name for c in view.entity_columns]}); "
            "read it from the registry after `feast apply`"
        )
    event_id = view.tags.get(EVENT_ID_TAG)
    if not event_id:
        raise BadInputError(f"{where} has no {EVENT_ID_TAG!r} tag naming the column that identifies an event")
    try:
        lateness_s = float(view.tags.get(LATENESS_TAG, "0"))
    except ValueError:
        raise BadInputError(f"{where}: tag {LATENESS_TAG!r} is not a number of seconds") from None
    features = []
    for agg in view.aggregations:
        name = agg.resolved_name(agg.time_window)
        if agg.function not in FUNCTIONS:
            raise BadInputError(f"{where}, {name!r}: function {agg.function!r} is not one of {sorted(FUNCTIONS)}")
        if agg.time_window is None or agg.time_window.total_seconds() <= 0:
            raise BadInputError(f"{where}, {name!r}: needs a positive time_window")
        if agg.slide_interval not in (None, agg.time_window):
            raise BadInputError(f"{where}, {name!r}: sliding (hopping) windows are not supported; windows end at "
                                "each transaction")  # fmt: skip
        window_us = int(agg.time_window.total_seconds()) * _US + agg.time_window.microseconds
        features.append(WindowedFeature(name=name, function=agg.function, column=agg.column, window_us=window_us))
    return WindowedView(
        name=view.name,
        key=view.entity_columns[0].name,
        event_id=event_id,
        timestamp=view.timestamp_field,
        features=tuple(features),
        lateness_us=int(lateness_s * _US),
    )


def service_windows(store: Any, service: Any) -> list[WindowedView]:
    """The windowed views of a feature service, as registered, with the features the service selects, in its order.

    These are the service's "real-time" views: the scoring service computes them itself (``serving.realtime``)
    and reads every other view from the online store.
    """
    registered = {v.name: v for v in store.list_stream_feature_views() if is_windowed(v)}
    return [
        windowed_view(registered[p.name]).only(f.name for f in p.features)
        for p in service.feature_view_projections
        if p.name in registered
    ]


def feature_types(windows: Iterable[WindowedView]) -> dict[str, str]:
    """Feature name -> ``"int64"`` or ``"float64"`` for every feature of ``windows``, in order."""
    return {f.name: "int64" if f.is_integer else "float64" for view in windows for f in view.features}
