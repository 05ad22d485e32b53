"""The resource quota controller: keeps each ResourceQuota's ``status.hard`` and ``status.used``.

As pkg/controller/resourcequota: a quota is recounted when it is created or its ``spec.hard``
changes, when something it counts goes away (replenishment: a pod deleted or finished, a Service
deleted or retyped, any other counted object deleted), and on a periodic full resync. Like the
quota monitors of kube-controller-manager, an informer is started for each kind some quota counts
(``count/widgets.example.com`` included, found through discovery) the first time one does. The
count itself is ``machinery.quota.calculate_usage``, the same code the ResourceQuota admission
plugin charges with, so admission's optimistic charges and the recount agree. Until this
controller has written ``status.hard``, admission does not enforce the quota, as in Kubernetes.
"""

from __future__ import annotations

import asyncio
import contextlib

from pilothouse.client import errors
from pilothouse.client.informer import EventHandler, Informer
from pilothouse.client.rest import resource
from pilothouse.components.controllers.base import Controller, ControllerContext, split_key
from pilothouse.machinery import quota
from pilothouse.machinery.kinds import ResourceType
from pilothouse.machinery.kinds.types import Object

__all__ = ["ResourceQuotaController"]


RESOURCEQUOTAS = resource("", "v1", "resourcequotas")
PODS = resource("", "v1", "pods")
SERVICES = resource("", "v1", "services")

#: kube-controller-manager's --resource-quota-sync-period is 5 minutes; a shorter one here keeps
#: status close to the truth after admission charged for a create that then failed.
RESYNC_SECONDS = 30.0
SYNC_TIMEOUT = 30.0
_BY_NAMESPACE = "resourcequota-namespace"


def _namespace_of(obj: Object) -> list[str]:
    return [obj["metadata"].get("namespace", "")]


class ResourceQuotaController(Controller):
    name = "resourcequota"
    workers = 2

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.quotas: Informer = ctx.informers.informer(RESOURCEQUOTAS)
        self.quotas.add_handler(EventHandler(on_add=self.enqueue, on_update=self._quota_updated))
        # Replenishment: usage that went away is given back at once.
        self.pods: Informer = ctx.informers.informer(PODS)
        self.pods.add_handler(EventHandler(on_update=self._pod_updated, on_delete=self._released))
        self.services: Informer = ctx.informers.informer(SERVICES)
        self.services.add_handler(EventHandler(on_update=self._service_updated, on_delete=self._released))
        self._monitors: dict[tuple[str, str], Informer] = {("", "pods"): self.pods, ("", "services"): self.services}
        for informer in self._monitors.values():
            informer.add_indexer(_BY_NAMESPACE, _namespace_of)
        self._resync: asyncio.Task[None] | None = None

    def _quota_updated(self, old: Object, new: Object) -> None:
        status = new.get("status") or {}
        if (new.get("spec") or {}).get("hard") != status.get("hard") or \
                set(status.get("used") or {}) != set(status.get("hard") or {}):
            self.enqueue(new)

    def _released(self, obj: Object) -> None:
        namespace = obj["metadata"].get("namespace", "")
        for found in self.quotas.list():
            if found["metadata"].get("namespace") == namespace:
                self.enqueue(found)

    def _pod_updated(self, old: Object, new: Object) -> None:
        terminal = ("Succeeded", "Failed")
        phase, old_phase = (new.get("status") or {}).get("phase"), (old.get("status") or {}).get("phase")
        if phase in terminal and old_phase not in terminal:
            self._released(new)

    def _service_updated(self, old: Object, new: Object) -> None:
        if (old.get("spec") or {}).get("type") != (new.get("spec") or {}).get("type"):
            self._released(new)

    async def run(self) -> None:
        self._resync = asyncio.create_task(self._resync_all(), name="resourcequota-resync")
        try:
            await super().run()
        finally:
            self._resync.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._resync

    async def _resync_all(self) -> None:
        while True:
            await asyncio.sleep(RESYNC_SECONDS)
            for found in self.quotas.list():
                self.enqueue(found)

    async def _served(self, group: str, plural: str) -> ResourceType | None:
        """The resource as served now (its preferred version), None when the cluster has no such
        resource (a quota may name a custom resource before its definition exists)."""
        try:
            if group:
                discovered = await self.client.request("GET", f"/apis/{group}")
                version = discovered["preferredVersion"]["version"]
                listing = await self.client.request("GET", f"/apis/{group}/{version}")
            else:
                version, listing = "v1", await self.client.request("GET", "/api/v1")
        except errors.NotFoundError:
            return None
        if not any(found.get("name") == plural for found in listing.get("resources") or ()):
            return None
        return ResourceType(group, version, "", plural, True)  # named by URL: any kind can be counted

    async def _monitor(self, group: str, plural: str) -> Informer | None:
        informer = self._monitors.get((group, plural))
        if informer is None:
            target = await self._served(group, plural)
            if target is None:
                return None
            informer = self._monitors.get((group, plural))
            if informer is None:
                informer = self._monitors[(group, plural)] = self.ctx.informers.informer(target)
                informer.add_indexer(_BY_NAMESPACE, _namespace_of)
                informer.add_handler(EventHandler(on_delete=self._released))
                informer.start()
        await informer.wait_synced(SYNC_TIMEOUT)
        return informer

    async def _objects(self, group: str, plural: str, namespace: str) -> list[Object]:
        informer = await self._monitor(group, plural)
        return informer.by_index(_BY_NAMESPACE, namespace) if informer is not None else []

    async def sync(self, key: str) -> None:
        found = self.quotas.get(key)
        if found is None:
            return
        namespace, _ = split_key(key)
        hard = (found.get("spec") or {}).get("hard") or {}
        objects = {target: await self._objects(*target, namespace or "")
                   for target in quota.evaluated_resources(hard)}
        status = {"hard": hard, "used": quota.calculate_usage(found, objects)}
        if found.get("status") == status:
            return
        await self.client.update_status(RESOURCEQUOTAS, {**found, "status": status})
