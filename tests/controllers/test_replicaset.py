"""ReplicaSet controller against a real API server: creation, replacement, scaling, adoption, status."""

from __future__ import annotations

from typing import Any

from pilothouse.client.rest import resource
from tests.controllers.conftest import Cluster, eventually, replace_one_pod

PODS = resource("", "v1", "pods")
RS = resource("apps", "v1", "replicasets")
NAMESPACES = resource("", "v1", "namespaces")
EVENTS = resource("", "v1", "events")


def replicaset(name: str, replicas: int, app: str | None = None) -> dict[str, Any]:
    app = app or name
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": app}},
                     "template": {"metadata": {"labels": {"app": app, "tier": "web"}},
                                  "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}}}}


async def namespace(cluster: Cluster, name: str) -> str:
    await cluster.client.create(NAMESPACES, {"metadata": {"name": name}})
    return name


async def pods_of(cluster: Cluster, ns: str, app: str) -> list[dict[str, Any]]:
    items, _ = await cluster.client.list_all(PODS, ns, label_selector=f"app={app}")
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


async def test_creates_owned_pods_and_reports_status(cluster: Cluster) -> None:
    ns = await namespace(cluster, "rs-create")
    rs = await cluster.client.create(RS, replicaset("web", 3), ns)

    async def three_ready() -> bool:
        current = await cluster.client.get(RS, "web", ns)
        status = current.get("status") or {}
        return status.get("readyReplicas") == 3 and status.get("availableReplicas") == 3 and \
            status.get("replicas") == 3 and status.get("observedGeneration") == 1
    await eventually(three_ready)
    pods = await pods_of(cluster, ns, "web")
    assert len(pods) == 3
    for pod in pods:
        assert pod["metadata"]["name"].startswith("web-")
        assert pod["metadata"]["labels"] == {"app": "web", "tier": "web"}
        [ref] = pod["metadata"]["ownerReferences"]
        assert ref == {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": rs["metadata"]["uid"],
                       "controller": True, "blockOwnerDeletion": True}

    async def events() -> list[str]:
        items, _ = await cluster.client.list_all(EVENTS, ns)
        found = sorted(e["message"] for e in items if e["reason"] == "SuccessfulCreate")
        return found if len(found) == 3 else []
    messages = await eventually(events)
    assert messages == sorted(f"Created pod: {p['metadata']['name']}" for p in pods)


async def test_deleted_pod_is_replaced_and_scale_down_removes_pods(cluster: Cluster) -> None:
    ns = await namespace(cluster, "rs-replace")
    await cluster.client.create(RS, replicaset("app", 2), ns)
    await replace_one_pod(cluster, ns, "app", 2)

    await cluster.client.patch(RS, "app", {"spec": {"replicas": 0}}, ns)
    await eventually(lambda: _empty(cluster, ns, "app"))


async def _empty(cluster: Cluster, ns: str, app: str) -> bool:
    return not await pods_of(cluster, ns, "app")


async def test_adopts_orphans_and_releases_pods_that_stop_matching(cluster: Cluster) -> None:
    ns = await namespace(cluster, "rs-adopt")
    orphan = {"apiVersion": "v1", "kind": "Pod",
              "metadata": {"name": "orphan", "labels": {"app": "adopt"}},
              "spec": {"containers": [{"name": "c", "image": "nginx"}]}}
    await cluster.client.create(PODS, orphan, ns)
    rs = await cluster.client.create(RS, replicaset("adopt", 2), ns)

    async def adopted() -> bool:
        pod = await cluster.client.get(PODS, "orphan", ns)
        refs = pod["metadata"].get("ownerReferences") or []
        return [r["uid"] for r in refs] == [rs["metadata"]["uid"]]
    await eventually(adopted)
    await eventually(lambda: _count_is(cluster, ns, 2))
    # Relabel the adopted pod: it is released and a replacement is made.
    await cluster.client.patch(PODS, "orphan", {"metadata": {"labels": {"app": "other"}}}, ns)

    async def released() -> bool:
        pod = await cluster.client.get(PODS, "orphan", ns)
        return not pod["metadata"].get("ownerReferences")
    await eventually(released)
    await eventually(lambda: _count_is(cluster, ns, 2))


async def _count_is(cluster: Cluster, ns: str, n: int) -> bool:
    return len(await pods_of(cluster, ns, "adopt")) == n


async def test_scale_down_prefers_unready_pods(cluster: Cluster) -> None:
    ns = await namespace(cluster, "rs-rank")
    await cluster.client.create(RS, replicaset("rank", 2), ns)

    async def ready_pods() -> list[dict[str, Any]]:
        pods = await pods_of(cluster, ns, "rank")
        ready = [p for p in pods if (p.get("status") or {}).get("phase") == "Running"]
        return ready if len(ready) == 2 else []
    ready = await eventually(ready_pods)
    cluster.kubelet.ready = False
    await cluster.client.patch(RS, "rank", {"spec": {"replicas": 3}}, ns)

    async def third() -> list[dict[str, Any]]:
        pods = await pods_of(cluster, ns, "rank")
        return pods if len(pods) == 3 else []
    await eventually(third)
    await cluster.client.patch(RS, "rank", {"spec": {"replicas": 2}}, ns)

    async def back_to_ready() -> bool:
        names = {p["metadata"]["name"] for p in await pods_of(cluster, ns, "rank")}
        return names == {p["metadata"]["name"] for p in ready}
    await eventually(back_to_ready)
    cluster.kubelet.ready = True
