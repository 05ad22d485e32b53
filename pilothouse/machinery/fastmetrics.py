"""Counters and histograms for the API server's per-request path, exposed through prometheus-client.

prometheus-client's own metrics take a mutex on every increment (each histogram bucket, the sum,
every counter) so that threads can share them; the API server records from its one event-loop
thread, where that costs more than the rest of the bookkeeping (measured: 3.6 µs a histogram
observation and 1.8 µs a counter increment, against 0.3 µs here; a GET costs the server ~110 µs of
CPU, see docs/decisions/metrics.md). These keep plain numbers and let prometheus-client do what it
is good at, the families and the text format, when a scrape collects them.

Only for metrics written and scraped on one thread (an asyncio loop). Label values are positional,
as ``WithLabelValues``; children are kept by their label tuple.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence

from prometheus_client import REGISTRY
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

__all__ = ["Counter", "CounterVec", "Histogram", "HistogramVec"]


class Histogram:
    __slots__ = ("_bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self._bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        # bisect_left: the first bucket whose upper bound is >= value (Prometheus' "le").
        self.counts[bisect.bisect_left(self._bounds, value)] += 1
        self.sum += value


class Counter:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class HistogramVec(Collector):
    def __init__(self, name: str, documentation: str, labelnames: Sequence[str], buckets: Sequence[float], *,
                 registry: CollectorRegistry | None = REGISTRY, count_as: tuple[str, str] | None = None) -> None:
        """``count_as``: (name, help) of a counter family that reports each child's count, so that a
        metric like ``etcd_requests_total`` costs nothing more than its histogram."""
        self.name, self.documentation, self.labelnames = name, documentation, tuple(labelnames)
        self.bounds = tuple(float(b) for b in buckets)
        self._les = [_le(b) for b in self.bounds] + ["+Inf"]
        self._children: dict[tuple[str, ...], Histogram] = {}
        self._count_as = count_as
        if registry is not None:
            registry.register(self)

    def labels(self, *values: str) -> Histogram:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = Histogram(self.bounds)
        return child

    def describe(self) -> list[Metric]:  # registration without collecting (and no name clash check cost)
        families: list[Metric] = [HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)]
        if self._count_as is not None:
            families.append(CounterMetricFamily(self._count_as[0], self._count_as[1], labels=self.labelnames))
        return families

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        counts = CounterMetricFamily(*self._count_as, labels=self.labelnames) if self._count_as else None
        for values, child in list(self._children.items()):
            cumulative, buckets = 0, []
            for le, count in zip(self._les, child.counts, strict=True):
                cumulative += count
                buckets.append((le, float(cumulative)))
            family.add_metric(values, buckets, child.sum)
            if counts is not None:
                counts.add_metric(values, float(cumulative))
        yield family
        if counts is not None:
            yield counts


class CounterVec(Collector):
    def __init__(self, name: str, documentation: str, labelnames: Sequence[str], *,
                 registry: CollectorRegistry | None = REGISTRY) -> None:
        # prometheus-client's convention: the family is named without "_total", its sample with it.
        self.name = name.removesuffix("_total")
        self.documentation, self.labelnames = documentation, tuple(labelnames)
        self._children: dict[tuple[str, ...], Counter] = {}
        if registry is not None:
            registry.register(self)

    def labels(self, *values: str) -> Counter:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = Counter()
        return child

    def describe(self) -> list[Metric]:
        return [CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)]

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for values, child in list(self._children.items()):
            family.add_metric(values, child.value)
        yield family


def _le(bound: float) -> str:
    """Go's and prometheus-client's spelling of a bucket bound (``0.005``, ``1.0``, ``60.0``)."""
    return repr(float(bound))
