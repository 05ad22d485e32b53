"""Admission: checks a write must pass that depend on other objects.

Today: namespace lifecycle (no new content in a missing or terminating namespace). Quota, limit
ranges, service-account and RBAC-aware plugins plug in here later, ahead of the store write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Literal

import orjson

from pilothouse.machinery.errors import StatusError, not_found
from pilothouse.store.interface import CompactedError, EventType, Store

__all__ = ["NamespaceLifecycle"]

log = logging.getLogger("pilothouse.apiserver.admission")

NAMESPACE_KEY_PREFIX = "/registry/core/namespaces/"

_State = Literal["active", "terminating"]


def _state_of(obj: dict[str, Any]) -> _State:
    if obj["metadata"].get("deletionTimestamp") or (obj.get("status") or {}).get("phase") == "Terminating":
        return "terminating"
    return "active"


class NamespaceLifecycle:
    """Refuses namespaced creates in a namespace that is missing or terminating.

    Like Kubernetes' NamespaceLifecycle plugin, which reads an informer, it answers from a cache the
    store's watch keeps current: reading the namespace from the store on every create cost a tenth
    of a create's time. This server's own namespace writes update the cache directly
    (:meth:`observe`, :meth:`forget`), so a client that deletes a namespace and at once creates in
    it is refused even before the watch event arrives. A name the cache does not hold as active or
    terminating (new, or written by another API server a moment ago) is read from the store.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        #: name -> (mod revision of what we know, state); only ever moves forward in revision.
        self._known: dict[str, tuple[int, _State]] = {}
        #: The newest deletion seen. A deleted name is dropped from ``_known`` (a tombstone per
        #: deleted namespace grew without bound under churn); instead an observation of a name we do
        #: not hold that is no newer than this is ignored, as it may predate that deletion, and the
        #: name is read from the store. Namespaces created later have newer revisions.
        self._deleted_through = 0
        self._follower: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._follower = asyncio.get_running_loop().create_task(self._follow(), name="namespace-cache")

    async def close(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower

    def cached_names(self) -> int:
        """How many namespaces the cache holds (for tests and diagnosis)."""
        return len(self._known)

    def observe(self, obj: dict[str, Any]) -> None:
        """A namespace as stored (by this server or seen on the watch)."""
        self._record(obj["metadata"]["name"], int(obj["metadata"]["resourceVersion"]), _state_of(obj))

    def forget(self, obj: dict[str, Any]) -> None:
        """A namespace deleted, ``obj`` carrying the delete's resourceVersion."""
        self._forget(obj["metadata"]["name"], int(obj["metadata"]["resourceVersion"]))

    def _forget(self, name: str, revision: int) -> None:
        known = self._known.get(name)
        if known is None or known[0] <= revision:
            self._known.pop(name, None)
        self._deleted_through = max(self._deleted_through, revision)

    def _record(self, name: str, revision: int, state: _State) -> None:
        known = self._known.get(name)
        if known is None and revision <= self._deleted_through:
            return  # perhaps older than a deletion we have forgotten: let the store answer
        if known is None or known[0] <= revision:
            self._known[name] = (revision, state)

    def _reset(self) -> None:
        """Hold nothing: the watch restarts from the current state, which supersedes all we knew."""
        self._known.clear()
        self._deleted_through = 0

    async def _follow(self) -> None:
        while True:
            try:
                # revision 0: the current namespaces first, then every change
                async for event in self.store.watch(NAMESPACE_KEY_PREFIX, 0):
                    name = event.kv.key[len(NAMESPACE_KEY_PREFIX):]
                    if event.type is EventType.DELETE:
                        self._forget(name, event.kv.mod_revision)
                    else:
                        self._record(name, event.kv.mod_revision, _state_of(orjson.loads(event.kv.value)))
            except asyncio.CancelledError:
                raise
            except CompactedError:
                self._reset()  # fell behind: start over from the current state
                continue
            except Exception:  # the store is down or closing; answers come from the store meanwhile
                log.warning("namespace cache watch failed; retrying", exc_info=True)
            # What we held may be stale now: until the watch catches up, look names up in the store.
            self._reset()
            await asyncio.sleep(1.0)

    async def admit_create(self, namespace: str) -> None:
        known = self._known.get(namespace)
        state = known[1] if known is not None else None
        if state is None:
            kv = await self.store.get(NAMESPACE_KEY_PREFIX + namespace)
            if kv is None:
                raise not_found("namespaces", "", namespace)
            state = _state_of(orjson.loads(kv.value))
        if state == "terminating":
            raise StatusError(
                403, "Forbidden",
                f"unable to create new content in namespace {namespace} because it is being terminated",
                {"name": namespace, "kind": "namespaces",
                 "causes": [{"reason": "NamespaceTerminating",
                             "message": f"namespace {namespace} is being terminated",
                             "field": "metadata.namespace"}]},
            )
