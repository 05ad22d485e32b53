"""The API server's own CustomResourceDefinition controller, as apiextensions-apiserver runs its own.

It follows every CRD in the store (a watch, so that each of several API servers over one etcd
picks up what another server wrote, and a server restarting serves what is stored) and, per CRD:

* decides its names (``NamingConditionController``): the requested names are accepted unless
  another CRD of the group already holds one of them, or a built-in resource of the group does;
  ``status.acceptedNames`` and the ``NamesAccepted`` condition say which;
* serves its versions (``crdHandler``): the custom resource rows of
  :func:`~pilothouse.machinery.kinds.custom.custom_resource_types` go into the live registry, which
  storages, discovery and OpenAPI follow; then ``Established`` turns True
  (``EstablishingController``);
* on deletion (``CRDFinalizer``): deletes every custom resource, waits until they are gone, removes
  the ``customresourcecleanup.apiextensions.k8s.io`` finalizer so that the CRD goes, and stops
  serving its resources.

Status writes go through the CRD storage's ``/status`` path and are no-ops when nothing changed, so
several servers converge on the same status without fighting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import orjson

from pilothouse.apiserver.objects import decode_stored
from pilothouse.apiserver.poststart import register_apiservice
from pilothouse.apiserver.registry import DeleteOptions, ListOptions, ResourceStorage, WriteContext
from pilothouse.machinery import meta
from pilothouse.machinery.errors import StatusError
from pilothouse.machinery.kinds import BUILTIN_RESOURCES, ResourceRegistry, ResourceType
from pilothouse.machinery.kinds.apiextensions import CLEANUP_FINALIZER, condition
from pilothouse.machinery.kinds.apiextensions import RESOURCES as _APIEXTENSIONS
from pilothouse.machinery.kinds.custom import custom_resource_types
from pilothouse.machinery.meta import Object
from pilothouse.store.interface import CompactedError, EventType, Store

__all__ = ["CRDController"]

log = logging.getLogger("pilothouse.apiserver.crds")


_PREFIX = _APIEXTENSIONS[0].key_prefix()  # the CustomResourceDefinition row
_RETRY_SECONDS = 0.5
_MANAGER = "pilothouse-apiextensions"
#: The name fields that must be unique within a group, with the condition reason of a clash.
_NAME_FIELDS = (("plural", "PluralConflict"), ("singular", "SingularConflict"), ("kind", "KindConflict"),
                ("listKind", "ListKindConflict"))


class CRDController:
    def __init__(self, store: Store, registry: ResourceRegistry,
                 storage_of: Callable[[str, str, str], ResourceStorage]) -> None:
        self.store = store
        self.registry = registry
        self._storage_of = storage_of
        self.crd_storage = storage_of("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        #: The group/versions whose APIService this server registered for CRDs.
        self._apiservices: set[tuple[str, str]] = set()
        #: CRD name -> the rows served for it now.
        self.served: dict[str, list[ResourceType]] = {}
        #: CRD name -> the latest stored object (None once deleted).
        self.crds: dict[str, Object] = {}
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._terminating: set[str] = set()  # CRDs served in their terminating form
        #: CRD name -> (what the rows were built from, the rows).
        self._built: dict[str, tuple[bytes, list[ResourceType]]] = {}
        self._pending: set[str] = set()  # names queued and not yet synced: each is queued once
        self._tasks: list[asyncio.Task[None]] = []

    # ---------------------------------------------------------------------------------- life cycle

    async def start(self) -> None:
        """Serve every stored CRD before returning (so a restarted server is ready with them), then
        follow changes."""
        revision = await self._relist()
        for name in sorted(self.crds):
            await self._sync_safely(name)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._follow(revision), name="crd-watch"),
                       loop.create_task(self._work(), name="crd-controller")]

    async def _relist(self) -> int:
        """Take in the stored CRDs (forgetting those gone meanwhile); returns the list's revision."""
        listing = await self.store.list(_PREFIX)
        present = {kv.key[len(_PREFIX):] for kv in listing.items}
        for name in [n for n in self.crds if n not in present]:
            self._observe(_PREFIX + name, None)
        for kv in listing.items:
            self._observe(kv.key, decode_stored(kv))
        return listing.revision

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _observe(self, key: str, obj: Object | None) -> None:
        name = key[len(_PREFIX):]
        before = self.crds.pop(name, None)
        if obj is not None:
            self.crds[name] = obj
        self._enqueue(name)
        # Names freed or taken in a group change what its other CRDs may have (the naming
        # controller requeues the whole group).
        groups = {(c.get("spec") or {}).get("group") for c in (before, obj) if c is not None}
        for other, crd in self.crds.items():
            if (crd.get("spec") or {}).get("group") in groups:
                self._enqueue(other)

    def _enqueue(self, name: str) -> None:
        if name not in self._pending:
            self._pending.add(name)
            self._queue.put_nowait(name)

    async def _follow(self, revision: int) -> None:
        while True:
            try:
                async for event in self.store.watch(_PREFIX, revision):
                    revision = event.revision
                    deleted = event.type is EventType.DELETE
                    self._observe(event.kv.key, None if deleted else decode_stored(event.kv))
            except asyncio.CancelledError:
                raise
            except CompactedError:
                pass  # fell behind: relist below
            except Exception:
                log.warning("CRD watch failed; retrying", exc_info=True)
                await asyncio.sleep(1.0)
            try:
                revision = await self._relist()
            except Exception:
                log.warning("CRD relist failed; retrying", exc_info=True)
                await asyncio.sleep(1.0)

    async def _work(self) -> None:
        while True:
            name = await self._queue.get()
            self._pending.discard(name)
            await self._sync_safely(name)

    async def _sync_safely(self, name: str) -> None:
        try:
            again = await self._sync(name)
            await self._sync_apiservices()
        except Exception:
            log.warning("syncing CustomResourceDefinition %s failed; retrying", name, exc_info=True)
            again = True
        if again:
            asyncio.get_running_loop().call_later(_RETRY_SECONDS, self._enqueue, name)

    # ---------------------------------------------------------------------------------------- sync

    async def _sync(self, name: str) -> bool:
        """Bring one CRD's serving and status in line; True to look again shortly."""
        crd = self.crds.get(name)
        if crd is None:
            self._serve(name, [])
            self._terminating.discard(name)
            return False
        if crd["metadata"].get("deletionTimestamp"):
            return await self._finalize(name, crd)
        accepted, names_condition = self._names(name, crd)
        desired = meta.clone(crd)
        status = desired.setdefault("status", {})
        if accepted:
            status["acceptedNames"] = meta.clone(crd["spec"]["names"])
            self._serve(name, self._rows(name, desired))
            established = _condition("Established", "True", "InitialNamesAccepted",
                                     "the initial names have been accepted")
        else:
            was = condition(crd, "Established")
            if was is not None and was.get("status") == "True":
                # Established once: it keeps serving under the names it was accepted with.
                established = was
                self._serve(name, self._rows(name, desired))
            else:
                established = _condition("Established", "False", "NotAccepted", "not all names are accepted")
                self._serve(name, [])
        _set_condition(status, names_condition)
        _set_condition(status, established)
        await self._write_status(name, status)
        return False

    def _names(self, name: str, crd: Object) -> tuple[bool, Object]:
        """Whether the requested names are free in the group (NamingConditionController)."""
        spec = crd["spec"]
        group, names = spec.get("group", ""), spec.get("names") or {}
        mine = _held(crd, crd)
        for other_name, other in sorted(self.crds.items()):
            if other_name == name or (other.get("spec") or {}).get("group") != group:
                continue
            held = _held(other, crd)
            taken = {held.get(field) for field, _ in _NAME_FIELDS} - {None, ""}
            # In the naming controller's order: plural, singular, short names, kind, list kind.
            for field, reason in _NAME_FIELDS[:2]:
                clash = self._clash(names.get(field), taken, mine.get(field), reason)
                if clash is not None:
                    return False, clash
            for short in sorted(set(names.get("shortNames") or ()) & set(held.get("shortNames") or ())
                                - set(mine.get("shortNames") or ())):
                return False, _condition("NamesAccepted", "False", "ShortNamesConflict",
                                         f'"{short}" is already in use')
            for field, reason in _NAME_FIELDS[2:]:
                clash = self._clash(names.get(field), taken, mine.get(field), reason)
                if clash is not None:
                    return False, clash
        for builtin in BUILTIN_RESOURCES:
            if builtin.group != group:
                continue
            if names.get("plural") == builtin.plural:
                return False, _condition("NamesAccepted", "False", "PluralConflict",
                                         f'"{builtin.plural}" is already in use')
            if names.get("kind") == builtin.kind:
                return False, _condition("NamesAccepted", "False", "KindConflict",
                                         f'"{builtin.kind}" is already in use')
        return True, _condition("NamesAccepted", "True", "NoConflicts", "no conflicts found")

    @staticmethod
    def _clash(value: Any, taken: set[Any], mine: Any, reason: str) -> Object | None:
        if value and value in taken and value != mine:
            return _condition("NamesAccepted", "False", reason, f'"{value}" is already in use')
        return None

    def _rows(self, name: str, crd: Object) -> list[ResourceType]:
        """The rows for ``crd``, rebuilt only when its spec (generation) or accepted names changed:
        a status write alone keeps storages as they are, and the rows' ``decorated_through`` at
        the resourceVersion where the schema last changed."""
        key = orjson.dumps([crd["metadata"].get("generation"), (crd.get("status") or {}).get("acceptedNames")])
        built = self._built.get(name)
        if built is None or built[0] != key:
            built = key, custom_resource_types(crd)
            self._built[name] = built
        return built[1]

    def _serve(self, name: str, rows: list[ResourceType]) -> None:
        """Make the registry serve exactly ``rows`` for this CRD."""
        if not rows:
            self._built.pop(name, None)
        if self.served.get(name) is rows:
            return
        before = self.served.pop(name, [])
        keys = {(r.group, r.version, r.plural) for r in rows}
        reorder = [(r.version, r.plural) for r in before] != [(r.version, r.plural) for r in rows]
        for row in before:
            # Versions changed: all go and come back in priority order, which discovery lists
            # (the first is the group's preferred version).
            if reorder or (row.group, row.version, row.plural) not in keys:
                self.registry.remove(row)
        for row in rows:
            self.registry.add(row)
        if rows:
            self.served[name] = rows

    async def _write_status(self, name: str, status: Object) -> None:
        async def mutate(current: Object) -> Object:
            wanted = meta.clone(status)
            for item in wanted.get("conditions") or ():
                old = condition(current, item["type"])
                if old is not None and old.get("status") == item["status"]:
                    item["lastTransitionTime"] = old.get("lastTransitionTime")
            wanted["storedVersions"] = (current.get("status") or {}).get("storedVersions", [])
            current["status"] = wanted
            return current

        try:
            await self.crd_storage.guaranteed_update(None, name, mutate, WriteContext(field_manager=_MANAGER),
                                                     subresource="status")
        except StatusError as error:
            if error.code != 404:
                raise

    async def _sync_apiservices(self) -> None:
        """A local APIService per group/version that CRDs serve (crdRegistrationController), gone
        when no CRD serves it any more; built-in group/versions keep their own."""
        builtin = {(r.group, r.version) for r in BUILTIN_RESOURCES}
        wanted = {(r.group, r.version) for rows in self.served.values() for r in rows} - builtin
        storage = self._storage_of("apiregistration.k8s.io", "v1", "apiservices")
        for group, version in sorted(wanted - self._apiservices):
            await register_apiservice(storage, {
                "apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
                "metadata": {"name": f"{version}.{group}",
                             "labels": {"kube-aggregator.kubernetes.io/automanaged": "true"}},
                # Low priorities, as CRDs get: versions sort kube-like within the group anyway.
                "spec": {"group": group, "version": version, "groupPriorityMinimum": 1000,
                         "versionPriority": 100},
            })
            self._apiservices.add((group, version))
        for group, version in sorted(self._apiservices - wanted):
            with contextlib.suppress(StatusError):
                await storage.delete(None, f"{version}.{group}", DeleteOptions(), WriteContext(field_manager=_MANAGER))
            self._apiservices.discard((group, version))

    # -------------------------------------------------------------------------------- finalizing

    async def _finalize(self, name: str, crd: Object) -> bool:
        """Delete the CRD's custom resources; when none is left, release the CRD."""
        finalizers = crd["metadata"].get("finalizers") or []
        if CLEANUP_FINALIZER not in finalizers:
            return False
        if name not in self._terminating:
            # Still served while it empties (also after a restart), but refusing creates.
            self._serve(name, [_terminating(r) for r in custom_resource_types(crd)])
            self._terminating.add(name)
        rows = self.served.get(name)
        if not rows:
            await self._release(name)
            return False
        storage = self._storage_of(rows[0].group, rows[0].version, rows[0].plural)
        items, _, _ = await storage.list(None, ListOptions())
        ctx = WriteContext(field_manager=_MANAGER)
        for item in items:
            metadata = item["metadata"]
            if metadata.get("deletionTimestamp"):
                continue
            with contextlib.suppress(StatusError):
                await storage.delete(metadata.get("namespace"), metadata["name"], DeleteOptions(), ctx)
        remaining, _, _ = await storage.list(None, ListOptions())
        status = meta.clone(crd.get("status") or {})
        if remaining:
            _set_condition(status, _condition("Terminating", "True", "InstanceDeletionInProgress",
                                              "CustomResource deletion is in progress"))
            await self._write_status(name, status)
            return True
        _set_condition(status, _condition("Terminating", "False", "InstanceDeletionCompleted",
                                          "removed all instances"))
        await self._write_status(name, status)
        await self._release(name)
        return False

    async def _release(self, name: str) -> None:
        async def mutate(current: Object) -> Object:
            current["metadata"]["finalizers"] = [f for f in current["metadata"].get("finalizers") or ()
                                                 if f != CLEANUP_FINALIZER]
            return current

        try:
            await self.crd_storage.guaranteed_update(None, name, mutate, WriteContext(field_manager=_MANAGER))
        except StatusError as error:
            if error.code != 404:
                raise


