"""The namespace controller: empties a namespace being deleted, then lets it go.

As ``pkg/controller/namespace/deletion/namespaced_resources_deleter.go`` (Kubernetes 1.32): a
Namespace with a deletionTimestamp turns ``Terminating``; every namespaced resource the server
serves is deleted in it (a collection delete where served, else one by one); while anything remains
the namespace carries ``NamespaceContentRemaining`` (and ``NamespaceDeletionContentFailure`` when a
delete failed) and is looked at again; once empty, ``PUT .../finalize`` removes the ``kubernetes``
finalizer from ``spec.finalizers`` and the API server removes the Namespace.

Where the API server does not serve ``/finalize``, an ordinary update emptying ``spec.finalizers`` is
used; where it removes a Namespace at once (no Terminating phase), the contents left behind are
deleted when the Namespace's removal is seen (confirmed by a live GET).
"""

from __future__ import annotations

from pilothouse.client import errors
from pilothouse.client.discovery import ServerResources
from pilothouse.client.informer import EventHandler, Informer
from pilothouse.client.rest import resource
from pilothouse.components.controllers.base import Controller, ControllerContext
from pilothouse.machinery import meta
from pilothouse.machinery.kinds import ResourceType
from pilothouse.machinery.meta import Object

__all__ = ["NAMESPACES", "NamespaceController", "namespaced_resources"]


NAMESPACES = resource("", "v1", "namespaces")
FINALIZER = "kubernetes"
_RETRY_SECONDS = 1.0
_DISCOVERY_SECONDS = 2.0


async def namespaced_resources(discovery: ServerResources) -> list[ResourceType]:
    """Every namespaced resource the server serves that can be listed and deleted, one version per
    resource (the deleter's ``ServerPreferredNamespacedResources``), custom resources included."""
    return [r for r in await discovery.preferred(("delete", "list")) if r.namespaced]


class NamespaceController(Controller):
    name = "namespace"
    workers = 2

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.recorder = ctx.recorder("namespace-controller")
        self.ns_informer: Informer = ctx.informers.informer(NAMESPACES)
        self.ns_informer.add_handler(EventHandler.on_object(self._changed, self._removed))
        # Looked up again at most every few seconds: custom resources come and go.
        self.discovery = ServerResources(ctx.client, max_age=_DISCOVERY_SECONDS)
        self._collection_unsupported: set[str] = set()

    def _changed(self, ns: Object) -> None:
        if ns["metadata"].get("deletionTimestamp"):
            self.enqueue(ns)

    def _removed(self, ns: Object) -> None:
        self.enqueue(ns)

    async def sync(self, key: str) -> None:
        ns = self.ns_informer.get(key)
        if ns is None:
            await self._sync_removed(key)
            return
        if not ns["metadata"].get("deletionTimestamp"):
            return
        ns = {**ns, "apiVersion": "v1", "kind": "Namespace"}
        if (ns.get("status") or {}).get("phase") != "Terminating":
            ns = await self._set_status(ns, "Terminating", [])
        remaining, failures = await self._delete_content(key)
        if remaining or failures:
            conditions = [_condition("NamespaceContentRemaining", bool(remaining), "SomeResourcesRemain",
                                     "Some resources are remaining: " + ", ".join(
                                         f"{plural} has {count} resource instances"
                                         for plural, count in sorted(remaining.items()))),
                          _condition("NamespaceDeletionContentFailure", bool(failures), "ContentDeletionFailed",
                                     "; ".join(failures))]
            await self._set_status(ns, "Terminating", conditions)
            self.queue.add_after(key, _RETRY_SECONDS)
            return
        await self._finalize(ns)

    async def _sync_removed(self, name: str) -> None:
        """The Namespace is gone already: make sure nothing was left inside it."""
        try:
            await self.client.get(NAMESPACES, name)
            return  # it exists again (re-created): not ours to empty
        except errors.NotFoundError:
            pass
        remaining, _ = await self._delete_content(name)
        if remaining:
            self.queue.add_after(name, _RETRY_SECONDS)

    async def _delete_content(self, namespace: str) -> tuple[dict[str, int], list[str]]:
        """Delete everything namespaced in ``namespace``; returns what is still there, and errors."""
        remaining: dict[str, int] = {}
        failures: list[str] = []
        for r in await namespaced_resources(self.discovery):
            try:
                items, _ = await self.client.list_all(r, namespace)
            except errors.APIError as error:
                if error.code in (404, 405):
                    continue
                failures.append(f"{r.qualified}: {error.message}")
                continue
            if not items:
                continue
            for item in items:
                metadata = item["metadata"]
                if metadata.get("deletionTimestamp"):
                    continue
                try:
                    # Background, as Kubernetes' namespaced resources deleter asks: a kind whose
                    # default is to orphan (v1 RCs) must not wait on the garbage collector here.
                    await self.client.delete(r, metadata["name"], namespace, propagation_policy="Background",
                                             preconditions={"uid": metadata["uid"]})
                except (errors.NotFoundError, errors.ConflictError):
                    continue
                except errors.APIError as error:
                    failures.append(f"{r.qualified} {metadata['name']}: {error.message}")
            try:
                left, _ = await self.client.list_all(r, namespace)
            except errors.APIError:
                left = items
            if left:
                remaining[r.qualified] = len(left)
        return remaining, failures

    async def _set_status(self, ns: Object, phase: str, conditions: list[Object]) -> Object:
        status = {**(ns.get("status") or {}), "phase": phase}
        old = {c.get("type"): c for c in (ns.get("status") or {}).get("conditions") or ()}
        merged = []
        for condition in conditions:
            previous = old.get(condition["type"])
            if previous is not None and previous.get("status") == condition["status"]:
                condition = {**condition, "lastTransitionTime": previous.get("lastTransitionTime")}
            merged.append(condition)
        if merged:
            status["conditions"] = merged
        if status == ns.get("status"):
            return ns
        try:
            return await self.client.update_status(NAMESPACES, {**ns, "status": status})
        except errors.ConflictError:
            fresh = await self.client.get(NAMESPACES, ns["metadata"]["name"])
            return await self.client.update_status(NAMESPACES, {**fresh, "status": status})

    async def _finalize(self, ns: Object) -> None:
        finalizers = [f for f in (ns.get("spec") or {}).get("finalizers") or () if f != FINALIZER]
        body = {**ns, "spec": {**(ns.get("spec") or {}), "finalizers": finalizers}}
        name = ns["metadata"]["name"]
        try:
            await self.client.update(NAMESPACES, body, subresource="finalize")
            return
        except errors.NotFoundError as error:
            if errors.names(error, "namespaces", name):
                return  # the Namespace itself is gone (not the /finalize path)
        # No /finalize on this server: an ordinary update of spec.finalizers.
        try:
            await self.client.update(NAMESPACES, body)
        except errors.NotFoundError:
            return
        self.log.debug("namespace %s finalized through an update (no /finalize)", name)


def _condition(kind: str, true: bool, reason: str, message: str) -> Object:
    if not true:
        return {"type": kind, "status": "False", "reason": "ContentDeleted" if "Content" in kind
                else "ResourcesDeleted", "message": "All content successfully deleted",
                "lastTransitionTime": meta.format_time()}
    return {"type": kind, "status": "True", "reason": reason, "message": message,
            "lastTransitionTime": meta.format_time()}
