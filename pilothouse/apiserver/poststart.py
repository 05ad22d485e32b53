"""Objects kube-apiserver's post-start hooks keep in every cluster, beyond namespaces and Services.

- ``kube-apiserver-autoregistration``: one local APIService per served group/version
  (``v1.``, ``v1.apps``, ``v2.autoscaling``, ...), with the group and version priorities of
  cmd/kube-apiserver/app/aggregator.go, status ``Available=True`` (reason ``Local``). pilothouse
  serves all of them itself, so nothing ever makes them unavailable.
- ``priority-and-fairness-config-producer``: the mandatory FlowSchemas and PriorityLevelConfigurations
  (``exempt``, ``catch-all``) and the suggested ones (``system-nodes``, ``workload-low``, ...).

Idempotent, and safe when several API servers start together: an object that already exists is left
as it is (its status is only completed), a lost race is someone else's success.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from pilothouse.apiserver.registry import ResourceStorage, WriteContext
from pilothouse.machinery import meta
from pilothouse.machinery.errors import StatusError
from pilothouse.machinery.kinds import ResourceRegistry
from pilothouse.machinery.kinds.flowcontrol import BOOTSTRAP_OBJECTS
from pilothouse.machinery.meta import Object

__all__ = ["API_VERSION_PRIORITIES", "bootstrap", "local_apiservices", "register_apiservice"]

StorageOf = Callable[[str, str, str], ResourceStorage]

#: (group, version) -> (groupPriorityMinimum, versionPriority), from kube-apiserver's
#: apiVersionPriorities; a group/version not listed gets no APIService, as there.
API_VERSION_PRIORITIES: dict[tuple[str, str], tuple[int, int]] = {
    ("", "v1"): (18000, 1),
    # The aggregator's own group: not in that table (kube-aggregator registers it itself); these are
    # the values a stock cluster shows for v1.apiregistration.k8s.io.
    ("apiregistration.k8s.io", "v1"): (18000, 15),
    ("apps", "v1"): (17800, 15),
    ("events.k8s.io", "v1"): (17750, 15),
    ("authentication.k8s.io", "v1"): (17700, 15),
    ("authorization.k8s.io", "v1"): (17600, 15),
    ("autoscaling", "v1"): (17500, 15),
    ("autoscaling", "v2"): (17500, 30),
    ("batch", "v1"): (17400, 15),
    ("certificates.k8s.io", "v1"): (17300, 15),
    ("networking.k8s.io", "v1"): (17200, 15),
    ("policy", "v1"): (17100, 15),
    ("rbac.authorization.k8s.io", "v1"): (17000, 15),
    ("storage.k8s.io", "v1"): (16800, 15),
    ("apiextensions.k8s.io", "v1"): (16700, 15),
    ("admissionregistration.k8s.io", "v1"): (16700, 15),
    ("scheduling.k8s.io", "v1"): (16600, 15),
    ("coordination.k8s.io", "v1"): (16500, 15),
    ("node.k8s.io", "v1"): (16300, 15),
    ("discovery.k8s.io", "v1"): (16200, 15),
    ("flowcontrol.apiserver.k8s.io", "v1"): (16100, 21),
}

_AVAILABLE = {"type": "Available", "status": "True", "reason": "Local",
              "message": "Local APIServices are always available"}


def _context() -> WriteContext:
    return WriteContext(field_manager="pilothouse-apiserver")


def local_apiservices(registry: ResourceRegistry) -> list[Object]:
    """The APIService of every group/version the registry serves."""
    found: list[Object] = []
    for group, versions in registry.group_versions().items():
        for version in versions:
            priority = API_VERSION_PRIORITIES.get((group, version))
            if priority is None:
                continue
            found.append({
                "apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
                "metadata": {"name": f"{version}.{group}",
                             "labels": {"kube-aggregator.kubernetes.io/automanaged": "onstart"}},
                "spec": {"group": group, "version": version, "groupPriorityMinimum": priority[0],
                         "versionPriority": priority[1]},
            })
    return found


async def _ensure(storage: ResourceStorage, obj: Object) -> Object:
    try:
        return await storage.create(None, meta.clone(obj), _context())
    except StatusError as error:
        if error.reason != "AlreadyExists":
            raise
    return await storage.get(None, obj["metadata"]["name"])


async def _mark_available(storage: ResourceStorage, service: Object) -> None:
    conditions = (service.get("status") or {}).get("conditions") or []
    if any(c.get("type") == "Available" and c.get("status") == "True" for c in conditions):
        return
    updated = meta.clone(service)
    updated["status"] = {"conditions": [{**_AVAILABLE, "lastTransitionTime": meta.format_time()}]}
    try:
        await storage.update(None, service["metadata"]["name"], updated,
                             _context(), "status")
    except StatusError as error:
        if error.code != 409:  # another API server marked it first
            raise


async def register_apiservice(apiservices: ResourceStorage, service: Object) -> None:
    """Create a local APIService unless it exists, and mark it Available (also used for the
    group/versions of CustomResourceDefinitions, as crdRegistrationController does)."""
    await _mark_available(apiservices, await _ensure(apiservices, service))


async def bootstrap(registry: ResourceRegistry, storage_of: StorageOf) -> None:
    apiservices = storage_of("apiregistration.k8s.io", "v1", "apiservices")
    plurals = {"FlowSchema": "flowschemas", "PriorityLevelConfiguration": "prioritylevelconfigurations"}

    # Concurrently: the store commits the writes in a few groups rather than one by one.
    await asyncio.gather(
        *(register_apiservice(apiservices, service) for service in local_apiservices(registry)),
        *(_ensure(storage_of("flowcontrol.apiserver.k8s.io", "v1", plurals[obj["kind"]]), obj)
          for obj in BOOTSTRAP_OBJECTS))
