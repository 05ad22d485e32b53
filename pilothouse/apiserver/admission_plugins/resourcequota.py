"""ResourceQuota: charge each create against the namespace's quotas, or refuse it with a 403.

As kube-apiserver's quota admission, the charge is written into the quotas' ``status.used``
before the object is stored (the resource quota controller recounts later), by compare-and-swap
on the quota's revision: a write that lost a race with another API server or the controller
reads the quota again and charges anew. Within this server, charges in one namespace are
serialised by a lock, so concurrent creates each see the usage the one before them left.
A dry run is checked but charges nothing.
"""

from __future__ import annotations

import asyncio
import weakref

from pilothouse.apiserver.admission_plugins import Attributes, Plugin
from pilothouse.apiserver.admission_plugins.cache import WatchCache
from pilothouse.apiserver.objects import decode_stored, encode_for_store
from pilothouse.machinery import meta, quota
from pilothouse.machinery.errors import conflict
from pilothouse.machinery.kinds.types import Object
from pilothouse.store.interface import ConflictError, KeyNotFoundError, Store

__all__ = ["ResourceQuota"]


_PREFIX = "/registry/core/resourcequotas/"
# Kinds whose usage can grow on update (a Service turned NodePort, a claim resized); other
# evaluators handle creates only.
_UPDATES_CHARGED = (("", "services"), ("", "persistentvolumeclaims"))
_ATTEMPTS = 8


class ResourceQuota(Plugin):
    name = "ResourceQuota"

    def __init__(self, store: Store) -> None:
        self.store = store
        self.quotas = WatchCache(store, _PREFIX)
        self.caches = (self.quotas,)
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def _handles(self, attrs: Attributes) -> bool:
        if attrs.subresource or not attrs.resource.namespaced or not attrs.namespace:
            return False
        return attrs.operation == "CREATE" or (
            attrs.operation == "UPDATE" and (attrs.resource.group, attrs.resource.plural) in _UPDATES_CHARGED)

    async def validate(self, attrs: Attributes) -> None:
        if not self._handles(attrs) or not await self.quotas.list(attrs.namespace):
            return
        lock = self._locks.get(attrs.namespace)
        if lock is None:
            lock = self._locks[attrs.namespace] = asyncio.Lock()
        async with lock:
            for _ in range(_ATTEMPTS):
                quotas = await self.quotas.list(attrs.namespace)
                charged = quota.charge(quotas, attrs.resource.group, attrs.resource.plural, attrs.obj, attrs.old)
                if not charged or attrs.dry_run or await self._write(quotas, charged):
                    return
        raise conflict("resourcequotas", "", attrs.namespace, "the quota usage could not be updated; "
                       "please try again")

    async def _write(self, quotas: list[Object], charged: dict[str, quota.ResourceList]) -> bool:
        """Store the new usage of each charged quota; False when one had moved on (retry)."""
        for current in quotas:
            name = current["metadata"]["name"]
            if name not in charged:
                continue
            updated: Object = meta.clone(current)
            updated.setdefault("status", {})["used"] = charged[name]
            key = f"{_PREFIX}{current['metadata']['namespace']}/{name}"
            try:
                kv = await self.store.update(key, encode_for_store(updated),
                                             expected_mod_revision=int(current["metadata"]["resourceVersion"]))
            except (ConflictError, KeyNotFoundError):
                await self.quotas.refresh(key)
                return False
            self.quotas.observe(decode_stored(kv))
        return True
