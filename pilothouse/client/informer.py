"""Shared informers: one list+watch per resource, a local cache, indexes, and event handlers.

What client-go's ``SharedIndexInformer`` does, in asyncio: list (paging), fill the cache, then watch
from the list's resourceVersion with bookmarks; when the watch ends, resume from the last seen
version; on 410 Expired, relist and emit the differences. Handlers are plain functions that must be
quick (controllers only enqueue keys in them); reads come from the cache, never from the server.

A transform (client-go's ``TransformFunc``, ``SharedIndexInformer.SetTransform`` and the factory's
``WithTransform``) rewrites every object the informer receives, listed or watched, before it is cached
or handed to a handler: :func:`strip_managed_fields` is the one the scheduler and the controller manager
use, as ``cache.TransformStripManagedFields`` in kube-scheduler and kube-controller-manager.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pilothouse.client import errors
from pilothouse.client.rest import APIClient
from pilothouse.machinery.kinds import ResourceType
from pilothouse.machinery.meta import Object

__all__ = ["EventHandler", "Informer", "InformerFactory", "Transform", "object_key", "share_strings",
           "strip_managed_fields", "trim_for_cache"]

log = logging.getLogger("pilothouse.client.informer")

IndexFunc = Callable[[Object], builtins.list[str]]
#: Rewrites an object on its way into the cache; it may change the object it is given and must keep
#: its name, namespace and resourceVersion (the cache's key and its change detection).
Transform = Callable[[Object], Object]


def strip_managed_fields(obj: Object) -> Object:
    """``metadata.managedFields`` dropped: no controller reads them, and they are the largest part
    of a cached pod. client-go's ``TransformStripManagedFields`` (tools/cache), which
    kube-controller-manager sets on its informer factories (``CreateControllerContext``,
    cmd/kube-controller-manager/app/controllermanager.go) and kube-scheduler on its pod informer
    (``newPodInformer``, pkg/scheduler/scheduler.go). A write of an object read from such a cache
    has no managedFields in its body, which the API server reads as "keep the stored ones"
    (fieldmanager's ``decodeManagedFields``)."""
    metadata = obj.get("metadata")
    if isinstance(metadata, dict):
        metadata.pop("managedFields", None)
    return obj


#: Longer strings are rarely repeated (annotations, certificates, messages): not worth a lookup.
SHARED_STRING_MAX = 100


def share_strings(obj: Object) -> Object:
    """Every short string value of ``obj`` replaced by the one equal string the process shares
    (``sys.intern``). A pod decoded from JSON has its own copy of each label value, image, node
    name, condition type and status, the same in thousands of pods: about 3.9 KB of a 13 KB cached
    pod of density's shape (bench/informer_memory.py). The values are equal before and after, so no
    reader can tell; dict keys are shared already (orjson caches them), and an interned string is
    freed with its last user. Go's client-go has no such step: its decoder's strings are not Python
    objects of 50 bytes' overhead each."""
    _share(obj)
    return obj


def _share(value: dict[str, Any] | builtins.list[Any]) -> None:
    pairs = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in pairs:  # replacing a value (no insertion) is safe while iterating
        kind = type(item)
        if kind is str:
            if len(item) <= SHARED_STRING_MAX:
                value[key] = sys.intern(item)  # type: ignore[index]
        elif kind is dict or kind is list:
            _share(item)


def trim_for_cache(obj: Object) -> Object:
    """The scheduler's and the controller manager's transform: managedFields stripped (as upstream),
    then the strings shared."""
    return share_strings(strip_managed_fields(obj))


def object_key(obj: Object) -> str:
    """``namespace/name`` for namespaced objects, ``name`` otherwise (client-go's MetaNamespaceKey)."""
    metadata = obj["metadata"]
    namespace = metadata.get("namespace")
    return f"{namespace}/{metadata['name']}" if namespace else str(metadata["name"])


@dataclass
class EventHandler:
    on_add: Callable[[Object], None] | None = None
    on_update: Callable[[Object, Object], None] | None = None
    on_delete: Callable[[Object], None] | None = None

    @classmethod
    def on_object(cls, changed: Callable[[Object], None],
                  deleted: Callable[[Object], None] | None = None) -> EventHandler:
        """``changed(obj)`` on add and on update (with the new object), ``deleted(obj)`` on delete:
        what a level-triggered controller usually wants."""
        return cls(changed, lambda _old, new: changed(new), deleted)


class Informer:
    def __init__(self, client: APIClient, resource: ResourceType, *, namespace: str | None = None,
                 label_selector: str | None = None, field_selector: str | None = None,
                 watch_timeout: int = 300, transform: Transform | None = None) -> None:
        self.client = client
        self.transform = transform
        self.resource = resource
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.watch_timeout = watch_timeout
        self.cache: dict[str, Object] = {}
        self.synced = asyncio.Event()
        self.resource_version = "0"
        self._handlers: builtins.list[EventHandler] = []
        self._indexers: dict[str, IndexFunc] = {}
        self._indices: dict[str, dict[str, set[str]]] = {}
        self._task: asyncio.Task[None] | None = None
        #: Exceptions raised by handlers (each logged; client-go's HandleError).
        self.handler_errors = 0

    # ------------------------------------------------------------ cache API

    def add_handler(self, handler: EventHandler) -> None:
        self._handlers.append(handler)
        if self.synced.is_set() and handler.on_add:
            for obj in list(self.cache.values()):
                self._call(handler.on_add, obj)

    def add_indexer(self, name: str, func: IndexFunc) -> None:
        self._indexers[name] = func
        index: dict[str, set[str]] = {}
        for key, obj in self.cache.items():
            for value in func(obj):
                index.setdefault(value, set()).add(key)
        self._indices[name] = index

    def get(self, key: str) -> Object | None:
        return self.cache.get(key)

    def list(self) -> builtins.list[Object]:
        return list(self.cache.values())

    def by_index(self, name: str, value: str) -> builtins.list[Object]:
        keys = self._indices.get(name, {}).get(value, ())
        return [self.cache[k] for k in keys if k in self.cache]

    # -------------------------------------------------------------- running

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"informer-{self.resource.plural}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    async def wait_synced(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self.synced.wait(), timeout)

    async def _run(self) -> None:
        backoff = 0.2
        need_list = True
        while True:
            try:
                if need_list:
                    await self._relist()
                    need_list = False
                await self._watch()
                backoff = 0.2
            except errors.GoneError:
                need_list = True
            except (errors.ConnectionFailed, errors.APIError) as error:
                log.debug("informer %s: %s; retrying in %.1fs", self.resource.plural, error, backoff)
                await asyncio.sleep(backoff * random.uniform(0.8, 1.2))
                backoff = min(backoff * 2, 10.0)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug here (handlers are isolated in _call) must not kill the informer
                log.exception("informer %s failed; relisting", self.resource.plural)
                need_list = True
                await asyncio.sleep(backoff)

    async def _relist(self) -> None:
        items, revision = await self.client.list_all(self.resource, self.namespace,
                                                     label_selector=self.label_selector,
                                                     field_selector=self.field_selector, transform=self.transform)
        fresh = {object_key(obj): obj for obj in items}
        for key in [k for k in self.cache if k not in fresh]:
            self._delete(key, self.cache[key])
        for key, obj in fresh.items():
            self._upsert(key, obj)
        self.resource_version = revision
        self.synced.set()

    async def _watch(self) -> None:
        timeout = int(self.watch_timeout * random.uniform(1.0, 2.0))
        async for event in self.client.watch(self.resource, self.namespace,
                                             resource_version=self.resource_version,
                                             label_selector=self.label_selector,
                                             field_selector=self.field_selector,
                                             timeout_seconds=timeout):
            kind = event.get("type")
            obj = event.get("object") or {}
            if kind == "ERROR":
                if obj.get("code") == 410:
                    raise errors.GoneError(410, "Expired", str(obj.get("message", "")), obj)
                raise errors.from_status(int(obj.get("code") or 500), obj)
            revision = (obj.get("metadata") or {}).get("resourceVersion")
            if revision:
                self.resource_version = revision
            if kind == "BOOKMARK":
                continue
            if self.transform is not None:  # deleted objects too, as client-go's DeltaFIFO does
                obj = self.transform(obj)
            key = object_key(obj)
            if kind == "DELETED":
                old = self.cache.get(key)
                self._delete(key, old or obj)
            else:
                self._upsert(key, obj)

    # ------------------------------------------------------------ internals

    def _index(self, key: str, old: Object | None, new: Object | None) -> None:
        for name, func in self._indexers.items():
            index = self._indices[name]
            if old is not None:
                for value in func(old):
                    keys = index.get(value)
                    if keys is not None:
                        keys.discard(key)
                        if not keys:
                            del index[value]
            if new is not None:
                for value in func(new):
                    index.setdefault(value, set()).add(key)

    def _upsert(self, key: str, obj: Object) -> None:
        old = self.cache.get(key)
        if old is not None and old["metadata"].get("resourceVersion") == obj["metadata"].get("resourceVersion"):
            return
        self.cache[key] = obj
        self._index(key, old, obj)
        for handler in self._handlers:
            if old is None:
                if handler.on_add:
                    self._call(handler.on_add, obj)
            elif handler.on_update:
                self._call(handler.on_update, old, obj)

    def _delete(self, key: str, obj: Object) -> None:
        old = self.cache.pop(key, None)
        self._index(key, old, None)
        for handler in self._handlers:
            if handler.on_delete:
                self._call(handler.on_delete, old or obj)

    def _call(self, function: Callable[..., None], *objects: Object) -> None:
        """Run one handler, isolated: its bug is logged and counted, and neither starves the
        handlers after it nor ends the watch (a relist would not deliver the event again anyway,
        the cache already holding it), as client-go's processorListener isolates its handlers."""
        try:
            function(*objects)
        except Exception:
            self.handler_errors += 1
            log.exception("informer %s: event handler %s failed on %s", self.resource.plural,
                          getattr(function, "__qualname__", function), object_key(objects[-1]))


class InformerFactory:
    """Hands out one informer per (resource, namespace, selectors), so components share watches.

    ``transform`` is every informer's (client-go's ``informers.WithTransform``); ``informer(...,
    transform=)`` gives one informer its own instead, as ``InformerFor`` with a constructor that sets
    one. Asking again for an informer already made with another transform is a bug (the two callers
    would each expect their own view of the objects), so it raises."""

    def __init__(self, client: APIClient, *, transform: Transform | None = None) -> None:
        self.client = client
        self.transform = transform
        self._informers: dict[tuple[Any, ...], Informer] = {}

    def informer(self, resource: ResourceType, *, namespace: str | None = None,
                 label_selector: str | None = None, field_selector: str | None = None,
                 transform: Transform | None = None) -> Informer:
        key = (resource.group, resource.plural, namespace, label_selector, field_selector)
        wanted = transform or self.transform
        informer = self._informers.get(key)
        if informer is None:
            informer = Informer(self.client, resource, namespace=namespace, label_selector=label_selector,
                                field_selector=field_selector, transform=wanted)
            self._informers[key] = informer
        elif informer.transform is not wanted:
            raise ValueError(f"the informer of {resource.plural} was made with another transform")
        return informer

    def start(self) -> None:
        for informer in self._informers.values():
            informer.start()

    async def wait_synced(self, timeout: float | None = None) -> None:
        await asyncio.gather(*(i.wait_synced(timeout) for i in self._informers.values()))

    async def stop(self) -> None:
        await asyncio.gather(*(i.stop() for i in self._informers.values()))
