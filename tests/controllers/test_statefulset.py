"""StatefulSet controller against a real server: ordered creation, reverse scale-down, rolling update."""

from __future__ import annotations

from typing import Any

from pilothouse.client.rest import APIClient, resource
from pilothouse.components.controllers.statefulset import StatefulSetController
from tests.conftest import ServerProcess
from tests.controllers._fixtures_b import PODS, create_namespace, mark_pod, pod_template, run_controllers, wait_for

STATEFULSETS = resource("apps", "v1", "statefulsets")


def _sts(name: str, replicas: int, **extra: Any) -> dict[str, Any]:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name},
            "spec": {"replicas": replicas, "serviceName": name, "selector": {"matchLabels": labels},
                     "template": pod_template(labels),
                     "volumeClaimTemplates": [{"metadata": {"name": "data"},
                                               "spec": {"accessModes": ["ReadWriteOnce"],
                                                        "resources": {"requests": {"storage": "1Gi"}}}}],
                     **extra}}


async def _live(client: APIClient, ns: str) -> dict[str, dict[str, Any]]:
    items = (await client.list(PODS, ns))["items"]
    return {p["metadata"]["name"]: p for p in items if not p["metadata"].get("deletionTimestamp")}


async def test_ordered_create_and_reverse_scale_down(server: ServerProcess) -> None:
    client = APIClient(server.url)
    ns = await create_namespace(client, "sts")
    async with run_controllers(server.url, StatefulSetController):
        await client.create(STATEFULSETS, _sts("web", 3), ns)
        for ordinal in range(3):
            name = f"web-{ordinal}"

            async def appeared(name: str = name) -> dict[str, Any] | None:
                return (await _live(client, ns)).get(name)

            pod = await wait_for(appeared, what=name)
            # OrderedReady: nothing beyond this ordinal while it is not Running and Ready
            assert sorted(await _live(client, ns)) == [f"web-{i}" for i in range(ordinal + 1)]
            labels = pod["metadata"]["labels"]
            assert labels["statefulset.kubernetes.io/pod-name"] == name
            assert labels["apps.kubernetes.io/pod-index"] == str(ordinal)
            assert labels["controller-revision-hash"].startswith("web-")
            assert pod["spec"]["hostname"] == name and pod["spec"]["subdomain"] == "web"
            await mark_pod(client, ns, name, ip=f"10.2.0.{ordinal + 1}")

        async def all_ready() -> dict[str, Any] | None:
            status = (await client.get(STATEFULSETS, "web", ns)).get("status") or {}
            return status if status.get("readyReplicas") == 3 else None

        status = await wait_for(all_ready, what="3 ready replicas")
        assert status["replicas"] == 3 and status["currentReplicas"] == 3 and status["updatedReplicas"] == 3
        assert status["currentRevision"] == status["updateRevision"]
        assert status["availableReplicas"] == 3

        # scale down to 1: web-2 goes first, then web-1
        await client.patch(STATEFULSETS, "web", {"spec": {"replicas": 1}}, ns)
        seen: list[list[str]] = []

        async def scaled() -> bool:
            names = sorted(await _live(client, ns))
            if not seen or seen[-1] != names:
                seen.append(names)
            return names == ["web-0"]

        await wait_for(scaled, what="scale down")
        assert ["web-0", "web-1"] in seen or seen[0] == ["web-0", "web-1", "web-2"]
        assert ["web-0", "web-2"] not in seen
    await client.close()


async def test_parallel_and_rolling_update_with_partition(server: ServerProcess) -> None:
    client = APIClient(server.url)
    ns = await create_namespace(client, "sts")
    async with run_controllers(server.url, StatefulSetController):
        await client.create(STATEFULSETS, _sts("db", 3, podManagementPolicy="Parallel",
                                               updateStrategy={"type": "RollingUpdate",
                                                               "rollingUpdate": {"partition": 1}}), ns)

        async def three() -> dict[str, dict[str, Any]] | None:
            pods = await _live(client, ns)
            return pods if len(pods) == 3 else None

        pods = await wait_for(three, what="3 pods at once")  # no readiness needed with Parallel
        old = {p["metadata"]["labels"]["controller-revision-hash"] for p in pods.values()}
        assert len(old) == 1
        for name in pods:
            await mark_pod(client, ns, name)
        await client.patch(STATEFULSETS, "db", {"spec": {"template": {"metadata": {"labels": {"v": "2"}}}}}, ns)

        async def updated() -> dict[str, Any] | None:
            pods = await _live(client, ns)
            for name, pod in pods.items():
                if (pod.get("status") or {}).get("phase") != "Running":
                    await mark_pod(client, ns, name)
            status = (await client.get(STATEFULSETS, "db", ns)).get("status") or {}
            return status if status.get("updatedReplicas") == 2 and status.get("readyReplicas") == 3 else None

        status = await wait_for(updated, timeout=15, interval=0.1, what="db-1 and db-2 updated")
        pods = await _live(client, ns)
        assert pods["db-0"]["metadata"]["labels"]["controller-revision-hash"] in old  # below the partition
        assert pods["db-2"]["metadata"]["labels"].get("v") == "2"
        assert status["currentReplicas"] == 1 and status["currentRevision"] != status["updateRevision"]
    await client.close()
