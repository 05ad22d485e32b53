"""The service proxy at run time: informers on Services and EndpointSlices, and a sync loop that keeps
this node's nftables table equal to :func:`.rules.compute` of what they hold.

Like kube-proxy, it syncs only once both informers have listed (never programs a partial view), then
batches events: every change marks its Service dirty and wakes the loop; a sync recomputes the dirty
Services' rules only and sends the kernel the difference (:mod:`.sync`). A failed transaction makes
the next sync replace the whole table.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from pilothouse.client.informer import EventHandler, Informer
from pilothouse.client.rest import APIClient, resource
from pilothouse.components.netkernel.conntrack import delete_entries
from pilothouse.components.netkernel.nft import Nft, NftError
from pilothouse.components.proxy.healthcheck import HealthCheck, HealthCheckServer, health_check
from pilothouse.components.proxy.metrics import ProxyMetrics
from pilothouse.components.proxy.model import SERVICE_NAME_LABEL, endpoints_for, service_ports
from pilothouse.components.proxy.nodeaddresses import bind_addresses, resolve_primary
from pilothouse.components.proxy.rules import FAMILY, ProxyConfig, ServiceRules, service_rules
from pilothouse.components.proxy.sync import plan
from pilothouse.components.syncloop import LoopStats, SyncLoop
from pilothouse.machinery.meta import Object

__all__ = ["ENDPOINTSLICES", "SERVICES", "Proxier", "SyncStats"]

log = logging.getLogger("pilothouse.proxy")

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
class SyncStats(LoopStats):
    last_changed: int = 0  # Service ports rewritten by the last sync
    #: Service (namespace/name) → monotonic time of the sync that applied its latest change
    applied: dict[str, float] = field(default_factory=dict)


class Proxier(SyncLoop):
    what = "proxy"
    credentials_hint = "system:kube-proxy's, --proxy-kubeconfig"

    def __init__(self, client: APIClient, config: ProxyConfig, *, nft: Nft | None = None,
                 netns: str | None = None, sync_warning_after: float = 10.0) -> None:
        super().__init__(client, log, sync_warning_after=sync_warning_after, full_sync_period=config.sync_period,
                         min_sync_period=config.min_sync_period)
        self.config = config
        self.netns = netns
        self.nft = nft or Nft(netns)
        self.services = self.factory.informer(SERVICES)
        self.slices = self.factory.informer(ENDPOINTSLICES)
        self.slices.add_indexer(_BY_SERVICE, _slice_service)
        self.metrics = ProxyMetrics()
        self.metrics.watch(self.services, self.slices)
        self._stats = SyncStats()
        self._per_service: dict[str, dict[str, ServiceRules]] = {}
        self._dirty: set[str] = set()
        self._applied: dict[str, ServiceRules] | None = None
        self._stale: dict[tuple[str, str], float] = {}  # (kind, name) → when it was flushed
        self._replace = False  # the next sync replaces the table though _applied is known (full resync)
        #: Service key → its health-check node port, for LoadBalancer Services with a Local policy
        self._health: dict[str, HealthCheck] = {}
        self.health = HealthCheckServer(netns, lambda: self.healthy, lambda: bind_addresses(self.config, netns))

        def service_key(obj: Object) -> str:
            return f"{obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}"

        def mark(keys: list[str]) -> None:
            self._dirty.update(keys)
            self.wake()

        self.services.add_handler(EventHandler.on_object(lambda o: mark([service_key(o)]),
                                                         lambda o: mark([service_key(o)])))
        self.slices.add_handler(EventHandler(lambda o: mark(_slice_service(o)),
                                             lambda old, new: mark(_slice_service(old) + _slice_service(new)),
                                             lambda o: mark(_slice_service(o))))

    # ------------------------------------------------------------ the loop's parts

    @property
    def stats(self) -> SyncStats:
        return self._stats

    @property
    def pending(self) -> bool:
        return bool(self._dirty)

    def informers(self) -> list[Informer]:
        return [self.services, self.slices]

    def mark_all(self) -> None:
        self._dirty.update(self._all_service_keys())

    def forget_applied(self) -> None:
        self._applied = None

    def begin_full_sync(self) -> None:
        # the table is replaced whole, but what was applied is still known: the conntrack cleanup
        # compares with it, so a periodic resync cuts no UDP flow that nothing changed
        self._replace = True
        self.mark_all()

    def next_timer(self) -> float | None:
        # flushed chains wait a second before they are deleted (see sync.py)
        return _STALE_DELAY if self._stale else None

    async def before_start(self) -> None:
        # --nodeport-addresses primary: the node's IP, from its Node object (see nodeaddresses.py)
        self.config = await resolve_primary(self.client, self.config)

    async def stop(self) -> None:
        await super().stop()
        await self.health.close()

    async def cleanup(self) -> None:
        """Remove this proxy's table (``pilothouse proxy --cleanup``, and tests)."""
        await self.nft.delete_table(FAMILY, self.config.table)

    def _all_service_keys(self) -> set[str]:
        keys = {f"{o['metadata'].get('namespace', '')}/{o['metadata']['name']}" for o in self.services.list()}
        return keys | set(self._per_service)

    # -------------------------------------------------------------- sync

    def _recompute(self, key: str) -> None:
        service = self.services.get(key)
        if service is None:
            self._per_service.pop(key, None)
            self._health.pop(key, None)
            return
        slices = self.slices.by_index(_BY_SERVICE, key)
        ports = {port: endpoints_for(port, slices) for port in service_ports(service)}
        self._per_service[key] = {port.key: service_rules(port, endpoints, self.config)
                                  for port, endpoints in ports.items()}
        check = health_check(service, (e for endpoints in ports.values() for e in endpoints), self.config.node_name)
        if check is None:
            self._health.pop(key, None)
        else:
            self._health[key] = check

    async def sync(self) -> None:
        started = time.perf_counter()
        dirty, self._dirty = self._dirty, set()
        try:
            for key in dirty:
                self._recompute(key)
        except Exception:
            self._dirty |= dirty
            raise
        desired = {port: rules for ports in self._per_service.values() for port, rules in ports.items()}
        replace = self._applied is None or self._replace
        if replace:
            # unknown kernel state (first sync, after a failure) or a full resync: recompute everything
            for key in self._all_service_keys():
                self._recompute(key)
            desired = {port: rules for ports in self._per_service.values() for port, rules in ports.items()}
        await self._delete_stale(desired)
        result = plan(self.config, None if replace else self._applied, desired)
        if replace and self._applied is not None:
            result.conntrack = plan(self.config, self._applied, desired).conntrack
        try:
            await self.nft.apply(result.commands)
        except NftError:
            self._dirty |= dirty
            self.metrics.sync_failed()
            raise
        if replace:
            self._stale.clear()
            self._replace = False
        self._applied = desired
        stats = self.stats
        now = stats.record(started, len(result.commands))
        stats.last_changed = result.changed
        for name in result.stale_chains:
            self._stale[("chain", name)] = now
        for name in result.stale_sets:
            self._stale[("set", name)] = now
        for key in dirty:
            if key in self._per_service:
                stats.applied[key] = now
            else:
                stats.applied.pop(key, None)
        self.synced.set()
        self.metrics.synced(time.perf_counter() - started, replace)
        log.debug("synced %d Service ports (%d commands) in %.1f ms", result.changed, len(result.commands),
                  stats.last_seconds * 1000)
        if result.conntrack:
            await delete_entries(result.conntrack, self.netns)
        await self.health.update(self._health.values())

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
