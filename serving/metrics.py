"""Prometheus metrics of the service: `skewless_` prefix, base units, one registry per app."""

from __future__ import annotations

from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
SCORE_BUCKETS = tuple(i / 20 for i in range(1, 21))
AGE_BUCKETS = (60, 600, 3600, 6 * 3600, 12 * 3600, 86400, 2 * 86400, 7 * 86400)


class ServiceMetrics:
    def __init__(self) -> None:
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self.registry = CollectorRegistry()
        r = self.registry
        self.request_seconds = Histogram(
            "skewless_request_duration_seconds",
            "Time to answer a request.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.requests = Counter(
            "skewless_requests", "Requests answered, by endpoint and HTTP status.", ["endpoint", "status"], registry=r
        )
        self.scores = Histogram(
            "skewless_score",
            "Risk scores served, by model version.",
            ["model_version"],
            buckets=SCORE_BUCKETS,
            registry=r,
        )
        self.recommendations = Counter(
            "skewless_recommendations", "Recommendations served.", ["recommendation", "model_version"], registry=r
        )
        self.missing_features = Counter(
            "skewless_missing_features", "Scored transactions with a feature missing or stale.", ["feature"], registry=r
        )
        self.feature_age = Histogram(
            "skewless_online_feature_age_seconds",
            "Age of online feature rows when read.",
            ["feature_view"],
            buckets=AGE_BUCKETS,
            registry=r,
        )
        self.model_reloads = Counter(
            "skewless_model_reloads", "Model swaps and failed attempts.", ["result"], registry=r
        )
        self.model_version = Gauge("skewless_model_version", "Version of the model serving.", registry=r)
        self.batch_size = Histogram(
            "skewless_batch_size",
            "Transactions per model call.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 512, 1024),
            registry=r,
        )
        self.decision_log_buffered = Gauge(
            "skewless_decision_log_buffered", "Decisions waiting for Redis to come back.", registry=r
        )
        # The canary (serving/canary.py): who decided, and how the challenger is doing.
        self.decisions = Counter(
            "skewless_decisions",
            "Decisions served, by the role and version of the model that decided.",
            ["role", "model_version", "recommendation"],
            registry=r,
        )
        self.model_call_seconds = Histogram(
            "skewless_model_call_seconds",
            "Time of one model call (score, decision, reasons) on a micro-batch, by role.",
            ["role", "model_version"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.shadow_recommendations = Counter(
            "skewless_shadow_recommendations",
            "What the challenger would have answered in shadow mode (the champion decided).",
            ["model_version", "recommendation"],
            registry=r,
        )
        self.challenger_errors = Counter(
            "skewless_challenger_errors",
            "Challenger scoring failures; the champion answered instead.",
            ["model_version"],
            registry=r,
        )
        self.challenger_reloads = Counter(
            "skewless_challenger_reloads", "Challenger loads, unloads and failed loads.", ["result"], registry=r
        )
        self.challenger_version = Gauge(
            "skewless_challenger_version", "Version of the challenger in the canary; 0 when none.", registry=r
        )
        self.canary_share = Gauge(
            "skewless_canary_share", "Share of transactions the challenger decides (shadow mode: 0).", registry=r
        )

    def child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, remembered: ``labels()`` costs microseconds, several times per request."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child


BULK_FROM = 32  # values; below it numpy's fixed cost (~20 µs) is more than observing them one by one (~3 µs each)


def observe_many(child: Any, values: list[float]) -> None:
    """``child.observe(v)`` for every value, counted per bucket first when there are many: a batch's thousands
    of observations cost ~16 ms one at a time here. It reads the histogram's bucket bounds and counters
    (prometheus_client's own attributes, stable since 0.4); without them values are observed one at a time."""
    bounds = getattr(child, "_upper_bounds", None)
    buckets = getattr(child, "_buckets", None)
    total = getattr(child, "_sum", None)
    if len(values) < BULK_FROM or bounds is None or buckets is None or total is None or len(bounds) != len(buckets):
        for value in values:
            child.observe(value)
        return
    array = np.asarray(values, dtype="float64")
    # observe() counts a value in the first bucket whose bound is >= it: searchsorted's "left" side
    counts = np.bincount(np.searchsorted(bounds, array, side="left"), minlength=len(bounds) + 1)
    for bucket, count in zip(buckets, counts.tolist(), strict=False):  # past the last bound: NaN, in no bucket
        if count:
            bucket.inc(count)
    total.inc(float(array.sum()))