def _terminating(row: ResourceType) -> ResourceType:
    """The row of a CRD being deleted: reads, updates and deletes go on, creates are refused, as
    crdHandler answers while the Terminating condition holds."""
    def refuse(_obj: Object) -> None:
        raise StatusError(405, "MethodNotAllowed",
                          f'create is not supported on resources of kind "{row.qualified}"',
                          {"group": row.group, "kind": row.plural})

    return replace(row, strategy=replace(row.strategy, prepare_for_create=refuse))


def _held(other: Object, crd: Object) -> Object:
    """The names ``other`` holds against ``crd``: those it was accepted with; and, while it awaits
    its first decision, those it asks for if it is the older of the two (creation time, then name),
    so that two servers deciding at once agree on who wins."""
    accepted: Object = (other.get("status") or {}).get("acceptedNames") or {}
    if accepted.get("plural") or other is crd:
        return accepted
    mine = (crd["metadata"].get("creationTimestamp") or "", crd["metadata"].get("name", ""))
    theirs = (other["metadata"].get("creationTimestamp") or "", other["metadata"].get("name", ""))
    found = condition(other, "NamesAccepted")
    if theirs < mine and (found is None or found.get("status") != "False"):
        return dict((other.get("spec") or {}).get("names") or {})
    return {}


def _condition(kind: str, status: str, reason: str, message: str) -> Object:
    return {"type": kind, "status": status, "reason": reason, "message": message,
            "lastTransitionTime": meta.format_time()}


def _set_condition(status: Object, item: Object) -> None:
    conditions = [c for c in status.get("conditions") or () if c.get("type") != item["type"]]
    conditions.append(item)
    status["conditions"] = conditions
