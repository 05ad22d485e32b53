"""The API server as an aiohttp application: routes, the error/auth middleware, startup.

Non-resource paths (health, version, discovery, OpenAPI) have their own small handlers; every
resource path goes through :func:`parse_request_info` to the one generic :class:`RestHandler`.
"""

from __future__ import annotations

import logging
import platform
from typing import Any

from aiohttp import web

from pilothouse import __version__
from pilothouse.apiserver import (
    codec,
    disconnects,
    masterendpoints,
    metrics,
    metricsapi,
    nodeproxy,
    poststart,
    rbacbootstrap,
    subresources,
    virtual,
)
from pilothouse.apiserver.admission import NamespaceLifecycle
from pilothouse.apiserver.admission_plugins import AdmissionChain
from pilothouse.apiserver.admission_plugins.priority import bootstrap_priority_classes
from pilothouse.apiserver.allocators import ServiceAllocator, ServiceHooks
from pilothouse.apiserver.auth import REQUEST_INFO, AuthLayer
from pilothouse.apiserver.crds import CRDController
from pilothouse.apiserver.dashboard import middleware as dashboard_middleware
from pilothouse.apiserver.discovery import Discovery
from pilothouse.apiserver.openapiv2 import serve_openapi_v2
from pilothouse.apiserver.registry import ResourceStorage, StorageHooks, WriteContext
from pilothouse.apiserver.requestinfo import parse_request_info
from pilothouse.apiserver.rest import RestHandler, add_standing_warnings
from pilothouse.machinery import openapi
from pilothouse.machinery.errors import StatusError, internal_error, path_not_found
from pilothouse.machinery.kinds import BUILTIN_RESOURCES, ResourceRegistry, ResourceType
from pilothouse.machinery.schema import KUBERNETES_VERSION
from pilothouse.store.interface import Store

__all__ = ["SYSTEM_NAMESPACES", "APIServer"]

log = logging.getLogger("pilothouse.apiserver")

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")

_KEY_APP = web.AppKey("apiserver", object)


class _NamespaceWrites(StorageHooks):
    """Namespace writes through this server reach the admission cache at once."""

    def __init__(self, lifecycle: NamespaceLifecycle) -> None:
        self.lifecycle = lifecycle

    async def after_write(self, obj: dict[str, Any]) -> None:
        self.lifecycle.observe(obj)

    async def after_delete(self, obj: dict[str, Any]) -> None:
        self.lifecycle.forget(obj)


