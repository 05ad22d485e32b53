"""A watch-fed cache of one kind's objects, as kube-apiserver's admission plugins read informers.

Listing LimitRanges or ResourceQuotas from the store on every pod create would cost a store read
per write; instead one list-then-watch keeps them in memory. Until the first list has landed (or
while the watch is down) reads go to the store, so an answer is never older than the store's.
Writes this server makes itself (quota charges) are recorded at once with :meth:`observe`, so the
next request sees them before the watch event arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from pilothouse.apiserver.objects import decode_stored
from pilothouse.machinery.kinds.types import Object
from pilothouse.store.interface import EventType, Store

__all__ = ["WatchCache"]

log = logging.getLogger("pilothouse.apiserver.admission")


class WatchCache:
    """Objects under ``prefix`` (``/registry/core/limitranges/``), by store key."""

    def __init__(self, store: Store, prefix: str) -> None:
        self.store = store
        self.prefix = prefix
        #: key -> mod revision of what we know (deletions included): it only moves forward.
        self._revisions: dict[str, int] = {}
        #: namespace ("" for cluster-scoped kinds) -> key -> object: a pod create reads one bucket.
        self._buckets: dict[str, dict[str, Object]] = {}
        self._synced = False
        self._follower: asyncio.Task[None] | None = None

    @property
    def synced(self) -> bool:
        """Whether the first list has landed (and the watch is up)."""
        return self._synced

    def start(self) -> None:
        self._follower = asyncio.get_running_loop().create_task(self._follow(), name=f"cache {self.prefix}")

    async def close(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower

    def observe(self, obj: Object) -> None:
        """An object as just stored (its metadata carries the store revision)."""
        metadata = obj["metadata"]
        namespace = metadata.get("namespace")
        key = f"{self.prefix}{namespace}/{metadata['name']}" if namespace else f"{self.prefix}{metadata['name']}"
        self._record(key, int(metadata["resourceVersion"]), obj)

    def _reset(self) -> None:
        """Forget everything before a relist (the list replaces what the watch had delivered)."""
        self._revisions, self._buckets = {}, {}

    def _record(self, key: str, revision: int, obj: Object | None) -> None:
        if self._revisions.get(key, 0) > revision:
            return
        self._revisions[key] = revision
        namespace, _, _ = key[len(self.prefix):].rpartition("/")
        bucket = self._buckets.setdefault(namespace, {})
        if obj is None:
            bucket.pop(key, None)
        else:
            bucket[key] = obj

    async def _follow(self) -> None:
        while True:
            try:
                listed = await self.store.list(self.prefix)
                self._reset()
                for kv in listed.items:
                    self._record(kv.key, kv.mod_revision, decode_stored(kv))
                self._synced = True
                async for event in self.store.watch(self.prefix, listed.revision):
                    deleted = event.type is EventType.DELETE
                    self._record(event.kv.key, event.kv.mod_revision, None if deleted else decode_stored(event.kv))
            except asyncio.CancelledError:
                raise
            except Exception:  # compacted, the store down or closing: relist after a pause
                log.warning("admission cache %s: watch failed; relisting", self.prefix, exc_info=True)
            self._synced = False
            await asyncio.sleep(1.0)

    async def list(self, namespace: str = "") -> list[Object]:
        """The objects in ``namespace`` ("" for a cluster-scoped kind: all of them)."""
        if not self._synced:
            listed = await self.store.list(f"{self.prefix}{namespace}/" if namespace else self.prefix)
            return [decode_stored(kv) for kv in listed.items]
        if namespace:
            return list(self._buckets.get(namespace, {}).values())
        return [obj for bucket in self._buckets.values() for obj in bucket.values()]

    async def get(self, key: str) -> Object | None:
        """The object at ``key``; one the cache does not hold yet (created a moment ago, perhaps
        through another API server) is read from the store."""
        if self._synced:
            namespace, _, _ = key[len(self.prefix):].rpartition("/")
            cached = self._buckets.get(namespace, {}).get(key)
            if cached is not None:
                return cached
        kv = await self.store.get(key)
        return None if kv is None else decode_stored(kv)

    async def refresh(self, key: str) -> None:
        """Read ``key`` from the store again (after a write lost a compare-and-swap race)."""
        kv = await self.store.get(key)
        if kv is None:
            self._record(key, await self.store.current_revision(), None)
        else:
            self._record(key, kv.mod_revision, decode_stored(kv))
