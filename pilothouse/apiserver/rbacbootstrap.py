"""Install the default RBAC policy at startup, as kube-apiserver's ``rbac/bootstrap-roles`` hook does.

Every start (not only the first) reconciles each bootstrap ClusterRole, ClusterRoleBinding, Role
and RoleBinding with the stored one: missing objects are created, missing rules and subjects are
added, nothing is removed, and objects annotated ``rbac.authorization.kubernetes.io/autoupdate:
"false"`` are left as their owner made them. The decisions are pure
(:mod:`pilothouse.machinery.rbac.reconcile`); this module only reads and writes the storages.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from pilothouse.apiserver.registry import DeleteOptions, ResourceStorage, WriteContext
from pilothouse.machinery.errors import StatusError
from pilothouse.machinery.meta import Object
from pilothouse.machinery.rbac import bootstrappolicy as policy
from pilothouse.machinery.rbac.reconcile import Reconciled, reconcile_binding, reconcile_role

__all__ = ["ensure_bootstrap_policy"]

log = logging.getLogger("pilothouse.apiserver.rbac")

Decide = Callable[[Object | None, Object], Reconciled]
StorageFor = Callable[[str, str, str], ResourceStorage]

_MANAGER = "kube-apiserver"
# A role that keeps appearing and disappearing while we reconcile is given up on, as Kubernetes does.
_ATTEMPTS = 3


async def _get(storage: ResourceStorage, namespace: str | None, name: str) -> Object | None:
    try:
        return await storage.get(namespace, name)
    except StatusError as error:
        if error.code == 404:
            return None
        raise


async def _reconcile_one(storage: ResourceStorage, expected: Object, decide: Decide) -> None:
    meta = expected["metadata"]
    namespace, name = meta.get("namespace"), meta["name"]
    for _ in range(_ATTEMPTS):
        existing = await _get(storage, namespace, name)
        result = decide(existing, expected)
        if result.protected or result.operation == "none":
            return
        try:
            if result.operation == "recreate":
                # roleRef is immutable: the only way to change it is a new object.
                await storage.delete(namespace, name, DeleteOptions(), WriteContext(field_manager=_MANAGER))
                continue
            if result.operation == "create":
                await storage.create(namespace, result.obj, WriteContext(field_manager=_MANAGER))
            else:
                await storage.update(namespace, name, result.obj, WriteContext(field_manager=_MANAGER))
            log.debug("rbac bootstrap: %s %s %s", result.operation, expected["kind"], name)
            return
        except StatusError as error:
            # Raced with another writer (another API server reconciling too): look again.
            if error.reason not in ("AlreadyExists", "Conflict", "NotFound"):
                raise
    log.warning("rbac bootstrap: gave up reconciling %s %s", expected["kind"], name)


async def ensure_bootstrap_policy(storage_for: StorageFor) -> None:
    """Reconcile the whole default policy; roles before the bindings that name them."""
    group = policy.GROUP
    steps: list[tuple[str, list[Object], Decide]] = [
        ("clusterroles", policy.cluster_roles(), reconcile_role),
        ("clusterrolebindings", policy.cluster_role_bindings(), reconcile_binding),
        ("roles", policy.namespace_roles(), reconcile_role),
        ("rolebindings", policy.namespace_role_bindings(), reconcile_binding),
    ]
    for plural, objects, decide in steps:
        storage = storage_for(group, "v1", plural)
        # Independent objects: let the store group their writes.
        await asyncio.gather(*(_reconcile_one(storage, obj, decide) for obj in objects))
