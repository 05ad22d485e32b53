"""The garbage collector: deletes objects whose owners are gone, and runs foreground/orphan deletion.

As ``pkg/controller/garbagecollector`` (Kubernetes 1.32), simplified: the owner→dependents graph is
built from shared informers of every resource the server serves that can be listed, watched and
deleted (events aside, as ``ignoredResources``), found through discovery and looked up again every
:data:`RESYNC_SECONDS`, so custom resources added or removed at run time are followed (the
``GarbageCollector.Sync`` loop); the work queue holds object uids to examine ("attempt to delete"):

* an object none of whose owners exists any more (checked in the graph, then confirmed by a live GET,
  as the cache may lag) is deleted with Background propagation (Foreground when an owner waits for
  its dependents), precondition uid;
* an owner with the ``foregroundDeletion`` finalizer gets its dependents deleted; once no dependent
  blocks it (``blockOwnerDeletion``), the finalizer is removed and the API server removes the owner;
* an owner with the ``orphan`` finalizer has its ownerReference removed from every dependent, then the
  finalizer removed.

Dangling references next to a live owner are removed from the dependent, as Kubernetes does.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from pilothouse.client import errors
from pilothouse.client.discovery import ServerResources
from pilothouse.client.informer import EventHandler, Informer, object_key
from pilothouse.components.controllers.base import Controller, ControllerContext
from pilothouse.components.controllers.controllerref import patch_owner_refs, release_owner
from pilothouse.machinery.kinds import ResourceType
from pilothouse.machinery.meta import Object

__all__ = ["IGNORED", "RESYNC_SECONDS", "GarbageCollector"]


#: Resources never watched (garbagecollector's ``ignoredResources``): high churn, never owners.
IGNORED = frozenset({("", "events"), ("events.k8s.io", "events")})
#: How often the served resources are looked up again (kube-controller-manager: 30s).
RESYNC_SECONDS = 5.0
_VERBS = ("delete", "list", "watch")
_UNOBSERVED_RETRY_SECONDS = 2.0
FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"


@dataclass
class _Node:
    resource: ResourceType
    key: str
    owners: list[Object] = field(default_factory=list)


def _group_version(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    return group, version


class GarbageCollector(Controller):
    name = "garbage-collector"
    workers = 4

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.recorder = ctx.recorder("garbage-collector-controller")
        self.nodes: dict[str, _Node] = {}
        self.dependents: dict[str, set[str]] = {}
        self.absent: set[str] = set()  # owner uids confirmed gone: uids are never reused
        self.informers: dict[str, Informer] = {}
        self.discovery = ServerResources(ctx.client, RESYNC_SECONDS)
        self._resync: asyncio.Task[None] | None = None

    async def run(self) -> None:
        try:
            await self._sync_monitors(wait=True)
        except (errors.APIError, errors.ConnectionFailed) as error:
            self.log.warning("discovery failed: %s; the resync loop tries again", error)
        self._resync = asyncio.create_task(self._resync_loop(), name="garbage-collector-discovery")
        try:
            await super().run()
        finally:
            self._resync.cancel()

    async def stop(self) -> None:
        if self._resync is not None:
            self._resync.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._resync
        await super().stop()

    async def _resync_loop(self) -> None:
        while True:
            await asyncio.sleep(RESYNC_SECONDS)
            try:
                await self._sync_monitors()
            except (errors.APIError, errors.ConnectionFailed) as error:
                self.log.debug("discovery failed: %s", error)

    async def _sync_monitors(self, wait: bool = False) -> None:
        """Watch every deletable resource the server serves now; stop watching those it dropped."""
        wanted = {f"{r.plural}.{r.group}": r for r in await self.discovery.preferred(_VERBS, max_age=0)
                  if (r.group, r.plural) not in IGNORED}
        started = []
        for key, r in wanted.items():
            if key not in self.informers:
                self.informers[key] = self._monitor(r)
                started.append(self.informers[key])
        for key in [k for k in self.informers if k not in wanted]:
            await self.informers.pop(key).stop()
        if wait and started:
            # A kind whose list keeps failing must not hold the collector back for long.
            await asyncio.gather(*(i.wait_synced(10) for i in started), return_exceptions=True)

    def _monitor(self, r: ResourceType) -> Informer:
        informer = self.ctx.informers.informer(r)
        informer.add_handler(EventHandler(
            lambda obj: self._upsert(r, obj),
            lambda _old, new: self._upsert(r, new),
            lambda obj: self._removed(r, obj),
        ))
        informer.start()
        return informer

    # ------------------------------------------------------------------------------------ the graph

    def _upsert(self, r: ResourceType, obj: Object) -> None:
        metadata = obj["metadata"]
        uid = metadata.get("uid")
        if not uid:
            return
        owners = list(metadata.get("ownerReferences") or [])
        old = self.nodes.get(uid)
        if old is not None:
            for ref in old.owners:
                self.dependents.get(ref.get("uid", ""), set()).discard(uid)
        self.nodes[uid] = _Node(r, object_key(obj), owners)
        for ref in owners:
            self.dependents.setdefault(ref.get("uid", ""), set()).add(uid)
        finalizers = metadata.get("finalizers") or ()
        if owners or (metadata.get("deletionTimestamp") and (FOREGROUND in finalizers or ORPHAN in finalizers)):
            self.enqueue_key(uid)

    def _removed(self, r: ResourceType, obj: Object) -> None:
        metadata = obj["metadata"]
        uid = metadata.get("uid", "")
        node = self.nodes.pop(uid, None)
        self.absent.add(uid)
        if len(self.absent) > 100_000:
            self.absent.clear()
        for ref in (node.owners if node else metadata.get("ownerReferences") or ()):
            owner_uid = ref.get("uid", "")
            self.dependents.get(owner_uid, set()).discard(uid)
            if owner_uid in self.nodes:
                self.enqueue_key(owner_uid)  # a foreground owner may be waiting for this one
        for dependent in self.dependents.get(uid, set()):
            self.enqueue_key(dependent)

    def _object(self, uid: str) -> tuple[_Node, Object] | None:
        node = self.nodes.get(uid)
        if node is None:
            return None
        informer = self.informers.get(node.resource.plural + "." + node.resource.group)
        obj = informer.get(node.key) if informer is not None else None
        if obj is None or obj["metadata"].get("uid") != uid:
            return None
        return node, obj

    # ------------------------------------------------------------------------------------------ sync

    async def sync(self, key: str) -> None:
        found = self._object(key)
        if found is None:
            return
        node, obj = found
        metadata = obj["metadata"]
        finalizers = list(metadata.get("finalizers") or [])
        if metadata.get("deletionTimestamp"):
            if FOREGROUND in finalizers:
                await self._process_foreground(node, obj)
            elif ORPHAN in finalizers:
                await self._orphan_dependents(node, obj)
            return  # being deleted otherwise: nothing to add
        if node.owners:
            await self._attempt_to_delete(node, obj)

    async def _owner_state(self, namespace: str | None, ref: Object, dependent: str) -> str:
        """"solid", "waiting" (being deleted in the foreground) or "dangling"."""
        uid = ref.get("uid", "")
        if uid in self.absent:
            return "dangling"
        found = self._object(uid)
        if found is not None:
            owner = found[1]["metadata"]
            if owner.get("deletionTimestamp") and FOREGROUND in (owner.get("finalizers") or ()):
                return "waiting"
            return "solid"
        group, version = _group_version(ref.get("apiVersion", ""))
        r = self.discovery.by_kind(group, version, ref.get("kind", ""))
        if r is None:
            # Perhaps served since the last discovery (a new CRD): ask again before giving up.
            await self.discovery.all(max_age=1.0)
            r = self.discovery.by_kind(group, version, ref.get("kind", ""))
        # The owner is not in the graph (yet): a kind not watched yet (a new CRD) or not known at
        # all. Like the collector's virtual nodes, look again later until its informer has seen
        # it, so that its deletion is not missed; never delete on a guess.
        self.queue.add_after(dependent, _UNOBSERVED_RETRY_SECONDS)
        if r is None:
            return "solid"
        try:
            live = await self.client.get(r, ref.get("name", ""), namespace if r.namespaced else None)
        except errors.NotFoundError:
            self.absent.add(uid)
            return "dangling"
        if live["metadata"].get("uid") != uid:
            self.absent.add(uid)
            return "dangling"
        if live["metadata"].get("deletionTimestamp") and FOREGROUND in (live["metadata"].get("finalizers") or ()):
            return "waiting"
        return "solid"

    async def _attempt_to_delete(self, node: _Node, obj: Object) -> None:
        metadata = obj["metadata"]
        namespace = metadata.get("namespace")
        states = {ref.get("uid", ""): await self._owner_state(namespace, ref, metadata["uid"])
                  for ref in node.owners}
        if "solid" in states.values():
            dangling = {uid for uid, state in states.items() if state == "dangling"}
            waiting = {uid for uid, state in states.items() if state == "waiting"}
            if not dangling and not waiting:
                return
            refs = []
            for ref in metadata.get("ownerReferences") or []:
                if ref.get("uid") in dangling:
                    continue
                if ref.get("uid") in waiting and ref.get("blockOwnerDeletion"):
                    ref = {**ref, "blockOwnerDeletion": False}
                refs.append(ref)
            with contextlib.suppress(errors.NotFoundError):  # gone or replaced: its own events bring it back
                await patch_owner_refs(self.client, node.resource, obj, refs)
            return
        policy = "Background"
        if "waiting" in states.values() and self.dependents.get(metadata["uid"]):
            policy = "Foreground"
        self.log.info("deleting %s %s: owners gone", node.resource.kind, node.key)
        try:
            await self.client.delete(node.resource, metadata["name"], namespace, propagation_policy=policy,
                                     preconditions={"uid": metadata["uid"]})
        except (errors.NotFoundError, errors.ConflictError):
            pass

    async def _process_foreground(self, node: _Node, obj: Object) -> None:
        uid = obj["metadata"]["uid"]
        blocking = 0
        for dependent_uid in list(self.dependents.get(uid, ())):
            found = self._object(dependent_uid)
            if found is None:
                continue
            _dep_node, dep = found
            ref = next((r for r in dep["metadata"].get("ownerReferences") or () if r.get("uid") == uid), None)
            if ref is None:
                continue
            if ref.get("blockOwnerDeletion"):
                blocking += 1
            if not dep["metadata"].get("deletionTimestamp"):
                self.enqueue_key(dependent_uid)  # its owner now waits: _attempt_to_delete removes it
        if blocking == 0:
            await self._remove_finalizer(node.resource, obj, FOREGROUND)

    async def _orphan_dependents(self, node: _Node, obj: Object) -> None:
        uid = obj["metadata"]["uid"]
        for dependent_uid in list(self.dependents.get(uid, ())):
            found = self._object(dependent_uid)
            if found is None:
                continue
            dep_node, dep = found
            try:
                await release_owner(self.client, dep_node.resource, dep, uid)
            except errors.NotFoundError:
                pass  # gone, or replaced by another object of the same name: its own events bring it here
        await self._remove_finalizer(node.resource, obj, ORPHAN)

    async def _remove_finalizer(self, r: ResourceType, obj: Object, finalizer: str) -> None:
        metadata = obj["metadata"]
        finalizers = list(metadata.get("finalizers") or [])
        if finalizer not in finalizers:
            return
        index = finalizers.index(finalizer)
        ops = [{"op": "test", "path": "/metadata/uid", "value": metadata["uid"]},
               {"op": "test", "path": f"/metadata/finalizers/{index}", "value": finalizer},
               {"op": "remove", "path": f"/metadata/finalizers/{index}"}]
        try:
            await self.client.patch(r, metadata["name"], ops, metadata.get("namespace"), patch_type="json")
        except (errors.NotFoundError, errors.InvalidError):
            pass
