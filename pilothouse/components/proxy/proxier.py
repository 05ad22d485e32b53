"""The service proxy at run time: informers on Services and EndpointSlices, and a sync loop that keeps
this node's nftables table equal to :func:`.rules.compute` of what they hold.

Like kube-proxy, it syncs only once both informers have listed (never programs a partial view), then
batches events: every change marks its Service dirty and wakes the loop; a sync recomputes the dirty
Services' rules only and sends the kernel the difference (:mod:`.sync`). A failed transaction makes
the next sync replace the whole table.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from pilothouse.client import errors
from pilothouse.client.informer import EventHandler, InformerFactory
from pilothouse.client.rest import APIClient, resource
from pilothouse.components.netkernel.conntrack import delete_entries
from pilothouse.components.netkernel.nft import Nft, NftError
from pilothouse.components.proxy.metrics import ProxyMetrics
from pilothouse.components.proxy.model import SERVICE_NAME_LABEL, endpoints_for, service_ports
from pilothouse.components.proxy.rules import FAMILY, ProxyConfig, ServiceRules, service_rules
from pilothouse.components.proxy.sync import plan

__all__ = ["ENDPOINTSLICES", "SERVICES", "Proxier", "SyncStats"]

log = logging.getLogger("pilothouse.proxy")

Object = dict[str, Any]
SERVICES = resource("", "v1", "services")
ENDPOINTSLICES = resource("discovery.k8s.io", "v1", "endpointslices")
_BY_SERVICE = "service"
#: how long a flushed chain waits before it is deleted (kube-proxy's one second, see sync.py)
_STALE_DELAY = 1.0


def _slice_service(endpoint_slice: Object) -> list[str]:
    metadata = endpoint_slice["metadata"]
    name = (metadata.get("labels") or {}).get(SERVICE_NAME_LABEL)
    return [f"{metadata.get('namespace', '')}/{name}"] if name else []


@dataclass
class SyncStats:
    syncs: int = 0
    failures: int = 0
    last_seconds: float = 0.0
    last_changed: int = 0  # Service ports rewritten by the last sync
    last_commands: int = 0
    #: monotonic time of the last successful sync, for waiters (tests, the benchmark)
    last_applied: float = 0.0
    history: list[float] = field(default_factory=list)
    #: Service (namespace/name) → monotonic time of the sync that applied its latest change
    applied: dict[str, float] = field(default_factory=dict)


class Proxier:
    def __init__(self, client: APIClient, config: ProxyConfig, *, nft: Nft | None = None,
                 netns: str | None = None, sync_warning_after: float = 10.0) -> None:
        self.client = client
        #: informers not synced after this long: find out why and say so
        self.sync_warning_after = sync_warning_after
        self.config = config
        self.netns = netns
        self.nft = nft or Nft(netns)
        self.factory = InformerFactory(client)
        self.services = self.factory.informer(SERVICES)
        self.slices = self.factory.informer(ENDPOINTSLICES)
        self.slices.add_indexer(_BY_SERVICE, _slice_service)
        self.metrics = ProxyMetrics()
        self.metrics.watch(self.services, self.slices)
        self.stats = SyncStats()
        self._per_service: dict[str, dict[str, ServiceRules]] = {}
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self._applied: dict[str, ServiceRules] | None = None
        self._stale: dict[tuple[str, str], float] = {}  # (kind, name) → when it was flushed
        self._task: asyncio.Task[None] | None = None
        self.synced = asyncio.Event()

    # ------------------------------------------------------------ running

    async def start(self) -> None:
        def service_key(obj: Object) -> str:
            return f"{obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}"

        def mark(keys: list[str]) -> None:
            self._dirty.update(keys)
            self._wake.set()

        self.services.add_handler(EventHandler.on_object(lambda o: mark([service_key(o)]),
                                                         lambda o: mark([service_key(o)])))
        self.slices.add_handler(EventHandler(lambda o: mark(_slice_service(o)),
                                             lambda old, new: mark(_slice_service(old) + _slice_service(new)),
                                             lambda o: mark(_slice_service(o))))
        self.factory.start()
        self._task = asyncio.create_task(self._loop(), name="proxy-sync")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.factory.stop()

    async def cleanup(self) -> None:
        """Remove this proxy's table (``pilothouse proxy --cleanup``, and tests)."""
        await self.nft.delete_table(FAMILY, self.config.table)

    async def _loop(self) -> None:
        while True:
            try:
                await self.factory.wait_synced(self.sync_warning_after)
                break
            except TimeoutError:
                await self._explain_unsynced()
        self._dirty.update(self._all_service_keys())
        backoff = 0.5
        while True:
            try:
                await self.sync()
                backoff = 0.5
            except asyncio.CancelledError:
                raise
            except Exception as error:  # nft refused, or a bug: never leave the node unsynced for good
                self.stats.failures += 1
                log.error("proxy sync failed (%s); replacing the whole table in %.1fs", error, backoff,
                          exc_info=not isinstance(error, (NftError, OSError)))
                self._applied = None
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            self._wake.clear()
            if self._dirty:
                continue
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), _STALE_DELAY if self._stale else None)

    async def _explain_unsynced(self) -> None:
        """The informers retry quietly; say why nothing is proxied yet when the server refuses (a
        node's identity may not list EndpointSlices under RBAC: kube-proxy has its own)."""
        for informer in (self.services, self.slices):
            if informer.synced.is_set():
                continue
            try:
                await self.client.list(informer.resource, limit=1)
            except errors.APIError as error:
                log.warning("the proxy cannot list %s yet (%s): no Service is proxied on this node; under RBAC "
                            "give it system:kube-proxy's credentials (--proxy-kubeconfig)", informer.resource.plural,
                            error)
            except errors.ConnectionFailed as error:
                log.warning("the proxy cannot reach the API server yet: %s", error)

    def _all_service_keys(self) -> set[str]:
        keys = {f"{o['metadata'].get('namespace', '')}/{o['metadata']['name']}" for o in self.services.list()}
        return keys | set(self._per_service)

    # -------------------------------------------------------------- sync

    def _recompute(self, key: str) -> None:
        service = self.services.get(key)
        if service is None:
            self._per_service.pop(key, None)
            return
        slices = self.slices.by_index(_BY_SERVICE, key)
        self._per_service[key] = {port.key: service_rules(port, endpoints_for(port, slices), self.config)
                                  for port in service_ports(service)}

    async def sync(self) -> None:
        started = time.perf_counter()
        full = self._applied is None
        dirty, self._dirty = self._dirty, set()
        try:
            for key in dirty:
                self._recompute(key)
        except Exception:
            self._dirty |= dirty
            raise
        desired = {port: rules for ports in self._per_service.values() for port, rules in ports.items()}
        if self._applied is None:
            # unknown kernel state (first sync, or after a failure): recompute everything once
            for key in self._all_service_keys():
                self._recompute(key)
            desired = {port: rules for ports in self._per_service.values() for port, rules in ports.items()}
        await self._delete_stale(desired)
        result = plan(self.config, self._applied, desired)
        try:
            await self.nft.apply(result.commands)
        except NftError:
            self._dirty |= dirty
            self.metrics.sync_failed()
            raise
        now = time.monotonic()
        if self._applied is None:
            self._stale.clear()
        self._applied = desired
        for name in result.stale_chains:
            self._stale[("chain", name)] = now
        for name in result.stale_sets:
            self._stale[("set", name)] = now
        stats = self.stats
        stats.syncs += 1
        stats.last_seconds = time.perf_counter() - started
        stats.last_changed = result.changed
        stats.last_commands = len(result.commands)
        stats.last_applied = now
        stats.history = [*stats.history[-999:], stats.last_seconds]
        for key in dirty:
            if key in self._per_service:
                stats.applied[key] = now
            else:
                stats.applied.pop(key, None)
        self.synced.set()
        self.metrics.synced(time.perf_counter() - started, full)
        log.debug("synced %d Service ports (%d commands) in %.1f ms", result.changed, len(result.commands),
                  stats.last_seconds * 1000)
        if result.conntrack:
            await delete_entries(result.conntrack, self.netns)

    async def _delete_stale(self, desired: dict[str, ServiceRules]) -> None:
        """Delete chains and sets flushed at least a second ago that nothing uses again; in a
        transaction of its own, so that a failure here never holds up the sync."""
        if not self._stale:
            return
        in_use = {("chain", n) for rules in desired.values() for n in rules.chains}
        in_use |= {("set", n) for rules in desired.values() for n in rules.affinity_sets}
        for item in in_use & self._stale.keys():
            del self._stale[item]
        due = sorted(item for item, since in self._stale.items() if time.monotonic() - since >= _STALE_DELAY)
        if not due:
            return
        commands = [{"delete": {kind: {"family": FAMILY, "table": self.config.table, "name": name}}}
                    for kind, name in due]
        try:
            await self.nft.apply(commands)
        except NftError as error:
            self.metrics.cleanup_failed()
            log.warning("could not delete %d stale chains and sets yet: %s", len(due), error)
            return
        for item in due:
            del self._stale[item]

    @property
    def pending(self) -> bool:
        """Changes seen that no sync has applied yet."""
        return bool(self._dirty)

    async def wait_applied(self, since: float, timeout: float = 10.0) -> None:
        """Wait for a sync that finished after monotonic time ``since`` (tests, the benchmark)."""
        deadline = time.monotonic() + timeout
        while self.stats.last_applied <= since or self._dirty:
            if time.monotonic() > deadline:
                raise TimeoutError("no proxy sync")
            await asyncio.sleep(0.005)
