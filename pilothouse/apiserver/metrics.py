"""kube-apiserver's request metrics and its ``/metrics`` page.

Names, labels and buckets are ``k8s.io/apiserver/pkg/endpoints/metrics`` (1.32) so that existing
dashboards and alerts work unchanged:

* ``apiserver_request_total`` {verb, dry_run, group, version, resource, subresource, scope,
  component, code} and ``apiserver_request_duration_seconds`` (the same but code), for every
  request that reached a served resource's route. As in kube-apiserver, a request refused by
  authentication or authorization never reaches the route and is not counted there, nor is a
  non-resource path (discovery, /healthz, /metrics itself).
* ``apiserver_longrunning_requests``: watches and CONNECT (log, exec, attach, portforward, proxy)
  open right now.
* ``apiserver_storage_objects`` {resource}: objects per resource, counted in the store every
  ``--etcd-count-metric-poll-period`` (kube's flag, one minute by default).

The ``verb`` label is kube's reported verb, the HTTP method with ``CanonicalVerb``/``CleanVerb``
applied: GET of a collection is LIST, ``?watch`` or ``/watch/`` is WATCH, a server-side-apply PATCH
is APPLY, a connect subresource is CONNECT. Children are cached per label tuple: prometheus-client's
``labels()`` takes a lock and validates names on every call (see docs/decisions/metrics.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Container, Iterable
from typing import Any

from aiohttp import web
from prometheus_client import REGISTRY, Gauge, disable_created_metrics
from prometheus_client.exposition import choose_encoder

from pilothouse.apiserver.auth import REQUEST_INFO
from pilothouse.apiserver.requestinfo import RequestInfo
from pilothouse.machinery.errors import StatusError
from pilothouse.machinery.fastmetrics import CounterVec, HistogramVec
from pilothouse.machinery.kinds import ResourceRegistry
from pilothouse.machinery.loopmetrics import register as register_asyncio_tasks
from pilothouse.store.metrics import REQUEST_BUCKETS

__all__ = ["TERMINATED_WATCHERS", "RequestMetrics", "StorageObjectCounter", "reported_scope", "reported_verb",
           "serve_metrics", "stored_resources"]

log = logging.getLogger("pilothouse.apiserver.metrics")

# Kubernetes' pages carry no ``*_created`` series next to every counter and histogram.
disable_created_metrics()  # type: ignore[no-untyped-call]
register_asyncio_tasks()  # python_asyncio_tasks, the go_goroutines of this process (bench/soak.py)

COMPONENT = "apiserver"
_LABELS = ("verb", "dry_run", "group", "version", "resource", "subresource", "scope", "component")

# Recorded on every request: the event loop's cheap metrics (machinery/fastmetrics.py).
REQUESTS = CounterVec("apiserver_request_total",
                      "Counter of apiserver requests broken out for each verb, dry run value, group, version, "
                      "resource, scope, component, and HTTP response code.", (*_LABELS, "code"))
DURATION = HistogramVec("apiserver_request_duration_seconds",
                        "Response latency distribution in seconds for each verb, dry run value, group, version, "
                        "resource, subresource, scope and component.", _LABELS, REQUEST_BUCKETS)
LONGRUNNING = Gauge("apiserver_longrunning_requests",
                    "Gauge of all active long-running apiserver requests broken out by verb, group, version, "
                    "resource, scope and component. Not all requests are tracked this way.",
                    ("verb", "group", "version", "resource", "subresource", "scope", "component"))
STORAGE_OBJECTS = Gauge("apiserver_storage_objects",
                        "Number of stored objects at the time of last check split by kind. In case of a fetching "
                        "error, the value will be -1.", ("resource",))

#: Watchers closed because their client stopped reading (kube-apiserver's TerminatedWatchersCounter,
#: ``k8s.io/apiserver/pkg/storage/cacher/metrics``).
TERMINATED_WATCHERS = CounterVec("apiserver_terminated_watchers_total",
                                 "Counter of watchers closed due to unresponsiveness broken by resource type.",
                                 ("group", "resource"))

#: Subresources kube-apiserver reports as CONNECT (``validConnectRequests``).
_CONNECT = frozenset(("log", "exec", "portforward", "attach", "proxy"))
_VALID_VERBS = frozenset(("APPLY", "CONNECT", "CREATE", "DELETE", "DELETECOLLECTION", "GET", "LIST", "PATCH",
                          "POST", "PROXY", "PUT", "UPDATE", "WATCH", "WATCHLIST"))
_APPLY_PATCH = "application/apply-patch+yaml"


def reported_scope(info: RequestInfo) -> str:
    """``CleanScope``: a named object or a create is "resource", then "namespace", then "cluster"."""
    if info.name or info.verb == "create":
        return "resource"
    if info.namespace:
        return "namespace"
    return "cluster" if info.is_resource_request else ""


def reported_verb(method: str, info: RequestInfo, scope: str, content_type: str) -> str:
    """``cleanVerb(CanonicalVerb(method, scope), ...)``."""
    verb = method.upper()
    if verb in ("GET", "HEAD"):
        verb = "LIST" if scope not in ("resource", "") else "GET"
    if info.verb == "watch":  # ?watch=true and the deprecated /watch/ paths alike
        verb = "WATCH"
    elif verb == "PATCH" and content_type == _APPLY_PATCH:
        verb = "APPLY"
    if info.subresource in _CONNECT:
        verb = "CONNECT"
    return verb if verb in _VALID_VERBS else "other"


def _dry_run(request: web.Request) -> str:
    """``cleanDryRun``: the sorted, deduplicated values (only ``All`` is valid)."""
    if "dryRun" not in request.query_string:
        return ""
    return ",".join(sorted(set(request.query.getall("dryRun", []))))


class RequestMetrics:
    """The request-metrics middleware, innermost (after authorization, as kube's route instrumentation)."""

    def __init__(self, served: Callable[[str, str, str], bool]) -> None:
        #: (group, version, resource) → is it served here: paths of unserved resources are 404s
        #: before any route in kube-apiserver, and would let any client grow the label sets.
        self._served = served
        self._labels: dict[tuple[Any, ...], tuple[str, ...]] = {}
        self._durations: dict[tuple[str, ...], Any] = {}
        self._counters: dict[tuple[tuple[str, ...], int], Any] = {}

    def _label_values(self, request: web.Request, info: RequestInfo) -> tuple[str, ...] | None:
        # The key holds what the labels derive from, not the names in the path (unbounded).
        content_type = request.content_type if info.verb == "patch" else ""
        dry_run = _dry_run(request)
        key = (request.method, info.verb, info.name == "", not info.namespace, info.group, info.version,
               info.resource, info.subresource, content_type, dry_run)
        labels = self._labels.get(key)
        if labels is None:
            if not self._served(info.group, info.version, info.resource):
                return None
            scope = reported_scope(info)
            labels = (reported_verb(request.method, info, scope, content_type), dry_run, info.group, info.version,
                      info.resource, info.subresource, scope, COMPONENT)
            self._labels[key] = labels
        return labels

    def _record(self, labels: tuple[str, ...], code: int, elapsed: float) -> None:
        duration = self._durations.get(labels)
        if duration is None:
            duration = self._durations[labels] = DURATION.labels(*labels)
        duration.observe(elapsed)
        counter = self._counters.get((labels, code))
        if counter is None:
            counter = self._counters[(labels, code)] = REQUESTS.labels(*labels, str(code))
        counter.inc()

    @web.middleware
    async def middleware(self, request: web.Request,
                         handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        info = request.get(REQUEST_INFO)
        labels = self._label_values(request, info) if info is not None and info.is_resource_request else None
        if labels is None:
            return await handler(request)
        longrunning = labels[0] in ("WATCH", "CONNECT")
        if longrunning:
            # verb, group, version, resource, subresource, scope, component
            gauge = LONGRUNNING.labels(labels[0], *labels[2:])
            gauge.inc()
        started = time.perf_counter()
        code = 500
        try:
            response = await handler(request)
            code = response.status
            return response
        except StatusError as error:
            code = error.code
            raise
        except web.HTTPException as error:
            code = error.status
            raise
        except asyncio.CancelledError:
            # cancelled because the client closed its connection (apiserver/disconnects.py): nginx's
            # 499, not a server error
            code = 499
            raise
        finally:
            if longrunning:
                gauge.dec()
            self._record(labels, code, time.perf_counter() - started)


def serve_metrics(request: web.Request) -> web.Response:
    """The default registry (these, the store's, ``process_*``, ``python_gc_*``) in the text format
    the scraper asks for (Prometheus text 0.0.4, or OpenMetrics when its Accept prefers it)."""
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return web.Response(body=encoder(REGISTRY), headers={"Content-Type": content_type})


def stored_resources(registry: ResourceRegistry, virtual: Container[tuple[str, str]]) -> list[tuple[str, str]]:
    """(``GroupResource.String()``, key prefix) of every stored resource; the review APIs and
    ``bindings``, answered and never stored, are left out (``virtual``: apiserver/virtual.py's keys)."""
    out = []
    for resource in registry:
        label = f"{resource.plural}.{resource.group}" if resource.group else resource.plural
        if (label, "") not in virtual:
            out.append((label, resource.key_prefix()))
    return out


class StorageObjectCounter:
    """``apiserver_storage_objects``: kube-apiserver counts each resource's keys in the store on a
    timer (``--etcd-count-metric-poll-period``), not per write, so the cost is per resource per
    period whatever the write rate."""

    def __init__(self, count: Callable[[str], Awaitable[int]],
                 resources: Callable[[], Iterable[tuple[str, str]]], period: float = 60.0) -> None:
        self._count = count
        self._resources = resources  # → (label, key prefix)
        self.period = period
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.period > 0 and self._task is None:
            self._task = asyncio.create_task(self._loop(), name="storage-object-counts")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def refresh(self) -> None:
        seen: set[str] = set()
        for label, prefix in self._resources():
            if label in seen:  # a resource served in several versions is stored once
                continue
            seen.add(label)
            try:
                STORAGE_OBJECTS.labels(label).set(await self._count(prefix))
            except Exception as error:  # the store unreachable: -1, as kube-apiserver reports
                log.debug("counting %s: %s", label, error)
                STORAGE_OBJECTS.labels(label).set(-1)

    async def _loop(self) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(self.period)
