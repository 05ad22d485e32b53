"""Garbage collector propagation policies, namespace deletion, default ServiceAccounts."""

from __future__ import annotations

from typing import Any

from pilothouse.client import errors
from pilothouse.client.rest import resource
from tests.controllers.conftest import Cluster, eventually

PODS = resource("", "v1", "pods")
RS = resource("apps", "v1", "replicasets")
CM = resource("", "v1", "configmaps")
SA = resource("", "v1", "serviceaccounts")
NAMESPACES = resource("", "v1", "namespaces")


def rs_body(name: str, replicas: int) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}


async def pod_count(cluster: Cluster, ns: str, app: str) -> int:
    return len((await cluster.client.list(PODS, ns, label_selector=f"app={app}"))["items"])


async def test_orphan_and_foreground_propagation(cluster: Cluster) -> None:
    ns = "gc-policies"
    await cluster.client.create(NAMESPACES, {"metadata": {"name": ns}})
    await cluster.client.create(RS, rs_body("keep", 2), ns)
    await cluster.client.create(RS, rs_body("fg", 2), ns)
    await eventually(lambda: _is(pod_count(cluster, ns, "keep"), 2))
    await eventually(lambda: _is(pod_count(cluster, ns, "fg"), 2))

    await cluster.client.delete(RS, "keep", ns, propagation_policy="Orphan")

    async def orphaned() -> bool:
        items = (await cluster.client.list(PODS, ns, label_selector="app=keep"))["items"]
        return len(items) == 2 and all(not p["metadata"].get("ownerReferences") for p in items)
    await eventually(orphaned)
    await eventually(lambda: _gone(cluster, RS, "keep", ns))

    await cluster.client.delete(RS, "fg", ns, propagation_policy="Foreground")
    await eventually(lambda: _gone(cluster, RS, "fg", ns))
    assert await pod_count(cluster, ns, "fg") == 0


async def _is(value: Any, expected: Any) -> bool:
    return bool(await value == expected)


async def _gone(cluster: Cluster, r: Any, name: str, ns: str | None) -> bool:
    try:
        await cluster.client.get(r, name, ns)
    except errors.NotFoundError:
        return True
    return False


async def test_namespace_deletion_removes_contents_and_default_sa(cluster: Cluster) -> None:
    ns = "ns-doomed"
    await cluster.client.create(NAMESPACES, {"metadata": {"name": ns}})
    await eventually(lambda: _exists(cluster, SA, "default", ns))
    await cluster.client.delete(SA, "default", ns)
    await eventually(lambda: _exists(cluster, SA, "default", ns))  # recreated
    await cluster.client.create(CM, {"metadata": {"name": "cfg"}, "data": {"a": "b"}}, ns)
    await cluster.client.create(RS, rs_body("inside", 2), ns)
    await eventually(lambda: _is(pod_count(cluster, ns, "inside"), 2))
    await cluster.client.delete(NAMESPACES, ns)
    await eventually(lambda: _gone(cluster, NAMESPACES, ns, None))
    await eventually(lambda: _empty(cluster, ns))


async def _exists(cluster: Cluster, r: Any, name: str, ns: str) -> bool:
    return not await _gone(cluster, r, name, ns)


async def _empty(cluster: Cluster, ns: str) -> bool:
    for r in (PODS, RS, CM, SA):
        if (await cluster.client.list(r, ns))["items"]:
            return False
    return True
