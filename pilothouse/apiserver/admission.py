"""Admission: checks a write must pass that depend on other objects.

Today: namespace lifecycle (no new content in a missing or terminating namespace). Quota, limit
ranges, service-account and RBAC-aware plugins plug in here later, ahead of the store write.
"""

from __future__ import annotations

import orjson

from pilothouse.machinery.errors import StatusError, not_found
from pilothouse.store.interface import Store

__all__ = ["NamespaceLifecycle"]

NAMESPACE_KEY_PREFIX = "/registry/core/namespaces/"


class NamespaceLifecycle:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def admit_create(self, namespace: str) -> None:
        kv = await self.store.get(NAMESPACE_KEY_PREFIX + namespace)
        if kv is None:
            raise not_found("namespaces", "", namespace)
        obj = orjson.loads(kv.value)
        if obj["metadata"].get("deletionTimestamp") or (obj.get("status") or {}).get("phase") == "Terminating":
            raise StatusError(
                403, "Forbidden",
                f"unable to create new content in namespace {namespace} because it is being terminated",
                {"name": namespace, "kind": "namespaces",
                 "causes": [{"reason": "NamespaceTerminating",
                             "message": f"namespace {namespace} is being terminated",
                             "field": "metadata.namespace"}]},
            )
