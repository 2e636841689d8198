"""Metrics helpers of the service, against prometheus_client's own histograms."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram

from serving.metrics import SCORE_BUCKETS, observe_many


def _samples(histogram: Histogram) -> dict[tuple[str, str], float]:
    (family,) = histogram.collect()
    return {(s.name, s.labels.get("le", "")): s.value for s in family.samples if not s.name.endswith("_created")}


def test_observing_many_at_once_counts_as_observing_one_at_a_time() -> None:
    values = [0.0, 0.05, 0.051, 0.5, 0.999999, 1.0, 1.7, -0.2, *[i / 97 for i in range(300)]]  # bounds exactly too
    one, many = (Histogram(n, "h", buckets=SCORE_BUCKETS, registry=CollectorRegistry()) for n in ("one", "many"))
    for value in values:
        one.observe(value)
    observe_many(many, values[:100])  # counted per bucket
    observe_many(many, values[100:])
    observe_many(many, [0.3, 0.05])  # few: one at a time
    one.observe(0.3)
    one.observe(0.05)
    got = {(name.replace("many", "one"), le): v for (name, le), v in _samples(many).items()}
    expected = _samples(one)
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert abs(got[key] - value) < 1e-9, key
