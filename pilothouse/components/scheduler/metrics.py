"""kube-scheduler's stable metrics (``pkg/scheduler/metrics``), names, labels and buckets as 1.32 has
them: ``scheduler_schedule_attempts_total`` and ``scheduler_scheduling_attempt_duration_seconds``
by result (``scheduled``, ``unschedulable``, ``error``) and profile, and ``scheduler_pending_pods``
by queue (``active``, ``backoff``, ``unschedulable``, ``gated``), read off the queue at scrape time;
``scheduler_preemption_attempts_total`` and ``scheduler_preemption_victims`` from DefaultPreemption."""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import Counter, Gauge, Histogram

__all__ = ["PREEMPTION_ATTEMPTS", "PREEMPTION_VICTIMS", "SCHEDULED", "SCHEDULE_ERROR", "UNSCHEDULABLE",
           "AttemptRecorder", "watch_pending_pods"]

SCHEDULED, UNSCHEDULABLE, SCHEDULE_ERROR = "scheduled", "unschedulable", "error"

_ATTEMPTS = Counter("scheduler_schedule_attempts_total",
                    "Number of attempts to schedule pods, by the result. 'unschedulable' means a pod could not be "
                    "scheduled, while 'error' means an internal scheduler problem.", ("result", "profile"))
_ATTEMPT_DURATION = Histogram("scheduler_scheduling_attempt_duration_seconds",
                              "Scheduling attempt latency in seconds (scheduling algorithm + binding)",
                              ("result", "profile"), buckets=tuple(0.001 * 2 ** i for i in range(15)))
_PENDING = Gauge("scheduler_pending_pods",
                 "Number of pending pods, by the queue type. 'active' means number of pods in activeQ; 'backoff' "
                 "means number of pods in backoffQ; 'unschedulable' means number of pods in unschedulablePods that "
                 "the scheduler attempted to schedule and failed; 'gated' is the number of unschedulable pods that "
                 "the scheduler never attempted to schedule because they are gated.", ("queue",))

PREEMPTION_ATTEMPTS = Counter("scheduler_preemption_attempts_total",
                              "Total preemption attempts in the cluster till now")
PREEMPTION_VICTIMS = Histogram("scheduler_preemption_victims", "Number of selected preemption victims",
                               buckets=tuple(float(2 ** i) for i in range(7)))


class AttemptRecorder:
    """One profile's attempt counters and durations, children looked up once."""

    def __init__(self, profile: str) -> None:
        self._children = {result: (_ATTEMPTS.labels(result, profile), _ATTEMPT_DURATION.labels(result, profile))
                          for result in (SCHEDULED, UNSCHEDULABLE, SCHEDULE_ERROR)}

    def record(self, result: str, started: float) -> None:
        """An attempt that began at ``started`` (``time.monotonic()``) ended with ``result``."""
        counter, duration = self._children[result]
        counter.inc()
        duration.observe(time.monotonic() - started)


def watch_pending_pods(counts: Callable[[], dict[str, int]]) -> None:
    """``scheduler_pending_pods`` computed from the queue when scraped (pods never gated here: 0)."""
    for queue in ("active", "backoff", "unschedulable", "gated"):
        _PENDING.labels(queue).set_function(lambda queue=queue: counts().get(queue, 0))  # type: ignore[misc]
