"""The HPA's replica computation for resource metrics, as upstream's
pkg/controller/podautoscaler/replica_calculator.go (``GetResourceReplicas``, ``GetRawResourceReplicas``,
``groupPods``, ``calculatePodRequests``) and metrics/utilization.go. Pure functions over plain pod
objects and per-pod usage figures, so the arithmetic is tested without a cluster.

All figures are milli-units, as upstream works in ``MilliValue()``: millicores for CPU, milli-bytes
for memory.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fractions import Fraction
from typing import Any

from pilothouse.machinery.kinds.quantity import parse_quantity
from pilothouse.machinery.meta import Object

__all__ = ["CPU_INITIALIZATION_PERIOD", "INITIAL_READINESS_DELAY", "TOLERANCE", "MetricsError", "PodGroups",
           "PodSample", "Recommendation", "group_pods", "milli", "pod_requests", "raw_replicas",
           "utilization_replicas"]


#: kube-controller-manager's --horizontal-pod-autoscaler-tolerance, -cpu-initialization-period and
#: -initial-readiness-delay defaults.
TOLERANCE = 0.1
CPU_INITIALIZATION_PERIOD = timedelta(minutes=5)
INITIAL_READINESS_DELAY = timedelta(seconds=30)


class MetricsError(Exception):
    """No recommendation can be made from these metrics (upstream returns an error; the HPA reports it
    as ScalingActive=False)."""


@dataclass(frozen=True)
class PodSample:
    """One pod's usage of the resource (summed over its containers) and when it was measured."""

    value: int
    timestamp: datetime
    window: timedelta


@dataclass(frozen=True)
class Recommendation:
    replicas: int
    #: Utilization in percent of the requests (None for an AverageValue target).
    utilization: int | None
    #: Average usage per pod, milli-units.
    average: int


@dataclass
class PodGroups:
    ready: int = 0
    unready: set[str] = field(default_factory=set)
    missing: set[str] = field(default_factory=set)
    ignored: set[str] = field(default_factory=set)


def milli(quantity: Any) -> int:
    """``Quantity.MilliValue()``: rounded up, as upstream."""
    value = parse_quantity(quantity) or Fraction(0)
    return math.ceil(value * 1000)


def _time(text: Any) -> datetime | None:
    return datetime.fromisoformat(str(text).replace("Z", "+00:00")) if text else None


def group_pods(pods: list[Object], metrics: Mapping[str, PodSample], resource: str, now: datetime) -> PodGroups:
    """``groupPods``: deleted and failed pods are ignored; pending ones, and for CPU those not ready
    (or measured before one metric window after becoming ready) while still initialising, are unready;
    pods without a metric are missing."""
    groups = PodGroups()
    for pod in pods:
        name = pod["metadata"]["name"]
        status = pod.get("status") or {}
        if pod["metadata"].get("deletionTimestamp") or status.get("phase") == "Failed":
            groups.ignored.add(name)
            continue
        if status.get("phase") == "Pending":
            groups.unready.add(name)
            continue
        sample = metrics.get(name)
        if sample is None:
            groups.missing.add(name)
            continue
        if resource == "cpu" and _unready_for_cpu(status, sample, now):
            groups.unready.add(name)
            continue
        groups.ready += 1
    return groups


def _unready_for_cpu(status: Object, sample: PodSample, now: datetime) -> bool:
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    started = _time(status.get("startTime"))
    if ready is None or started is None:
        return True
    changed = _time(ready.get("lastTransitionTime")) or started
    if started + CPU_INITIALIZATION_PERIOD > now:
        # Still initialising: its CPU burst of start-up is not a load signal.
        return ready.get("status") == "False" or sample.timestamp < changed + sample.window
    # Unready and never been ready.
    return ready.get("status") == "False" and started + INITIAL_READINESS_DELAY > changed


def pod_requests(pods: list[Object], resource: str, container: str | None = None) -> dict[str, int]:
    """``calculatePodRequests``: each pod's request for the resource, milli-units; a container without
    one makes utilisation meaningless, so it is an error."""
    requests: dict[str, int] = {}
    for pod in pods:
        total = 0
        for c in (pod.get("spec") or {}).get("containers") or []:
            if container is not None and c.get("name") != container:
                continue
            request = ((c.get("resources") or {}).get("requests") or {}).get(resource)
            if request is None:
                raise MetricsError(f"missing request for {resource} in container {c.get('name')} "
                                   f"of Pod {pod['metadata']['name']}")
            total += milli(request)
        requests[pod["metadata"]["name"]] = total
    return requests


