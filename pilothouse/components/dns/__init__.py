"""Cluster DNS (the Kubernetes DNS specification, answered as CoreDNS answers it).

``ClusterDNS`` is the whole component: informers (``view``), the records of the cluster zone
(``records``, pure), upstream forwarding with a cache (``forward``) and the UDP/TCP server
(``server``). The node agent runs one on its pod bridge's gateway address (see
docs/decisions/cluster-dns.md for why one per node); ``pilothouse dns`` runs one alone.
"""

from __future__ import annotations

import asyncio
import logging

import dns.name

from pilothouse.client.informer import InformerFactory
from pilothouse.client.rest import APIClient
from pilothouse.components.dns.forward import Forwarder, host_nameservers
from pilothouse.components.dns.server import DNSServer
from pilothouse.components.dns.view import InformerView

__all__ = ["ClusterDNS"]

log = logging.getLogger("pilothouse.dns")


class ClusterDNS:
    def __init__(self, client: APIClient, *, domain: str = "cluster.local",
                 upstreams: list[tuple[str, int]] | None = None, factory: InformerFactory | None = None) -> None:
        self.factory = factory or InformerFactory(client)
        self._own_factory = factory is None
        self.view = InformerView(self.factory)
        if upstreams is None:
            # the host's resolvers, as ``forward . /etc/resolv.conf``; a loopback one (systemd-resolved's
            # 127.0.0.53) is fine here: this server runs in the host's network namespace
            upstreams = host_nameservers()
        self.forwarder = Forwarder(upstreams)
        self.server = DNSServer(self.view, self.forwarder, dns.name.from_text(domain.rstrip(".") + "."),
                                ready=lambda: self.view.synced)
        self.port = 0
        self._watchdog: asyncio.Task[None] | None = None

    async def start(self, host: str, port: int = 53) -> None:
        """Listen first (queries are SERVFAIL for cluster names until the informers have listed)."""
        self.port = await self.server.start(host, port)
        # never itself as an upstream (a host whose resolv.conf names the cluster DNS): a forwarding loop
        self.forwarder.upstreams = [u for u in self.forwarder.upstreams if u != (host, self.port)]
        if self._own_factory:
            self.factory.start()
        else:
            for informer in (self.view.services, self.view.endpoint_slices, self.view.namespaces):
                informer.start()
        log.info("cluster DNS on %s:%d for %s, upstream %s", host, self.port, self.server.zone,
                 self.forwarder.upstreams or "none")
        self._watchdog = asyncio.create_task(self._warn_unsynced(), name="dns-sync-watchdog")

    async def _warn_unsynced(self, after: float = 15.0) -> None:
        """Say so when the informers cannot list (most often: no RBAC for services, endpointslices or
        namespaces), since cluster names are SERVFAIL until they do."""
        try:
            await self.wait_synced(after)
        except TimeoutError:
            log.warning("cluster DNS: not synced with the API after %.0fs (list/watch of services, "
                        "endpointslices and namespaces allowed?); cluster names answer SERVFAIL", after)

    async def wait_synced(self, timeout: float | None = None) -> None:
        await asyncio.gather(*(i.wait_synced(timeout) for i in
                               (self.view.services, self.view.endpoint_slices, self.view.namespaces)))

    async def stop(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        await self.server.stop()
        if self._own_factory:
            await self.factory.stop()
