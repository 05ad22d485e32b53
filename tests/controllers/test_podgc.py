"""Pod GC against a real server: pods of deleted nodes, terminated pods beyond the threshold."""

from __future__ import annotations

import asyncio
from typing import Any

from pilothouse.client.rest import APIClient
from pilothouse.components.controllers.podgc import PodGCController
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

OPTIONS = {"podgc_period": 0.2, "podgc_quarantine": 0.5, "terminated_pod_gc_threshold": 2}


async def _pod(client: APIClient, ns: str, name: str) -> None:
    body = {"apiVersion": "v1", "kind": "Pod", **pod_template({"app": name})}
    body["metadata"] = {"name": name}
    await client.create(PODS, body, ns)


async def _names(client: APIClient, ns: str) -> set[str]:
    return {p["metadata"]["name"] for p in (await client.list(PODS, ns))["items"]}


async def test_pods_of_deleted_node_are_removed(server: ServerProcess) -> None:
    client = APIClient(server.url)
    ns = await create_namespace(client, "gc")
    await create_node(client, "doomed")
    await create_node(client, "staying")
    await _pod(client, ns, "orphan")
    await _pod(client, ns, "kept")
    await mark_pod(client, ns, "orphan", node="doomed")
    await mark_pod(client, ns, "kept", node="staying")
    async with run_controllers(server.url, PodGCController, options=OPTIONS):
        await asyncio.sleep(0.3)
        assert await _names(client, ns) == {"orphan", "kept"}
        await client.delete(NODES, "doomed")

        async def collected() -> bool:
            return await _names(client, ns) == {"kept"}

        await wait_for(collected, timeout=5, what="orphan pod force-deleted")
    await client.close()


async def test_terminated_pods_beyond_threshold(server: ServerProcess) -> None:
    client = APIClient(server.url)
    ns = await create_namespace(client, "gc")
    await create_node(client, "worker")
    for i in range(4):
        await _pod(client, ns, f"done-{i}")
        await mark_pod(client, ns, f"done-{i}", node="worker", phase="Succeeded", ready=False, exit_code=0)
        await asyncio.sleep(1.05)  # distinct creation seconds: the oldest go first
    await _pod(client, ns, "running")
    await mark_pod(client, ns, "running", node="worker")
    async with run_controllers(server.url, PodGCController, options=OPTIONS):

        async def trimmed() -> set[str] | None:
            names = await _names(client, ns)
            return names if len(names) == 3 else None

        names: Any = await wait_for(trimmed, timeout=5, what="two terminated pods deleted")
        assert names == {"done-2", "done-3", "running"}
    await client.close()
