"""The agent's own /metrics (its streaming server's port, kubelet's :10250 path) over a pod worker
on the simulated runtime: the pod start SLI observed once, running pods and containers counted from
the workers, against a real API server."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp

from pilothouse.client.rest import APIClient, resource
from pilothouse.components.agent.images import ImageManager
from pilothouse.components.agent.metrics import watch_running
from pilothouse.components.agent.podcontext import PodContext
from pilothouse.components.agent.podworkers import PodWorker
from pilothouse.components.agent.runtime.simulated import SimulatedRuntime
from pilothouse.components.agent.server import StreamingServer
from pilothouse.components.agent.streaming.lookup import RuntimeLabelLookup
from tests.conftest import ServerProcess, create_default_service_account
from tests.metrics.scrape import Scrape, parse

PODS = resource("", "v1", "pods")


async def _nothing(kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    return None


def test_worker_pod_start_and_running_gauges(server: ServerProcess, tmp_path: Path) -> None:
    create_default_service_account(server.url)

    async def run() -> None:
        runtime = SimulatedRuntime()
        streaming = StreamingServer(runtime, RuntimeLabelLookup(runtime), address="127.0.0.1", port=0)
        await streaming.start()
        async with APIClient(server.url) as client, aiohttp.ClientSession() as http:
            async def scrape() -> Scrape:
                async with http.get(f"http://127.0.0.1:{streaming.port}/metrics") as response:
                    assert response.status == 200
                    return parse(await response.text())

            before = await scrape()
            body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "measured"},
                    "spec": {"nodeName": "metrics-node", "automountServiceAccountToken": False,
                             "containers": [{"name": "a", "image": "registry.local/a:1"},
                                            {"name": "b", "image": "registry.local/b:1"}]}}
            pod = await client.create(PODS, body, "default")
            ctx = PodContext(client=client, runtime=runtime, images=ImageManager(runtime, _nothing, None),
                             node_name="metrics-node", host_ip="127.0.0.1", root_dir=tmp_path, scheme="simulated",
                             fetch=_nothing)
            worker = PodWorker(ctx, pod)
            watch_running(lambda: [(worker.sandbox_running, worker.container_states())])
            for _ in range(20):
                await worker.sync()
                if (worker.pod.get("status") or {}).get("phase") == "Running":
                    break
                await asyncio.sleep(0.1)
            after = await scrape()
            started = "kubelet_pod_start_sli_duration_seconds_count"
            assert after.value(started) == before.value(started) + 1
            assert after.value("kubelet_running_pods") == 1
            assert after.value("kubelet_running_containers", container_state="running") == 2
            assert after.value("kubelet_running_containers", container_state="exited") == 0
            await worker.sync()  # a pod's start is observed once
            assert (await scrape()).value(started) == after.value(started)
        await streaming.stop()

    asyncio.run(run())