def _utilization_ratio(usage: Mapping[str, int], requests: Mapping[str, int],
                       target: int) -> tuple[float, int, int]:
    """``GetResourceUtilizationRatio``: (usage/target ratio, utilization %, average usage)."""
    used = requested = counted = 0
    for name, value in usage.items():
        if name not in requests:
            continue  # extraneous metric: a pod not (or no longer) in the target
        used += value
        requested += requests[name]
        counted += 1
    if requested == 0:
        raise MetricsError("no metrics returned matched known pods")
    utilization = used * 100 // requested
    return utilization / target, utilization, used // counted


def _usage_ratio(usage: Mapping[str, int], target: int) -> tuple[float, int]:
    """``GetMetricUsageRatio``: (average/target, average)."""
    average = sum(usage.values()) // len(usage)
    return average / target, average


def utilization_replicas(current: int, target: int, pods: list[Object], metrics: Mapping[str, PodSample],
                         resource: str, now: datetime, tolerance: float = TOLERANCE,
                         container: str | None = None) -> Recommendation:
    """``GetResourceReplicas``: a Utilization target, in percent of the pods' requests."""
    if not pods:
        raise MetricsError("no pods returned by selector while calculating replica count")
    groups = group_pods(pods, metrics, resource, now)
    usage = {n: s.value for n, s in metrics.items() if n not in groups.ignored | groups.unready}
    requests = pod_requests(pods, resource, container)
    if not usage:
        raise MetricsError("did not receive metrics for targeted pods (pods might be unready)")
    ratio, utilization, average = _utilization_ratio(usage, requests, target)

    def redo(filled: dict[str, int]) -> float:
        return _utilization_ratio(filled, requests, target)[0]

    # A missing pod on a scale-down counts as using its whole request (or the target if above 100%).
    fallback = {n: requests.get(n, 0) * max(target, 100) // 100 for n in groups.missing}
    replicas = _replicas(current, ratio, groups, usage, fallback, tolerance, redo)
    return Recommendation(replicas, utilization, average)


def raw_replicas(current: int, target: int, pods: list[Object], metrics: Mapping[str, PodSample], resource: str,
                 now: datetime, tolerance: float = TOLERANCE) -> Recommendation:
    """``GetRawResourceReplicas``: an AverageValue target, milli-units per pod."""
    if not pods:
        raise MetricsError("no pods returned by selector while calculating replica count")
    groups = group_pods(pods, metrics, resource, now)
    usage = {n: s.value for n, s in metrics.items() if n not in groups.ignored | groups.unready}
    if not usage:
        raise MetricsError("did not receive metrics for targeted pods (pods might be unready)")
    ratio, average = _usage_ratio(usage, target)
    fallback = dict.fromkeys(groups.missing, target)
    replicas = _replicas(current, ratio, groups, usage, fallback, tolerance,
                         lambda filled: _usage_ratio(filled, target)[0])
    return Recommendation(replicas, None, average)


def _replicas(current: int, ratio: float, groups: PodGroups, usage: dict[str, int], fallback: dict[str, int],
              tolerance: float, ratio_of: Any) -> int:
    """The shared tail of upstream's calculators: within tolerance nothing changes; unready pods on a
    scale-up and missing pods count conservatively (0 usage on a scale-up, ``fallback`` on a
    scale-down), and if that flips the direction, nothing changes."""
    scale_up_with_unready = bool(groups.unready) and ratio > 1.0
    if not scale_up_with_unready and not groups.missing:
        if abs(1.0 - ratio) <= tolerance:
            return current
        return math.ceil(ratio * groups.ready)
    filled = dict(usage)
    if groups.missing:
        if ratio < 1.0:
            filled.update(fallback)
        elif ratio > 1.0:
            filled.update(dict.fromkeys(groups.missing, 0))
    if scale_up_with_unready:
        filled.update(dict.fromkeys(groups.unready, 0))
    new_ratio: float = ratio_of(filled)
    if abs(1.0 - new_ratio) <= tolerance or (ratio < 1.0 < new_ratio) or (ratio > 1.0 > new_ratio):
        return current
    replicas = math.ceil(new_ratio * len(filled))
    if (new_ratio < 1.0 and replicas > current) or (new_ratio > 1.0 and replicas < current):
        return current
    return replicas
