"""kube-proxy's own metrics (pkg/proxy/metrics, 1.32's names, buckets and help texts), for the
nftables proxy: sync durations (all, full, partial), the last sync's and last queued change's
timestamps, Service and EndpointSlice changes (counted and pending), nftables sync and cleanup
failures, and the network programming latency: from an EndpointSlice's
``endpoints.kubernetes.io/last-change-trigger-time`` (the endpoint controllers stamp it when a pod
changed) to the sync that programmed it.

The proxier calls four hooks (:meth:`ProxyMetrics.synced`, ``sync_failed``, ``cleanup_failed``, and
:meth:`ProxyMetrics.watch` once for its informers); everything else is here, so the sync loop stays
the proxy's. Metrics live in the process's prometheus-client registry: ``pilothouse proxy`` serves
them on kube-proxy's ``--metrics-bind-address`` (127.0.0.1:10249), an agent embedding the proxy on
its own ``/metrics``. A proxy sync is rare next to an API request, so plain prometheus-client
metrics do (the lock-free ``fastmetrics`` are for the API server's hot path).
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web
from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.utils import INF

from pilothouse.client.informer import EventHandler, Informer
from pilothouse.components.componentserver import metrics_response
from pilothouse.machinery import meta
from pilothouse.machinery.meta import Object

__all__ = ["LAST_CHANGE_TRIGGER_TIME", "ProxyMetrics", "network_programming_buckets", "start_metrics_server"]


LAST_CHANGE_TRIGGER_TIME = "endpoints.kubernetes.io/last-change-trigger-time"


def _exponential(start: float, factor: float, count: int) -> list[float]:
    return [start * factor ** i for i in range(count)]


def _linear(start: float, width: float, count: int) -> list[float]:
    return [start + width * i for i in range(count)]


def network_programming_buckets() -> list[float]:
    """``metrics.MergeBuckets(LinearBuckets(0.25, 0.25, 2), LinearBuckets(1, 1, 59),
    LinearBuckets(60, 5, 12), LinearBuckets(120, 30, 7))``."""
    merged = _linear(0.25, 0.25, 2) + _linear(1, 1, 59) + _linear(60, 5, 12) + _linear(120, 30, 7)
    return sorted(set(merged))


_SYNC_BUCKETS = (*_exponential(0.001, 2, 15), INF)

SYNC_DURATION = Histogram("kubeproxy_sync_proxy_rules_duration_seconds", "SyncProxyRules latency in seconds",
                          buckets=_SYNC_BUCKETS)
SYNC_FULL_DURATION = Histogram("kubeproxy_sync_full_proxy_rules_duration_seconds",
                               "SyncProxyRules latency in seconds for full resyncs", buckets=_SYNC_BUCKETS)
SYNC_PARTIAL_DURATION = Histogram("kubeproxy_sync_partial_proxy_rules_duration_seconds",
                                  "SyncProxyRules latency in seconds for partial resyncs", buckets=_SYNC_BUCKETS)
LAST_SYNC = Gauge("kubeproxy_sync_proxy_rules_last_timestamp_seconds",
                  "The last time proxy rules were successfully synced")
LAST_QUEUED = Gauge("kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds",
                    "The last time a sync of proxy rules was queued")
NETWORK_PROGRAMMING = Histogram("kubeproxy_network_programming_duration_seconds",
                                "In Cluster Network Programming Latency in seconds",
                                buckets=(*network_programming_buckets(), INF))
ENDPOINT_CHANGES_PENDING = Gauge("kubeproxy_sync_proxy_rules_endpoint_changes_pending",
                                 "Pending proxy rules Endpoint changes")
ENDPOINT_CHANGES_TOTAL = Counter("kubeproxy_sync_proxy_rules_endpoint_changes",
                                 "Cumulative proxy rules Endpoint changes")
SERVICE_CHANGES_PENDING = Gauge("kubeproxy_sync_proxy_rules_service_changes_pending",
                                "Pending proxy rules Service changes")
SERVICE_CHANGES_TOTAL = Counter("kubeproxy_sync_proxy_rules_service_changes",
                                "Cumulative proxy rules Service changes")
NFTABLES_SYNC_FAILURES = Counter("kubeproxy_sync_proxy_rules_nftables_sync_failures",
                                 "Cumulative proxy nftables sync failures")
NFTABLES_CLEANUP_FAILURES = Counter("kubeproxy_sync_proxy_rules_nftables_cleanup_failures",
                                    "Cumulative proxy nftables cleanup failures")


class ProxyMetrics:
    """One proxier's view onto the process's kube-proxy metrics."""

    def __init__(self, clock: Any = time.time) -> None:
        self.clock = clock
        self.started = clock()
        self._endpoint_changes = 0
        self._service_changes = 0
        self._triggers: list[float] = []

    def watch(self, services: Informer, slices: Informer) -> None:
        """Count changes as the proxy's informers see them (its own handlers mark what to sync)."""
        services.add_handler(EventHandler(lambda _o: self._service_changed(), lambda _o, _n: self._service_changed(),
                                          lambda _o: self._service_changed()))
        slices.add_handler(EventHandler(self._slice_changed, lambda _old, new: self._slice_changed(new),
                                        lambda _o: self._slice_changed(None)))

    def _queued(self) -> None:
        LAST_QUEUED.set(self.clock())

    def _service_changed(self) -> None:
        self._service_changes += 1
        SERVICE_CHANGES_TOTAL.inc()
        SERVICE_CHANGES_PENDING.set(self._service_changes)
        self._queued()

    def _slice_changed(self, endpoint_slice: Object | None) -> None:
        self._endpoint_changes += 1
        ENDPOINT_CHANGES_TOTAL.inc()
        ENDPOINT_CHANGES_PENDING.set(self._endpoint_changes)
        self._queued()
        annotations = ((endpoint_slice or {}).get("metadata") or {}).get("annotations") or {}
        trigger = meta.parse_time(annotations.get(LAST_CHANGE_TRIGGER_TIME))
        # as the endpoints change tracker: only changes made after this proxy started count
        if trigger is not None and trigger.timestamp() > self.started:
            self._triggers.append(trigger.timestamp())

    def synced(self, seconds: float, full: bool) -> None:
        """A sync programmed the kernel: its duration, and the latency of every change it applied."""
        SYNC_DURATION.observe(seconds)
        (SYNC_FULL_DURATION if full else SYNC_PARTIAL_DURATION).observe(seconds)
        now = self.clock()
        LAST_SYNC.set(now)
        for trigger in self._triggers:
            NETWORK_PROGRAMMING.observe(max(0.0, now - trigger))
        self._triggers.clear()
        self._endpoint_changes = self._service_changes = 0
        ENDPOINT_CHANGES_PENDING.set(0)
        SERVICE_CHANGES_PENDING.set(0)

    def sync_failed(self) -> None:
        NFTABLES_SYNC_FAILURES.inc()

    def cleanup_failed(self) -> None:
        NFTABLES_CLEANUP_FAILURES.inc()


async def start_metrics_server(bind: str) -> web.AppRunner | None:
    """kube-proxy's metrics server (``--metrics-bind-address``, ``127.0.0.1:10249``; ``0`` turns it
    off): ``/metrics``, ``/healthz`` and ``/proxyMode``, plain HTTP without authentication as
    kube-proxy serves them (bound to loopback by default for that reason)."""
    if bind in ("", "0"):
        return None
    host, _, port = bind.rpartition(":")
    app = web.Application()
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/proxyMode", _proxy_mode)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host.strip("[]") or "0.0.0.0", int(port)).start()
    return runner


async def _metrics(request: web.Request) -> web.Response:
    return metrics_response(request)


async def _healthz(_request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def _proxy_mode(_request: web.Request) -> web.Response:
    return web.Response(text="nftables")
