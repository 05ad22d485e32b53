"""Node lifecycle controller against a real server: silent nodes turn Unknown, get tainted, lose pods."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from pilothouse.client.rest import APIClient, resource
from pilothouse.components.controllers.nodelifecycle import (
    NodeLifecycleController,
    condition_taints,
    eviction_delay,
)
from pilothouse.components.controllers.replicaset import ReplicaSetController
from pilothouse.machinery import meta
from tests.conftest import ServerProcess
from tests.controllers._fixtures_b import (
    NODES,
    PODS,
    create_namespace,
    create_node,
    mark_pod,
    pod_template,
    run_controllers,
    wait_for,
)

LEASES = resource("coordination.k8s.io", "v1", "leases")
REPLICASETS = resource("apps", "v1", "replicasets")
# A grace period well above the healthy node's heartbeat interval (0.2 s), so that a busy CI machine
# delaying one heartbeat does not make the healthy node look silent.
OPTIONS = {"node_monitor_grace_period": 3.0, "node_monitor_period": 0.2}


def test_condition_taints_and_eviction_delay() -> None:
    node = {"spec": {"unschedulable": True},
            "status": {"conditions": [{"type": "Ready", "status": "Unknown"},
                                      {"type": "DiskPressure", "status": "True"}]}}
    assert sorted((t["key"], t["effect"]) for t in condition_taints(node)) == [
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule")]
    now = meta.now()
    taint = {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute",
             "timeAdded": meta.format_time(now - timedelta(seconds=100))}
    tolerating = {"spec": {"tolerations": [{"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                                            "effect": "NoExecute", "tolerationSeconds": 300}]}}
    delay = eviction_delay(tolerating, [taint], now)
    assert delay is not None and 199 <= delay <= 200
    assert eviction_delay({"spec": {}}, [taint], now) == 0.0
    forever = {"spec": {"tolerations": [{"operator": "Exists"}]}}
    assert eviction_delay(forever, [taint], now) is None
    assert eviction_delay(tolerating, [{**taint, "effect": "NoSchedule"}], now) is None


async def _heartbeat(client: APIClient, node: str, stop: asyncio.Event) -> None:
    lease: dict[str, Any] = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                             "metadata": {"name": node, "namespace": "kube-node-lease"},
                             "spec": {"holderIdentity": node, "leaseDurationSeconds": 40,
                                      "renewTime": meta.format_time_micro()}}
    lease = await client.create(LEASES, lease, "kube-node-lease")
    while not stop.is_set():
        await asyncio.sleep(0.2)
        lease["spec"]["renewTime"] = meta.format_time_micro()
        lease = await client.update(LEASES, lease)


def _taint_keys(node: dict[str, Any]) -> set[tuple[str, str]]:
    return {(t["key"], t["effect"]) for t in (node.get("spec") or {}).get("taints") or []}


async def test_silent_node_turns_unknown_and_pods_are_evicted(server: ServerProcess) -> None:
    client = APIClient(server.url)
    ns = await create_namespace(client, "nlc")
    await create_node(client, "silent")
    await create_node(client, "healthy")
    stop = asyncio.Event()
    beating = asyncio.create_task(_heartbeat(client, "healthy", stop))
    labels = {"app": "evictme"}
    template = pod_template(labels, tolerations=[{"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                                                  "effect": "NoExecute", "tolerationSeconds": 1}])
    async with run_controllers(server.url, NodeLifecycleController, ReplicaSetController, options=OPTIONS):
        await client.create(REPLICASETS, {"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                          "metadata": {"name": "evictme"},
                                          "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                                                   "template": template}}, ns)
        pods = await wait_for(lambda: _live_pods(client, ns), what="replicaset pod")
        first = pods[0]["metadata"]["name"]
        await mark_pod(client, ns, first, node="silent")

        async def unknown() -> dict[str, Any] | None:
            node = await client.get(NODES, "silent")
            ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
            if ready["status"] == "Unknown" and ("node.kubernetes.io/unreachable", "NoExecute") in _taint_keys(node):
                return node
            return None

        node = await wait_for(unknown, timeout=10, what="silent node Unknown and tainted")
        ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
        assert ready["reason"] == "NodeStatusUnknown"
        assert ready["message"] == "Kubelet stopped posting node status."

        async def replaced() -> list[dict[str, Any]] | None:
            live = await _live_pods(client, ns)
            return live if live and all(p["metadata"]["name"] != first for p in live) else None

        await wait_for(replaced, timeout=10, what="evicted pod replaced by the ReplicaSet")
        healthy = await client.get(NODES, "healthy")
        assert next(c for c in healthy["status"]["conditions"] if c["type"] == "Ready")["status"] == "True"
        assert not _taint_keys(healthy)

        # cordon: the unschedulable taint follows spec.unschedulable
        await client.patch(NODES, "healthy", {"spec": {"unschedulable": True}})

        async def cordoned() -> bool:
            return ("node.kubernetes.io/unschedulable", "NoSchedule") in _taint_keys(
                await client.get(NODES, "healthy"))

        await wait_for(cordoned, what="unschedulable taint")
        # the silent node comes back: taints go
        back = await client.get(NODES, "silent")
        for condition in back["status"]["conditions"]:
            condition.update({"status": "True" if condition["type"] == "Ready" else "False",
                              "lastHeartbeatTime": meta.format_time(), "reason": "KubeletReady"})
        await client.update_status(NODES, back)

        async def untainted() -> bool:
            return not _taint_keys(await client.get(NODES, "silent"))

        await wait_for(untainted, what="taints removed")
    stop.set()
    await beating
    await client.close()


async def _live_pods(client: APIClient, ns: str) -> list[dict[str, Any]] | None:
    items = (await client.list(PODS, ns))["items"]
    live = [p for p in items if not p["metadata"].get("deletionTimestamp")]
    return live or None
