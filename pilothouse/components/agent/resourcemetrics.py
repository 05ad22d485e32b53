"""The kubelet's ``/metrics/resource``: CPU and memory per container, pod and node, what
metrics-server scrapes for ``kubectl top`` and the HorizontalPodAutoscaler (1.32 names and labels).

Containers' figures come from the engine's stats (cgroup readings through the Docker API), read when
scraped; the node's from ``/proc``: CPU time of all cores but idle and iowait, and memory in use as
MemTotal less MemAvailable (the kubelet reads the root cgroup's working set, which the engine's API
does not give; MemAvailable already leaves out reclaimable page cache). Samples carry the time of the
reading, as the kubelet's do.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pilothouse.components.agent.runtime.interface import ContainerNotFound, ContainerStats

__all__ = ["PodContainers", "node_usage", "render"]

log = logging.getLogger("pilothouse.agent.resourcemetrics")


@dataclass(frozen=True)
class PodContainers:
    namespace: str
    pod: str
    #: (container name, engine id, start time in epoch seconds) of each running container
    containers: tuple[tuple[str, str, float], ...]


def node_usage(proc: Path = Path("/proc")) -> tuple[float, int]:
    """(CPU seconds used since boot by all cores, memory working set in bytes)."""
    fields = (proc / "stat").read_text().splitlines()[0].split()[1:]
    ticks = [int(value) for value in fields[:8]]  # user nice system idle iowait irq softirq steal
    busy = sum(ticks) - ticks[3] - ticks[4]
    meminfo = {line.split(":")[0]: int(line.split()[1]) for line in (proc / "meminfo").read_text().splitlines()
               if line.split()[1:2] and line.split()[1].isdigit()}
    used_kib = meminfo.get("MemTotal", 0) - meminfo.get("MemAvailable", meminfo.get("MemFree", 0))
    return busy / os.sysconf("SC_CLK_TCK"), used_kib * 1024


class _Page(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


async def render(pods: Iterable[PodContainers], stats: Callable[[str], Awaitable[ContainerStats]]) -> bytes:
    pods = list(pods)
    ids = [container_id for pod in pods for _, container_id, _ in pod.containers]
    readings = await asyncio.gather(*(stats(container_id) for container_id in ids), return_exceptions=True)
    by_id = {container_id: r for container_id, r in zip(ids, readings, strict=True) if isinstance(r, ContainerStats)}
    for container_id, failure in zip(ids, readings, strict=True):
        if isinstance(failure, BaseException) and not isinstance(failure, ContainerNotFound):
            log.warning("stats of container %s: %s", container_id[:12], failure)
    labels = ("container", "pod", "namespace")
    container_cpu = CounterMetricFamily("container_cpu_usage_seconds",
                                        "Cumulative cpu time consumed by the container in core-seconds", labels=labels)
    container_memory = GaugeMetricFamily("container_memory_working_set_bytes",
                                         "Current working set of the container in bytes", labels=labels)
    container_start = GaugeMetricFamily("container_start_time_seconds",
                                        "Start time of the container since unix epoch in seconds", labels=labels)
    pod_cpu = CounterMetricFamily("pod_cpu_usage_seconds", "Cumulative cpu time consumed by the pod in core-seconds",
                                  labels=("pod", "namespace"))
    pod_memory = GaugeMetricFamily("pod_memory_working_set_bytes", "Current working set of the pod in bytes",
                                   labels=("pod", "namespace"))
    for pod in pods:
        cpu, memory, newest = 0.0, 0, 0.0
        for name, container_id, started in pod.containers:
            reading = by_id.get(container_id)
            if reading is None:
                continue  # gone between the listing and its stats
            values = (name, pod.pod, pod.namespace)
            container_cpu.add_metric(values, reading.cpu_seconds, timestamp=reading.timestamp)
            container_memory.add_metric(values, reading.memory_working_set, timestamp=reading.timestamp)
            container_start.add_metric(values, started, timestamp=reading.timestamp)
            cpu, memory, newest = cpu + reading.cpu_seconds, memory + reading.memory_working_set, \
                max(newest, reading.timestamp)
        if newest:
            pod_cpu.add_metric((pod.pod, pod.namespace), cpu, timestamp=newest)
            pod_memory.add_metric((pod.pod, pod.namespace), memory, timestamp=newest)
    now = time.time()
    node_cpu_seconds, node_memory = node_usage()
    node_cpu = CounterMetricFamily("node_cpu_usage_seconds", "Cumulative cpu time consumed by the node in core-seconds")
    node_cpu.add_metric((), node_cpu_seconds, timestamp=now)
    node_mem = GaugeMetricFamily("node_memory_working_set_bytes", "Current working set of the node in bytes")
    node_mem.add_metric((), node_memory, timestamp=now)
    scrape_error = GaugeMetricFamily("resource_scrape_error",
                                     "1 if there was an error while getting container metrics, 0 otherwise",
                                     value=float(len(by_id) < len(ids)))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Page([container_cpu, container_memory, container_start, node_cpu, node_mem, pod_cpu,
                             pod_memory, scrape_error]))
    return generate_latest(registry)
