"""client-go's work queue metrics (``workqueue_*``, labelled ``name`` with the controller's name), as
component-base registers them for kube-controller-manager, with client-go's semantics: an add counts
once it passes dedupe, depth counts keys added and not yet handed out, queue duration runs from the
first add to ``get``, work duration from ``get`` to ``done``; the unfinished-work gauges are
computed when scraped (client-go refreshes them every 500 ms)."""

from __future__ import annotations

import time
from collections.abc import Hashable

from prometheus_client import Counter, Gauge, Histogram

__all__ = ["QueueMetrics"]

#: ExponentialBuckets(10e-9, 10, 10): 10 ns to 10 s.
_BUCKETS = tuple(10e-9 * 10 ** i for i in range(10))

_DEPTH = Gauge("workqueue_depth", "Current depth of workqueue", ("name",))
_ADDS = Counter("workqueue_adds_total", "Total number of adds handled by workqueue", ("name",))
_QUEUE_DURATION = Histogram("workqueue_queue_duration_seconds",
                            "How long in seconds an item stays in workqueue before being requested.", ("name",),
                            buckets=_BUCKETS)
_WORK_DURATION = Histogram("workqueue_work_duration_seconds",
                           "How long in seconds processing an item from workqueue takes.", ("name",),
                           buckets=_BUCKETS)
_UNFINISHED = Gauge("workqueue_unfinished_work_seconds",
                    "How many seconds of work has done that is in progress and hasn't been observed by "
                    "work_duration. Large values indicate stuck threads. One can deduce the number of stuck "
                    "threads by observing the rate at which this increases.", ("name",))
_LONGEST = Gauge("workqueue_longest_running_processor_seconds",
                 "How many seconds has the longest running processor for workqueue been running.", ("name",))
_RETRIES = Counter("workqueue_retries_total", "Total number of retries handled by workqueue", ("name",))


class QueueMetrics:
    """One named queue's series."""

    def __init__(self, name: str) -> None:
        self._depth = _DEPTH.labels(name)
        self._adds = _ADDS.labels(name)
        self._queue_duration = _QUEUE_DURATION.labels(name)
        self._work_duration = _WORK_DURATION.labels(name)
        self._retries = _RETRIES.labels(name)
        self._added: dict[Hashable, float] = {}
        self._started: dict[Hashable, float] = {}
        _UNFINISHED.labels(name).set_function(self._unfinished)
        _LONGEST.labels(name).set_function(self._longest)

    def add(self, key: Hashable) -> None:
        self._adds.inc()
        self._depth.inc()
        self._added.setdefault(key, time.monotonic())

    def get(self, key: Hashable) -> None:
        now = time.monotonic()
        self._depth.dec()
        added = self._added.pop(key, None)
        if added is not None:
            self._queue_duration.observe(now - added)
        self._started[key] = now

    def done(self, key: Hashable) -> None:
        started = self._started.pop(key, None)
        if started is not None:
            self._work_duration.observe(time.monotonic() - started)

    def retry(self) -> None:
        self._retries.inc()

    def _unfinished(self) -> float:
        now = time.monotonic()
        return sum(now - started for started in list(self._started.values()))

    def _longest(self) -> float:
        now = time.monotonic()
        return max((now - started for started in list(self._started.values())), default=0.0)
