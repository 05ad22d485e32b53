"""Controller throughput: scale a Deployment to N and time pod creation and binding; time a rolling
update of 100 replicas.

Runs a real API server process, the ReplicaSet/Deployment/GC controllers in this process, and the
test suite's fake kubelet (tests/controllers/conftest.py), which binds pods itself through
pods/binding (no scheduler) and marks them Running and Ready.

    .venv/bin/python bench/controller_scale.py [--sizes 100,1000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pilothouse.client.rest import resource
from pilothouse.components.controllers.deployment import DeploymentController
from pilothouse.components.controllers.garbagecollector import GarbageCollector
from pilothouse.components.controllers.replicaset import ReplicaSetController
from tests.conftest import start_server_process
from tests.controllers.conftest import Cluster

PODS = resource("", "v1", "pods")
DEPLOY = resource("apps", "v1", "deployments")


async def wait_for(cluster: Cluster, check: str, n: int, image: str | None = None, timeout: float = 600) -> None:
    informer = cluster.kubelet._informer  # the kubelet's pod cache: no extra listing load
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pods = [p for p in informer.list() if not p["metadata"].get("deletionTimestamp")
                and (image is None or p["spec"]["containers"][0]["image"] == image)]
        if check == "created" and len(pods) >= n:
            return
        if check == "bound" and sum(1 for p in pods if p["spec"].get("nodeName")) >= n:
            return
        await asyncio.sleep(0.02)
    raise TimeoutError(check)


async def run(sizes: list[int]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server_process(Path(tmp))
        cluster = Cluster(server.url, (ReplicaSetController, DeploymentController, GarbageCollector))
        await cluster.start()
        try:
            body = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "bench"},
                    "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "bench"}},
                             "template": {"metadata": {"labels": {"app": "bench"}},
                                          "spec": {"containers": [{"name": "c", "image": "img:1"}]}}}}
            await cluster.client.create(DEPLOY, body, "default")
            for n in sizes:
                start = time.monotonic()
                await cluster.client.patch(DEPLOY, "bench", {"spec": {"replicas": n}}, "default",
                                           subresource="scale")
                await wait_for(cluster, "created", n)
                created = time.monotonic() - start
                await wait_for(cluster, "bound", n)
                bound = time.monotonic() - start
                print(f"scale to {n}: created in {created:.2f}s ({n / created:.0f} pods/s), "
                      f"bound in {bound:.2f}s ({n / bound:.0f} pods/s)", flush=True)
                await cluster.client.patch(DEPLOY, "bench", {"spec": {"replicas": 0}}, "default",
                                           subresource="scale")
                await wait_for_empty(cluster)
            await cluster.client.patch(DEPLOY, "bench", {"spec": {"replicas": 100}}, "default", subresource="scale")
            await wait_for(cluster, "bound", 100)
            await asyncio.sleep(1)
            start = time.monotonic()
            await cluster.client.patch(DEPLOY, "bench", {"spec": {"template": {"spec": {"containers": [
                {"name": "c", "image": "img:2"}]}}}}, "default", patch_type="strategic")
            while True:
                d = await cluster.client.get(DEPLOY, "bench", "default")
                s = d.get("status") or {}
                if s.get("updatedReplicas") == 100 and s.get("availableReplicas") == 100 and \
                        s.get("replicas") == 100 and s.get("observedGeneration") == d["metadata"]["generation"]:
                    break
                await asyncio.sleep(0.05)
            print(f"rolling update of 100 replicas (25% surge/unavailable): {time.monotonic() - start:.2f}s")
        finally:
            await cluster.stop()
            server.stop()


async def wait_for_empty(cluster: Cluster) -> None:
    while cluster.kubelet._informer.list():
        await asyncio.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="100,1000")
    args = parser.parse_args()
    asyncio.run(run([int(s) for s in args.sizes.split(",")]))


if __name__ == "__main__":
    main()
