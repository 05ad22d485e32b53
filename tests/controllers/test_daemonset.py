"""DaemonSet controller against a real server: a pod per eligible node, taints, rolling update."""

from __future__ import annotations

import contextlib
from typing import Any

from pilothouse.client import errors
from pilothouse.client.rest import APIClient, resource
from pilothouse.components.controllers.daemonset import (
    DaemonSetController,
    add_daemon_tolerations,
    node_should_run_daemon_pod,
    target_node_name,
)
from tests.conftest import ServerProcess
from tests.controllers._fixtures_b import (
    PODS,
    create_namespace,
    create_node,
    mark_pod,
    pod_template,
    run_controllers,
    wait_for,
)

DAEMONSETS = resource("apps", "v1", "daemonsets")
REVISIONS = resource("apps", "v1", "controllerrevisions")


def _ds(name: str, pool: str, **extra: Any) -> dict[str, Any]:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": labels},
                     "template": pod_template(labels, nodeSelector={"pool": pool}), **extra}}


def test_should_run_rules() -> None:
    ds = _ds("x", "a")
    node = {"metadata": {"name": "n1", "labels": {"pool": "a"}}, "spec": {}}
    assert node_should_run_daemon_pod(node, ds) == (True, True)
    assert node_should_run_daemon_pod({**node, "metadata": {"name": "n1", "labels": {}}}, ds) == (False, False)
    tainted = {**node, "spec": {"taints": [{"key": "dedicated", "value": "x", "effect": "NoSchedule"}]}}
    assert node_should_run_daemon_pod(tainted, ds) == (False, True)
    evicting = {**node, "spec": {"taints": [{"key": "dedicated", "effect": "NoExecute"}]}}
    assert node_should_run_daemon_pod(evicting, ds) == (False, False)
    # the default daemon tolerations let daemon pods onto unreachable / unschedulable nodes
    sick = {**node, "spec": {"unschedulable": True, "taints": [
        {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"},
        {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]}}
    assert node_should_run_daemon_pod(sick, ds) == (True, True)
    spec: dict[str, Any] = {"hostNetwork": True}
    add_daemon_tolerations(spec)
    keys = {t["key"] for t in spec["tolerations"]}
    assert "node.kubernetes.io/network-unavailable" in keys and "node.kubernetes.io/pid-pressure" in keys


async def test_pod_per_matching_node_and_rollout(server: ServerProcess) -> None:
    client = APIClient(server.url)
    ns = await create_namespace(client, "ds")
    await create_node(client, "ds-a1", labels={"pool": "a"})
    await create_node(client, "ds-a2", labels={"pool": "a"})
    await create_node(client, "ds-b1", labels={"pool": "b"})
    await create_node(client, "ds-a3", labels={"pool": "a"},
                      taints=[{"key": "dedicated", "value": "db", "effect": "NoSchedule"}])
    async with run_controllers(server.url, DaemonSetController):
        await client.create(DAEMONSETS, _ds("agent", "a"), ns)

        async def pods() -> list[dict[str, Any]] | None:
            items = (await client.list(PODS, ns))["items"]
            live = [p for p in items if not p["metadata"].get("deletionTimestamp")]
            return live if len(live) == 2 else None

        created = await wait_for(pods, what="two daemon pods")
        assert sorted(target_node_name(p) or "" for p in created) == ["ds-a1", "ds-a2"]
        for pod in created:
            terms = pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            assert terms["nodeSelectorTerms"][0]["matchFields"][0]["key"] == "metadata.name"
            assert pod["metadata"]["ownerReferences"][0]["kind"] == "DaemonSet"
            assert "controller-revision-hash" in pod["metadata"]["labels"]
            keys = {t["key"] for t in pod["spec"]["tolerations"]}
            assert "node.kubernetes.io/unschedulable" in keys
            await mark_pod(client, ns, pod["metadata"]["name"], node=target_node_name(pod))

        async def ready_status() -> dict[str, Any] | None:
            ds = await client.get(DAEMONSETS, "agent", ns)
            status = ds.get("status") or {}
            return status if status.get("numberReady") == 2 else None

        status = await ready_status_wait(ready_status)
        assert status["desiredNumberScheduled"] == 2
        assert status["currentNumberScheduled"] == 2
        assert status["updatedNumberScheduled"] == 2
        assert status["numberMisscheduled"] == 0
        revisions = (await client.list(REVISIONS, ns))["items"]
        assert len(revisions) == 1 and revisions[0]["revision"] == 1

        # a new template rolls out: old pods are replaced within maxUnavailable
        old_hash = created[0]["metadata"]["labels"]["controller-revision-hash"]
        await client.patch(DAEMONSETS, "agent", {"spec": {"template": {"metadata": {"labels": {"v": "2"}}}}}, ns)

        async def rolled() -> list[dict[str, Any]] | None:
            everything = (await client.list(PODS, ns))["items"]
            for pod in everything:
                if pod["metadata"].get("deletionTimestamp"):
                    # play the kubelet: a bound pod is deleted gracefully, and its node's agent
                    # finishes the deletion once the containers are gone
                    with contextlib.suppress(errors.NotFoundError):
                        await client.delete(PODS, pod["metadata"]["name"], ns, grace_period_seconds=0)
            items = [p for p in everything if not p["metadata"].get("deletionTimestamp")]
            for pod in items:
                if pod["metadata"]["labels"].get("v") == "2" \
                        and pod.get("status", {}).get("phase") != "Running":
                    await mark_pod(client, ns, pod["metadata"]["name"], node=target_node_name(pod))
            new = [p for p in items if p["metadata"]["labels"]["controller-revision-hash"] != old_hash]
            return new if len(new) == 2 and len(items) == 2 else None

        await wait_for(rolled, timeout=15, interval=0.2, what="rollout")
        assert len((await client.list(REVISIONS, ns))["items"]) == 2
    await client.close()


async def ready_status_wait(check: Any) -> dict[str, Any]:
    result: dict[str, Any] = await wait_for(check, what="daemonset status")
    return result
