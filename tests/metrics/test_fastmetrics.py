"""The API server's lock-free histograms and counters expose exactly what prometheus-client's own
would for the same observations (bucket edges inclusive, cumulative buckets, sums, counts)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from pilothouse.machinery.fastmetrics import CounterVec, HistogramVec
from tests.metrics.scrape import parse

BUCKETS = (0.005, 0.025, 0.1, 1, 60)
VALUES = (0.0, 0.005, 0.0050001, 0.02, 0.1, 0.99, 1.0, 59.9, 60.0, 61.0, 1e9)


def test_same_page_as_prometheus_client() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    fast = HistogramVec("demo_seconds", "d", ("verb",), BUCKETS, registry=ours, count_as=("demo_total", "t"))
    fast_errors = CounterVec("demo_errors_total", "e", ("verb",), registry=ours)
    reference = Histogram("demo_seconds", "d", ("verb",), buckets=BUCKETS, registry=theirs)
    reference_total = Counter("demo_total", "t", ("verb",), registry=theirs)
    reference_errors = Counter("demo_errors_total", "e", ("verb",), registry=theirs)
    for verb in ("GET", "LIST"):
        for value in VALUES:
            fast.labels(verb).observe(value)
            reference.labels(verb).observe(value)
            reference_total.labels(verb).inc()
        fast_errors.labels(verb).inc(2)
        reference_errors.labels(verb).inc(2)
    mine, expected = parse(generate_latest(ours).decode()), parse(generate_latest(theirs).decode())
    expected_samples = {k: v for k, v in expected.samples.items() if not k[0].endswith("_created")}
    assert mine.samples == expected_samples
    assert mine.value("demo_seconds_bucket", verb="GET", le="0.005") == 2  # the bound itself is inside
    assert mine.types == {k: v for k, v in expected.types.items() if not k.endswith("_created")}
