"""Whole-cluster throughput with simulated nodes: scale a Deployment, roll it, and time it.

Everything is real processes talking through the API, as in production: ``pilothouse server`` (with
its embedded scheduler and controller manager) and ``pilothouse agent --simulate N`` (N simulated
nodes with their own leases; pods go Running without containers). The benchmark only writes the
Deployment and watches pods:

1. scale 0 → R through the ``/scale`` subresource (what ``kubectl scale`` does) and time until R pods
   are created, bound and Running;
2. change the image of a 100-replica Deployment and time the rolling update until every pod runs
   the new template and the old ones are gone.

    .venv/bin/python bench/cluster_scale.py [--nodes 100] [--replicas 100,1000]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.conftest import OPEN_FLAGS, free_port, wait_healthy

DEPLOYMENTS = "/apis/apps/v1/namespaces/default/deployments"
PODS = "/api/v1/namespaces/default/pods"


def deployment(name: str, image: str) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": name}},
                     "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "app", "image": image,
                                                           "resources": {"requests": {"cpu": "10m"}}}]}}}}


class PodWatch:
    """Every pod of the benchmark as the watch last showed it."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session = session
        self.url = url
        self.pods: dict[str, dict[str, Any]] = {}
        self.changed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        async with self.session.get(self.url + PODS, params={"watch": "true", "resourceVersion": "0"},
                                    timeout=aiohttp.ClientTimeout(total=None)) as response:
            buffer = b""
            async for chunk in response.content.iter_any():
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    event = orjson.loads(line)
                    pod = event["object"]
                    if event["type"] == "DELETED":
                        self.pods.pop(pod["metadata"]["name"], None)
                    else:
                        self.pods[pod["metadata"]["name"]] = pod
                    self.changed.set()

    async def until(self, predicate: Any, timeout: float) -> float:
        start = time.perf_counter()
        deadline = start + timeout
        while not predicate(self.pods):
            self.changed.clear()
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                raise TimeoutError("benchmark condition not reached in time")
            try:
                await asyncio.wait_for(self.changed.wait(), remaining)
            except TimeoutError:
                continue
        return time.perf_counter() - start


def running(pods: dict[str, Any], app: str, image: str | None = None) -> int:
    return sum(1 for p in pods.values()
               if p["metadata"].get("labels", {}).get("app") == app and p["spec"].get("nodeName")
               and (p.get("status") or {}).get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
               and (image is None or p["spec"]["containers"][0]["image"] == image))


async def scenario(url: str, replicas: list[int], timeout: float) -> None:
    async with aiohttp.ClientSession() as session:
        watch = PodWatch(session, url)
        watch.task = asyncio.create_task(watch.run())
        for count in replicas:
            name = f"scale-{count}"
            await session.post(url + DEPLOYMENTS, json=deployment(name, "registry.local/app:1"))
            start = time.perf_counter()
            async with session.patch(f"{url}{DEPLOYMENTS}/{name}/scale", data=orjson.dumps(
                    {"spec": {"replicas": count}}), headers={"Content-Type": "application/merge-patch+json"}) as r:
                assert r.status == 200, await r.text()
            created = await watch.until(lambda pods, n=name, c=count: sum(
                1 for p in pods.values() if p["metadata"].get("labels", {}).get("app") == n) >= c, timeout)
            await watch.until(lambda pods, n=name, c=count: sum(
                1 for p in pods.values() if p["metadata"].get("labels", {}).get("app") == n
                and p["spec"].get("nodeName")) >= c, timeout)
            bound = time.perf_counter() - start
            await watch.until(lambda pods, n=name, c=count: running(pods, n) >= c, timeout)
            total = time.perf_counter() - start
            print(f"scale 0→{count:<5} created {created:6.2f}s  bound {bound:6.2f}s  Running {total:6.2f}s  "
                  f"({count / total:6.1f} pods/s)")
            await session.delete(f"{url}{DEPLOYMENTS}/{name}")
            await watch.until(lambda pods, n=name: not any(
                p["metadata"].get("labels", {}).get("app") == n for p in pods.values()), timeout)
        # Rolling update of 100 replicas.
        name = "roll"
        await session.post(url + DEPLOYMENTS, json=deployment(name, "registry.local/app:1"))
        await session.patch(f"{url}{DEPLOYMENTS}/{name}/scale", data=orjson.dumps({"spec": {"replicas": 100}}),
                            headers={"Content-Type": "application/merge-patch+json"})
        await watch.until(lambda pods: running(pods, name) >= 100, timeout)
        start = time.perf_counter()
        await session.patch(f"{url}{DEPLOYMENTS}/{name}", data=orjson.dumps(
            {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "registry.local/app:2"}]}}}}),
            headers={"Content-Type": "application/strategic-merge-patch+json"})

        def rolled(pods: dict[str, Any]) -> bool:
            mine = [p for p in pods.values() if p["metadata"].get("labels", {}).get("app") == name]
            return running(pods, name, "registry.local/app:2") >= 100 and len(mine) == 100

        elapsed = await watch.until(rolled, timeout)
        print(f"rolling update of 100 replicas: {elapsed:.2f}s")
        watch.task.cancel()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--replicas", default="100,1000")
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as data_dir:
        server = subprocess.Popen([sys.executable, "-m", "pilothouse", "server", "--data-dir", data_dir,
                                   "--port", str(port), *OPEN_FLAGS], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        agent = None
        try:
            wait_healthy(url, server)
            start = time.perf_counter()
            agent = subprocess.Popen([sys.executable, "-m", "pilothouse", "agent", "--server", url, "--simulate",
                                      str(args.nodes), "--node-name", "sim", "--root-dir", f"{data_dir}/agent"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            asyncio.run(wait_nodes(url, args.nodes, args.timeout))
            print(f"{args.nodes} simulated nodes Ready in {time.perf_counter() - start:.2f}s")
            asyncio.run(scenario(url, [int(r) for r in args.replicas.split(",")], args.timeout))
        finally:
            for process in (agent, server):
                if process is not None:
                    process.terminate()
                    process.wait(30)


async def wait_nodes(url: str, count: int, timeout: float, interval: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            async with session.get(url + "/api/v1/nodes") as response:
                nodes = (await response.json())["items"]
            ready = sum(1 for n in nodes for c in (n.get("status") or {}).get("conditions") or []
                        if c["type"] == "Ready" and c["status"] == "True")
            if ready >= count:
                return
            await asyncio.sleep(interval)
    raise TimeoutError("nodes not Ready")


if __name__ == "__main__":
    main()
