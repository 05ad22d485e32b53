"""Health-check node ports (kube-proxy's pkg/proxy/healthcheck/service_health.go).

A LoadBalancer Service with ``externalTrafficPolicy: Local`` gets ``spec.healthCheckNodePort`` from
the API server; every node's proxy answers HTTP on it, 200 when the node has ready endpoints of the
Service and 503 when it has none, so the cloud's balancer sends traffic only to nodes that keep it
local. The body is kube-proxy's JSON, byte for byte.

Listeners are opened in the proxy's network namespace: a socket belongs to the namespace of the
thread that creates it, so a short-lived thread enters the namespace (``setns``), binds, and leaves
(Python 3.11 has no ``os.setns``; libc's is called through ctypes). They listen on the addresses
``addresses`` gives (the node's within ``--nodeport-addresses``, see nodeaddresses.py), 0.0.0.0 by
default, as kube-proxy's do.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from aiohttp import web

from pilothouse.components.proxy.model import Endpoint, service_ports

__all__ = ["HealthCheck", "HealthCheckServer", "health_check", "response_body"]

log = logging.getLogger("pilothouse.proxy")

Object = dict[str, object]
_CLONE_NEWNET = 0x40000000


@dataclass(frozen=True)
class HealthCheck:
    namespace: str
    name: str
    port: int
    local_endpoints: int


def health_check(service: dict[str, object], endpoints: Iterable[Endpoint], node: str) -> HealthCheck | None:
    """The health check ``service`` needs on ``node``: its port and the node's ready endpoints
    (distinct addresses, kube-proxy's LocalReadyEndpoints), or None."""
    spec = service.get("spec") or {}
    assert isinstance(spec, dict)
    port = spec.get("healthCheckNodePort")
    if spec.get("type") != "LoadBalancer" or spec.get("externalTrafficPolicy") != "Local" or not port:
        return None
    if not service_ports(service):
        return None
    metadata = service["metadata"]
    assert isinstance(metadata, dict)
    local = {e.ip for e in endpoints if e.node == node and e.ready}
    return HealthCheck(str(metadata.get("namespace", "")), str(metadata["name"]), int(str(port)), len(local))


def response_body(check: HealthCheck, healthy: bool) -> str:
    """kube-proxy's body: its Go template dedented (tabs) and trimmed of newlines."""
    # Go's %q on a namespace and a name (DNS labels: nothing to escape) and %v on a bool
    healthy_text = "true" if healthy else "false"
    return (f'{{\n\t"service": {{\n\t\t"namespace": "{check.namespace}",\n\t\t"name": "{check.name}"\n\t}},\n'
            f'\t"localEndpoints": {check.local_endpoints},\n\t"serviceProxyHealthy": {healthy_text}\n}}')


def _listen(addresses: list[str], port: int) -> list[socket.socket]:
    sockets: list[socket.socket] = []
    try:
        for address in addresses:
            sockets.append(socket.create_server((address, port)))
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


async def _everywhere() -> list[str]:
    return ["0.0.0.0"]


def _bound_sockets(addresses: list[str], port: int, netns: str | None) -> list[socket.socket]:
    """Listening TCP sockets on ``addresses`` at ``port`` in ``netns`` (None: ours); run in a thread
    of its own."""
    if netns is None:
        return _listen(addresses, port)
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/var/run/netns/{netns}", os.O_RDONLY)
    try:
        if libc.setns(target, _CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {netns}")
        try:
            return _listen(addresses, port)
        finally:
            if libc.setns(own, _CLONE_NEWNET) != 0:  # pragma: no cover - the thread is lost to netns
                raise OSError(ctypes.get_errno(), "setns back")
    finally:
        os.close(own)
        os.close(target)


class HealthCheckServer:
    """The listeners for the node's health checks, kept equal to the Services' by :meth:`update`."""

    def __init__(self, netns: str | None = None, healthy: Callable[[], bool] = lambda: True,
                 addresses: Callable[[], Awaitable[list[str]]] = _everywhere) -> None:
        self.netns = netns
        #: the addresses to listen on, asked whenever a port opens
        self.addresses = addresses
        self.checks: dict[int, HealthCheck] = {}
        #: whether the proxy's last sync succeeded, asked at each request (kube-proxy's healthz)
        self.healthy = healthy
        self._runners: dict[int, web.AppRunner] = {}
        self._unbound_warned = False

    def _handler(self, port: int) -> web.RouteTableDef:
        routes = web.RouteTableDef()

        @routes.route("*", "/{tail:.*}")
        async def answer(_: web.Request) -> web.Response:
            check = self.checks.get(port)
            if check is None:
                raise web.HTTPNotFound()
            healthy = self.healthy()
            ok = check.local_endpoints > 0 and healthy
            return web.Response(status=200 if ok else 503, text=response_body(check, healthy),
                                content_type="application/json", headers={"X-Content-Type-Options": "nosniff"})

        return routes

    async def update(self, checks: Iterable[HealthCheck]) -> None:
        """Serve exactly ``checks``: open new ports, close gone ones, refresh the counts. A port that
        cannot be bound is logged and retried on the next update, as kube-proxy does."""
        wanted = {check.port: check for check in checks}
        self.checks = wanted
        for port in set(self._runners) - set(wanted):
            await self._runners.pop(port).cleanup()
        opening = set(wanted) - set(self._runners)
        addresses = await self.addresses() if opening else []
        if opening and not addresses:
            if not self._unbound_warned:  # once, not at every sync
                log.warning("no node address within --nodeport-addresses: health check node ports are not served")
                self._unbound_warned = True
            return
        for port in opening:
            try:
                sockets = await asyncio.to_thread(_bound_sockets, addresses, port, self.netns)
            except OSError as error:
                log.error("cannot open health check node port %d for %s/%s: %s", port, wanted[port].namespace,
                          wanted[port].name, error)
                continue
            app = web.Application()
            app.add_routes(self._handler(port))
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            for sock in sockets:
                await web.SockSite(runner, sock).start()
            self._runners[port] = runner

    @property
    def ports(self) -> set[int]:
        return set(self._runners)

    async def close(self) -> None:
        await self.update([])
