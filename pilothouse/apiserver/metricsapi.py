"""``metrics.k8s.io/v1beta1`` (NodeMetrics, PodMetrics), answered as metrics-server answers them, so
that ``kubectl top`` works without installing it.

metrics-server scrapes every kubelet's ``/metrics/resource`` on a timer and serves CPU as the rate
between its last two scrapes; here the API server scrapes the agents when asked (through the same
client TLS as the logs/exec proxy), keeps each node's last reading, and takes the rate against it,
or, when it has none recent enough, against a second reading a second later. Memory is the working
set as read. Nodes that cannot be scraped are left out, as metrics-server leaves them out.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from pilothouse.apiserver import codec
from pilothouse.apiserver.nodeproxy import _agent_base_url, _agent_session
from pilothouse.apiserver.registry import ListOptions, ResourceStorage
from pilothouse.apiserver.requestinfo import RequestInfo
from pilothouse.machinery.errors import StatusError, method_not_allowed, not_found
from pilothouse.machinery.meta import Object
from pilothouse.machinery.selectors import parse_label_selector

__all__ = ["METRICS_HANDLERS"]

GROUP_VERSION = "metrics.k8s.io/v1beta1"
#: A previous reading younger than this is too close for a rate; older than the second, too stale.
MIN_WINDOW, MAX_WINDOW = 0.5, 120.0
#: metrics-server's --kubelet-request-timeout default, and scrapes in flight at once.
SCRAPE_TIMEOUT, SCRAPES = 10.0, 64


@dataclass
class _Reading:
    at: float  # epoch seconds
    node: tuple[float, float] = (0.0, 0.0)  # (cpu seconds, memory bytes)
    #: (namespace, pod) -> container -> (cpu seconds, memory bytes)
    pods: dict[tuple[str, str], dict[str, tuple[float, float]]] = field(default_factory=dict)


_LAST: dict[str, _Reading] = {}


def _parse(text: str) -> _Reading:
    reading = _Reading(time.time())
    node_cpu = node_memory = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "node_cpu_usage_seconds_total":
                node_cpu = sample.value
            elif sample.name == "node_memory_working_set_bytes":
                node_memory = sample.value
            elif sample.name in ("container_cpu_usage_seconds_total", "container_memory_working_set_bytes"):
                labels = sample.labels
                containers = reading.pods.setdefault((labels["namespace"], labels["pod"]), {})
                cpu, memory = containers.get(labels["container"], (0.0, 0.0))
                is_cpu = sample.name.startswith("container_cpu")
                containers[labels["container"]] = (sample.value, memory) if is_cpu else (cpu, sample.value)
    reading.node = (node_cpu, node_memory)
    return reading


_SLOTS = asyncio.Semaphore(SCRAPES)  # binds to the server's loop when first waited on


async def _scrape(handler: Any, node: str) -> _Reading | None:
    try:
        url = await _agent_base_url(handler, node) + "/metrics/resource"
        async with _SLOTS, asyncio.timeout(SCRAPE_TIMEOUT), _agent_session(handler) as session, \
                session.get(url) as response:
            if response.status != 200:
                return None
            return _parse(await response.text())
    except (TimeoutError, aiohttp.ClientError, OSError, StatusError, ValueError, KeyError):
        return None


def _has_containers(node: Object) -> bool:
    """Simulated nodes (``agent --simulate``) run nothing and serve no resource metrics."""
    runtime = str(((node.get("status") or {}).get("nodeInfo") or {}).get("containerRuntimeVersion") or "")
    return not runtime.startswith("simulated://")


async def _window(handler: Any, node: str) -> tuple[_Reading, _Reading] | None:
    """(earlier, later) readings of ``node`` for a rate."""
    later = await _scrape(handler, node)
    if later is None:
        return None
    earlier = _LAST.get(node)
    if earlier is None or not MIN_WINDOW <= later.at - earlier.at <= MAX_WINDOW:
        await asyncio.sleep(1.0)
        earlier, later = later, await _scrape(handler, node)
        if later is None:
            return None
    _LAST[node] = later
    return earlier, later


def _usage(earlier: tuple[float, float] | None, later: tuple[float, float], seconds: float) -> Object:
    cores = max(later[0] - earlier[0], 0.0) / seconds if earlier is not None else 0.0
    return {"cpu": f"{int(cores * 1e9)}n", "memory": f"{int(later[1] // 1024)}Ki"}


def _common(earlier: _Reading, later: _Reading) -> Object:
    moment = datetime.datetime.fromtimestamp(later.at, datetime.UTC)
    return {"timestamp": moment.strftime("%Y-%m-%dT%H:%M:%SZ"), "window": f"{later.at - earlier.at:.3f}s"}


def _metadata(obj: Object, **extra: Any) -> Object:
    metadata = obj.get("metadata") or {}
    return {"name": metadata.get("name"), **extra, "creationTimestamp": datetime.datetime.now(datetime.UTC)
            .strftime("%Y-%m-%dT%H:%M:%SZ"), "labels": metadata.get("labels") or {}}


async def _listed(handler: Any, request: web.Request, plural: str, namespace: str | None) -> list[Object]:
    """The nodes or pods measured, with the request's label selector (``kubectl top -l``) applied to
    them, as metrics-server selects from its informers."""
    storage: ResourceStorage = handler.storage_for("", "v1", plural)
    selector = parse_label_selector(request.query.get("labelSelector"))
    items, _, _ = await storage.list(namespace, ListOptions(label_selector=selector))
    return items


def _answer(info: RequestInfo, kind: str, plural: str, items: list[Object]) -> web.Response:
    if info.verb == "get":
        found = [item for item in items if item["metadata"]["name"] == info.name]
        if not found:
            raise not_found(plural, "metrics.k8s.io", info.name)
        return codec.json_response({"kind": kind, "apiVersion": GROUP_VERSION, **found[0]})
    return codec.json_response({"kind": f"{kind}List", "apiVersion": GROUP_VERSION, "metadata": {},
                                "items": items})


def _only_reads(info: RequestInfo) -> None:
    if info.verb not in ("get", "list"):
        raise method_not_allowed()


async def node_metrics(handler: Any, request: web.Request, info: RequestInfo,
                       storage: ResourceStorage) -> web.StreamResponse:
    _only_reads(info)
    nodes = [n for n in await _listed(handler, request, "nodes", None) if _has_containers(n) and
             (info.verb == "list" or n["metadata"]["name"] == info.name)]
    windows = await asyncio.gather(*(_window(handler, n["metadata"]["name"]) for n in nodes))
    items = []
    for node, window in zip(nodes, windows, strict=True):
        if window is None:
            continue
        earlier, later = window
        items.append({"metadata": _metadata(node), **_common(earlier, later),
                      "usage": _usage(earlier.node, later.node, later.at - earlier.at)})
    return _answer(info, "NodeMetrics", "nodes", items)


async def pod_metrics(handler: Any, request: web.Request, info: RequestInfo,
                      storage: ResourceStorage) -> web.StreamResponse:
    _only_reads(info)
    pods = [p for p in await _listed(handler, request, "pods", info.namespace)
            if (p.get("spec") or {}).get("nodeName") and (p.get("status") or {}).get("phase") == "Running"
            and (info.verb == "list" or p["metadata"]["name"] == info.name)]
    nodes = sorted({p["spec"]["nodeName"] for p in pods})
    windows = dict(zip(nodes, await asyncio.gather(*(_window(handler, n) for n in nodes)), strict=True))
    items = []
    for pod in pods:
        window = windows.get(pod["spec"]["nodeName"])
        key = (pod["metadata"].get("namespace") or "default", pod["metadata"]["name"])
        if window is None or key not in window[1].pods:
            continue
        earlier, later = window
        seconds = later.at - earlier.at
        previous = earlier.pods.get(key, {})
        containers = [{"name": name, "usage": _usage(previous.get(name), usage, seconds)}
                      for name, usage in sorted(later.pods[key].items())]
        items.append({"metadata": _metadata(pod, namespace=key[0]), **_common(earlier, later),
                      "containers": containers})
    return _answer(info, "PodMetrics", "pods", items)


METRICS_HANDLERS = {
    ("nodes.metrics.k8s.io", ""): node_metrics,
    ("pods.metrics.k8s.io", ""): pod_metrics,
}
