"""The kubelet's metrics the agent serves on its port's ``/metrics`` (``pkg/kubelet/metrics``, 1.32):

* ``kubelet_pod_start_sli_duration_seconds``: from the pod's creationTimestamp to the status that
  reports all its containers running, minus the time spent pulling images (the window from the
  first pull's start to the last pull's end, as ``pod_startup_latency_tracker`` takes it), observed
  once per pod.
* ``kubelet_running_pods`` (pods with a running sandbox) and ``kubelet_running_containers``
  {container_state}: read from the agent's pods when scraped, as the kubelet's collectors read its
  pod cache.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable

from prometheus_client import Gauge, Histogram

from pilothouse.machinery import meta
from pilothouse.machinery.meta import Object

__all__ = ["POD_STARTS", "PodStartTracker", "container_state", "watch_running"]


_POD_START_SLI = Histogram(
    "kubelet_pod_start_sli_duration_seconds",
    "Duration in seconds to start a pod, excluding time to pull images and run init containers, measured from pod "
    "creation timestamp to when all its containers are reported as started and observed via watch",
    buckets=(0.5, 1, 2, 3, 4, 5, 6, 8, 10, 20, 30, 45, 60, 120, 180, 240, 300, 360, 480, 600, 900, 1200, 1800, 2700,
             3600))
_RUNNING_PODS = Gauge("kubelet_running_pods", "Number of pods that have a running pod sandbox")
_RUNNING_CONTAINERS = Gauge("kubelet_running_containers", "Number of containers currently running",
                            ("container_state",))

#: kubelet's container_state values; an engine state outside them is "unknown".
_STATES = ("running", "exited", "created", "unknown")


def container_state(engine_state: str) -> str:
    return engine_state if engine_state in _STATES else "unknown"


class PodStartTracker:
    """Pods whose start is still to be observed, with their image-pull windows (monotonic clock)."""

    def __init__(self, limit: int = 100_000) -> None:
        self._pulls: dict[str, tuple[float, float]] = {}
        self._observed: set[str] = set()
        self._limit = limit

    def pulled(self, uid: str, started: float, finished: float) -> None:
        first, last = self._pulls.get(uid, (started, finished))
        self._pulls[uid] = (min(first, started), max(last, finished))

    def observe(self, pod: Object) -> None:
        """``pod`` carries the status just written: the first time every container runs, the SLI."""
        metadata = pod.get("metadata") or {}
        uid = metadata.get("uid", "")
        if not uid or uid in self._observed:
            return
        status = pod.get("status") or {}
        statuses = status.get("containerStatuses") or []
        containers = (pod.get("spec") or {}).get("containers") or []
        if status.get("phase") != "Running" or len(statuses) < len(containers) or not all(
                "running" in (s.get("state") or {}) for s in statuses):
            return
        created = meta.parse_time(metadata.get("creationTimestamp") or "")
        if created is None:
            return
        elapsed = (datetime.datetime.now(datetime.UTC) - created).total_seconds()
        first, last = self._pulls.pop(uid, (0.0, 0.0))
        if len(self._observed) >= self._limit:
            self._observed.clear()  # uids are never reused; forgetting old ones only costs memory
        self._observed.add(uid)
        _POD_START_SLI.observe(max(elapsed - (last - first), 0.0))

    def forget(self, uid: str) -> None:
        self._pulls.pop(uid, None)


#: One per process: pod uids are unique across every node a process hosts.
POD_STARTS = PodStartTracker()


def watch_running(pods: Callable[[], Iterable[tuple[bool, Iterable[str]]]]) -> None:
    """The running gauges from ``pods()``: per pod, (its sandbox runs, its containers' engine states)."""
    def count() -> tuple[int, dict[str, int]]:
        running, states = 0, dict.fromkeys(_STATES, 0)
        for sandbox_running, container_states in pods():
            running += sandbox_running
            for state in container_states:
                states[container_state(state)] += 1
        return running, states

    _RUNNING_PODS.set_function(lambda: count()[0])
    for state in _STATES:
        _RUNNING_CONTAINERS.labels(state).set_function(lambda state=state: count()[1][state])  # type: ignore[misc]
