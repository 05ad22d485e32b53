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

_State = Literal["active", "terminating", "gone"]


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
        self._follower: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._follower = asyncio.get_running_loop().create_task(self._follow(), name="namespace-cache")

    async def close(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower

    def observe(self, obj: dict[str, Any]) -> None:
        """A namespace as stored (by this server or seen on the watch)."""
        self._record(obj["metadata"]["name"], int(obj["metadata"]["resourceVersion"]), _state_of(obj))

    def forget(self, obj: dict[str, Any]) -> None:
        """A namespace deleted, ``obj`` carrying the delete's resourceVersion."""
        self._record(obj["metadata"]["name"], int(obj["metadata"]["resourceVersion"]), "gone")

    def _record(self, name: str, revision: int, state: _State) -> None:
        known = self._known.get(name)
        if known is None or known[0] <= revision:
            self._known[name] = (revision, state)

    async def _follow(self) -> None:
        while True:
            try:
                # revision 0: the current namespaces first, then every change
                async for event in self.store.watch(NAMESPACE_KEY_PREFIX, 0):
                    name = event.kv.key[len(NAMESPACE_KEY_PREFIX):]
                    if event.type is EventType.DELETE:
                        self._record(name, event.kv.mod_revision, "gone")
                    else:
                        self._record(name, event.kv.mod_revision, _state_of(orjson.loads(event.kv.value)))
            except asyncio.CancelledError:
                raise
            except CompactedError:
                self._known.clear()  # fell behind: start over from the current state
                continue
            except Exception:  # the store is down or closing; answers come from the store meanwhile
                log.warning("namespace cache watch failed; retrying", exc_info=True)
            # What we held may be stale now: until the watch catches up, look names up in the store.
            self._known.clear()
            await asyncio.sleep(1.0)

    async def admit_create(self, namespace: str) -> None:
        known = self._known.get(namespace)
        state = known[1] if known is not None else None
        if state is None or state == "gone":
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