class APIServer:
    """Owns the registry of resources and their storages over one store."""

    def __init__(self, store: Store, auth: AuthLayer | None = None,
                 service_cluster_ip_range: str = "10.96.0.0/12", advertise_port: int = 6443,
                 advertise_address: str = "", event_ttl: int = 3600) -> None:
        self.store = store
        #: kube-apiserver's --event-ttl in seconds (0: Events never expire).
        self.event_ttl = event_ttl
        self.registry = ResourceRegistry(BUILTIN_RESOURCES)
        self.namespaces = NamespaceLifecycle(store)
        self.service_allocator = ServiceAllocator(store, service_cluster_ip_range)
        self.advertise_port = advertise_port
        self.advertise_address = advertise_address
        self.auth = auth or AuthLayer()
        hooks: dict[tuple[str, str], StorageHooks] = {("", "services"): ServiceHooks(self.service_allocator),
                                                      ("", "namespaces"): _NamespaceWrites(self.namespaces),
                                                      **self.auth.storage_hooks()}
        self.admission = AdmissionChain.default(store)
        self.storages = {r: ResourceStorage(r, store, self.namespaces, hooks.get((r.group, r.plural)), self.admission,
                                            event_ttl)
                         for r in self.registry}
        self.registry.subscribe(self._follow_registry)
        # logs/exec/attach/port-forward are proxied to the pod's node agent.
        self.rest = RestHandler(self.registry, self.storages,
                                {**subresources.SUBRESOURCE_HANDLERS, **nodeproxy.NODE_PROXY_HANDLERS,
                                 **virtual.VIRTUAL_HANDLERS, **metricsapi.METRICS_HANDLERS})
        self.discovery = Discovery(self.registry)
        self.crds = CRDController(store, self.registry, self.storage)
        self.request_metrics = metrics.RequestMetrics(lambda g, v, r: self.registry.by_plural(g, v, r) is not None)
        self.object_counts = metrics.StorageObjectCounter(
            store.count, lambda: metrics.stored_resources(self.registry, self.rest.subresources))
        self.ready = False

    def _follow_registry(self, resource: ResourceType, added: bool) -> None:
        """Kinds come and go at run time (custom resources): one storage per served resource."""
        self.storages.pop(resource, None)
        if added:
            self.storages[resource] = ResourceStorage(resource, self.store, self.namespaces, None, self.admission,
                                                      self.event_ttl)

    def storage(self, group: str, version: str, plural: str) -> ResourceStorage:
        return self.rest.storage_for(group, version, plural)

    async def bootstrap(self) -> None:
        """Objects every cluster has: the system namespaces."""
        self.namespaces.start()
        self.admission.start()
        self.auth.start()
        namespaces = self.storage("", "v1", "namespaces")
        for name in SYSTEM_NAMESPACES:
            try:
                await namespaces.create(None, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
                                        WriteContext(field_manager="pilothouse-apiserver"))
            except StatusError as error:
                if error.reason != "AlreadyExists":
                    raise
        await self._bootstrap_kubernetes_service()
        try:
            await masterendpoints.reconcile_kubernetes_endpoints(self.storage, self.advertise_address,
                                                                 self.advertise_port)
        except StatusError as error:  # the API without its Service's endpoints beats no API at all
            log.warning("could not write the kubernetes Service's endpoints: %s", error)
        await rbacbootstrap.ensure_bootstrap_policy(self.storage)
        await bootstrap_priority_classes(self.storage("scheduling.k8s.io", "v1", "priorityclasses"))
        await poststart.bootstrap(self.registry, self.storage)
        await self.crds.start()  # serve the stored CRDs' resources before answering ready
        self.object_counts.start()
        self.ready = True

    async def _bootstrap_kubernetes_service(self) -> None:
        """``default/kubernetes``: the API server's own Service, on the range's first address."""
        services = self.storage("", "v1", "services")
        try:
            await services.get("default", "kubernetes")
            return
        except StatusError as error:
            if error.code != 404:
                raise
        service = {
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kubernetes", "namespace": "default",
                         "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"type": "ClusterIP", "clusterIP": self.service_allocator.first_ip,
                     "ports": [{"name": "https", "port": 443, "protocol": "TCP",
                                "targetPort": self.advertise_port}],
                     "sessionAffinity": "None"},
        }
        try:
            await services.create("default", service, WriteContext(field_manager="pilothouse-apiserver"))
        except StatusError as error:
            if error.reason != "AlreadyExists":
                raise

    async def close(self) -> None:
        await self.object_counts.close()
        await self.crds.close()
        await self.namespaces.close()
        await self.admission.close()
        await self.auth.close()

    # -------------------------------------------------------------- app

    def build_app(self, auth: AuthLayer | None = None) -> web.Application:
        # ``auth``: another layer over the same routes (the insecure port's, apiserver/insecure.py).
        app = web.Application(middlewares=[codec.pretty_middleware, self._middleware, dashboard_middleware,
                                           (auth or self.auth).middleware, self.request_metrics.middleware,
                                           disconnects.middleware],
                              client_max_size=codec.MAX_BODY_BYTES + 1)
        app[_KEY_APP] = self
        app.on_response_prepare.append(add_standing_warnings)
        app.router.add_get("/", self._root_paths)
        app.router.add_get("/healthz", self._health)
        app.router.add_get("/livez", self._health)
        app.router.add_get("/readyz", self._ready)
        app.router.add_get("/metrics", self._metrics)
        # kube-apiserver serves these through go-restful, which ignores a trailing slash (and
        # /apis/ is registered as such); /healthz/ and the like are 404s there, as here.
        for slash in ("", "/"):
            app.router.add_get("/version" + slash, self._version)
            app.router.add_get("/api" + slash, self.discovery.handle_api)
            app.router.add_get("/apis" + slash, self.discovery.handle_apis)
        app.router.add_get("/openapi/v2", self._openapi_v2)
        app.router.add_get("/openapi/v3", self._openapi_index)
        app.router.add_get("/openapi/v3/{path:.+}", self._openapi_document)
        app.router.add_route("*", "/{path:.*}", self._resource)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            return await handler(request)  # type: ignore[no-any-return]
        except StatusError as error:
            return codec.status_response(error)
        except web.HTTPException as http_error:
            if http_error.status == 404:
                return codec.status_response(path_not_found())
            if http_error.status == 413:
                return codec.status_response(StatusError(413, "RequestEntityTooLarge", "the request body is too large"))
            raise
        except Exception as error:  # a bug: answer with a Status and keep serving
            log.exception("internal error serving %s %s", request.method, request.path)
            return codec.status_response(internal_error(f"{type(error).__name__}: {error}"))

    error_middleware = _middleware  # where the audit log's outer middleware goes (apiserver/audit)

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok", content_type="text/plain")

    async def _ready(self, request: web.Request) -> web.Response:
        if not self.ready:
            return web.Response(text="not ready", status=500, content_type="text/plain")
        return web.Response(text="ok", content_type="text/plain")

    async def _metrics(self, request: web.Request) -> web.Response:
        return metrics.serve_metrics(request)

    async def _version(self, request: web.Request) -> web.Response:
        major, minor, _patch = KUBERNETES_VERSION.split(".")
        # kube-apiserver writes /version with WriteRawJSON: always indented, for every client.
        return web.Response(body=codec.go_json({
            "major": major, "minor": minor, "gitVersion": f"v{KUBERNETES_VERSION}",
            "gitCommit": f"pilothouse-{__version__}", "gitTreeState": "clean",
            "buildDate": "2026-01-01T00:00:00Z", "goVersion": f"python{platform.python_version()}",
            "compiler": "cpython", "platform": f"linux/{_arch()}",
        }, indent=True), content_type="application/json")

    async def _root_paths(self, request: web.Request) -> web.Response:
        """``GET /``: the paths this server serves (kube-apiserver's IndexLister, written with
        WriteRawJSON, so indented), for load balancers and people probing the root."""
        paths = ["/api", "/api/v1", "/apis", "/apis/", "/healthz", "/livez", "/metrics", "/openapi/v3",
                 "/readyz", "/version"]
        for group, versions in self.registry.group_versions().items():
            if group:
                paths += [f"/apis/{group}", *(f"/apis/{group}/{version}" for version in versions)]
        return web.Response(body=codec.go_json({"paths": sorted(paths)}, indent=True),
                            content_type="application/json")

    async def _openapi_v2(self, request: web.Request) -> web.Response:
        return await serve_openapi_v2(request, list(self.registry))

    async def _openapi_index(self, request: web.Request) -> web.Response:
        return codec.json_response(openapi.openapi_v3_index(list(self.registry)))

    async def _openapi_document(self, request: web.Request) -> web.Response:
        document = openapi.openapi_v3_document(request.match_info["path"], list(self.registry))
        if document is None:
            raise path_not_found()
        return codec.json_response(document)

    async def _resource(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        info = request.get(REQUEST_INFO) or parse_request_info(request.method, path, request.query)
        if not info.is_resource_request:
            return await self._group_discovery(request, info.group, info.version, path)
        if self.registry.by_plural(info.group, info.version, info.resource) is None and self._unserved_group(path):
            return codec.plain_not_found()
        return await self.rest.handle(request, info)

    def _unserved_group(self, path: str) -> bool:
        """A path outside every API group served here: kube-apiserver hands it down its delegation
        chain to Go's plain-text 404. (A served group's unknown version or resource is go-restful's
        JSON 404 instead.)"""
        parts = [p for p in path.split("/") if p]
        if parts[:1] == ["api"]:
            return False
        return parts[:1] != ["apis"] or len(parts) < 2 or parts[1] not in self.registry.group_versions()

    async def _group_discovery(self, request: web.Request, group: str, version: str, path: str) -> web.Response:
        parts = [p for p in path.strip("/").split("/") if p]
        if parts[:1] == ["api"] and len(parts) == 2:
            body = self.discovery.resource_list("", parts[1])
        elif parts[:1] == ["apis"] and len(parts) == 2:
            body = self.discovery.api_group(parts[1])
        elif parts[:1] == ["apis"] and len(parts) == 3:
            body = self.discovery.resource_list(parts[1], parts[2])
        else:
            body = None
        if body is None:
            if self._unserved_group(path):
                return codec.plain_not_found()
            raise path_not_found()
        return codec.json_response(body)


def _arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)
