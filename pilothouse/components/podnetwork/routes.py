"""Keeps one host's routes to the other Nodes' pod ranges level with the Nodes (run by the agent, or
alone as ``pilothouse pod-routes``): every Node change, and a resync every ``resync`` seconds (which
repairs what someone else removed), recomputes the :func:`~.plan.plan` and applies the difference."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from pilothouse.client.informer import EventHandler, InformerFactory
from pilothouse.client.rest import APIClient, resource
from pilothouse.components.netkernel.iproute import IPRouteError
from pilothouse.components.podnetwork.kernel import Kernel
from pilothouse.components.podnetwork.plan import Peer, peers_of, plan
from pilothouse.machinery.meta import Object

__all__ = ["PodRoutes"]

log = logging.getLogger("pilothouse.podnetwork")


NODES = resource("", "v1", "nodes")


class PodRoutes:
    def __init__(self, client: APIClient, node_name: str, *, backend: str = "auto", kernel: Kernel | None = None,
                 factory: InformerFactory | None = None, resync: float = 30.0, address: str = "") -> None:
        self.node_name = node_name
        #: this host's address when it is no Node (an API server's host without an agent): routes from
        #: there to every Node's range, as flannel on a host with no pods of its own
        self.outside = Peer(node_name, f"{address}/32", address) if address else None
        self.backend = backend
        self.kernel = kernel or Kernel()
        self.resync = resync
        self._own_factory = factory is None
        self.factory = factory or InformerFactory(client)
        self.nodes = self.factory.informer(NODES)
        self.nodes.add_handler(EventHandler.on_object(self._changed, self._deleted))
        self._dirty = asyncio.Event()
        #: node name -> its (range, address) last seen: a heartbeat (a status update) changes neither
        self._seen: dict[str, Peer | None] = {}
        self._on_link: dict[str, bool] = {}  # peer address -> on a shared subnet (cleared at each resync)
        self._task: asyncio.Task[None] | None = None
        #: set after each successful sync (tests and the agent's start-up wait on it)
        self.synced = asyncio.Event()

    def _changed(self, node: Object) -> None:
        found = peers_of([node])
        peer = found[0] if found else None
        if self._seen.get(node["metadata"]["name"], False) != peer:
            self._seen[node["metadata"]["name"]] = peer
            self._dirty.set()

    def _deleted(self, node: Object) -> None:
        self._seen.pop(node["metadata"]["name"], None)
        self._dirty.set()

    async def start(self) -> None:
        if self._own_factory:
            self.factory.start()
        await self.nodes.wait_synced()
        self._dirty.set()
        self._task = asyncio.create_task(self._loop(), name="pod-routes")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._own_factory:
            await self.factory.stop()

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._dirty.wait(), self.resync)
            if not self._dirty.is_set():
                self._on_link.clear()  # the periodic resync: the host's addresses may have changed
            self._dirty.clear()
            try:
                await self.sync()
            except (IPRouteError, OSError) as error:
                log.warning("pod routes: %s; retrying", error)
                await asyncio.sleep(1.0)
                self._dirty.set()

    async def sync(self) -> None:
        peers = peers_of(self.nodes.list())
        own = next((peer for peer in peers if peer.name == self.node_name), None) or self.outside
        if own is None:
            return  # no range or no address yet: nothing to route from
        for peer in peers:
            if peer.address not in self._on_link:
                self._on_link[peer.address] = await self.kernel.on_link(peer.address)
        await self.kernel.apply(plan(own, peers, self._on_link.__getitem__, backend=self.backend,
                                     device=self.kernel.device), own.address)
        self.synced.set()
