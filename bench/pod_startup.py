"""Pod startup latency with the node agent, and the engine floor; simulated-node scale.

Usage (root, podman installed): ``.venv/bin/python bench/pod_startup.py [--skip-real] [--skip-sim]
[--dockerd]``. Starts an API server, a podman service (or, with ``--dockerd``, a dockerd of its own: Debian's
docker.io) and an agent in temp dirs; measures create -> Running (observed by a
watch) p50/p99 for 10 and 50 pods, the same containers created straight through the engine API
(sandbox + app container, the floor), then ``--simulate 1000`` Ready time and 10,000 simulated pods
Running time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pilothouse.client.rest import APIClient, resource
from pilothouse.components.agent.runtime.docker import PAUSE_COMMAND, PAUSE_IMAGE, DockerRuntime
from pilothouse.components.agent.runtime.interface import LABEL_ROLE, ContainerSpec
from pilothouse.components.agent.runtime.podman_service import PodmanService
from tests.agent.conftest import AgentProcess
from tests.agent.dockerd import DockerdFixture
from tests.conftest import free_port, start_server_process

PODS = resource("", "v1", "pods")
NODES = resource("", "v1", "nodes")
LOOP = "trap 'exit 0' TERM; while :; do sleep 1; done"


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def engine_floor(runtime: DockerRuntime, count: int, no_network: bool = False) -> list[float]:
    """The pods' containers created straight through the engine: the sandbox on the engine's own
    network (or, ``no_network``, on none: the bare container cost), then the app container in it."""
    async def one(i: int) -> float:
        start = time.monotonic()
        labels = {"bench": "floor"}
        sandbox = await runtime.create_container(ContainerSpec(f"floor-sb-{count}-{i}", PAUSE_IMAGE,
                                                               {**labels, LABEL_ROLE: "sandbox"},
                                                               command=PAUSE_COMMAND[:1], args=PAUSE_COMMAND[1:],
                                                               no_network=no_network))
        await runtime.start_container(sandbox)
        app = await runtime.create_container(ContainerSpec(f"floor-app-{count}-{i}", PAUSE_IMAGE, labels,
                                                           command=["/bin/sh", "-c"], args=[LOOP], sandbox_id=sandbox))
        await runtime.start_container(app)
        return time.monotonic() - start
    results = await asyncio.gather(*(one(i) for i in range(count)))
    states = await runtime.list_containers({"bench": "floor"})
    for state in sorted(states, key=lambda s: s.name.startswith("floor-sb")):  # app containers first
        await runtime.remove_container(state.id)
    return list(results)


async def agent_latency(client: APIClient, node: str, count: int, tag: str) -> list[float]:
    created: dict[str, float] = {}
    running: dict[str, float] = {}
    done = asyncio.Event()

    async def watch() -> None:
        async for event in client.watch(PODS, "default", label_selector=f"bench={tag}"):
            obj = event.get("object") or {}
            name = (obj.get("metadata") or {}).get("name")
            if name in created and name not in running and (obj.get("status") or {}).get("phase") == "Running":
                running[name] = time.monotonic()
                if len(running) == count:
                    done.set()
                    return
    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0.3)
    for i in range(count):
        name = f"{tag}-{i}"
        created[name] = time.monotonic()
        await client.create(PODS, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {
            "bench": tag}}, "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1, "containers": [{
                "name": "c", "image": PAUSE_IMAGE, "imagePullPolicy": "Never", "command": ["/bin/sh", "-c", LOOP]}]}})
    await asyncio.wait_for(done.wait(), 300)
    watcher.cancel()
    for name in created:
        await client.delete(PODS, name, "default")
    return [running[n] - created[n] for n in created]


async def simulated(server_url: str, tmp: Path) -> None:
    proc = AgentProcess({"server": server_url, "node_name": "sim", "simulate": 1000, "runtime": "simulated",
                         "root_dir": str(tmp / "sim"), "port": free_port(), "lease_duration": 40},
                        tmp / "sim.log")
    client = APIClient(server_url)
    start = time.monotonic()
    proc.start()
    while True:
        nodes, _ = await client.list_all(NODES)
        ready = sum(1 for n in nodes if n["metadata"]["name"].startswith("sim-") and any(
            c["type"] == "Ready" and c["status"] == "True" for c in n["status"].get("conditions") or []))
        if ready >= 1000:
            break
        await asyncio.sleep(0.5)
    print(f"simulated: 1000 nodes Ready in {time.monotonic() - start:.1f}s")
    start = time.monotonic()
    semaphore = asyncio.Semaphore(32)

    async def make(i: int) -> None:
        async with semaphore:
            await client.create(PODS, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"s-{i}"},
                                       "spec": {"nodeName": f"sim-{i % 1000:04d}",
                                                "containers": [{"name": "c", "image": "busybox:1.36"}]}})
    await asyncio.gather(*(make(i) for i in range(10_000)))
    created = time.monotonic() - start
    while True:
        pods, _ = await client.list_all(PODS, "default")
        if sum(1 for p in pods if p["metadata"]["name"].startswith("s-")
               and (p.get("status") or {}).get("phase") == "Running") >= 10_000:
            break
        await asyncio.sleep(1)
    print(f"simulated: 10000 pods created in {created:.1f}s, all Running in {time.monotonic() - start:.1f}s")
    proc.stop()
    await client.close()


async def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="pilothouse-bench-"))
    server = start_server_process(tmp / "server")
    engine: PodmanService | DockerdFixture
    if "--dockerd" in sys.argv:
        engine = DockerdFixture(tmp / "dockerd")
        engine.directory.mkdir()
        await asyncio.to_thread(engine.start)
    else:
        engine = PodmanService(tmp / "podman.sock")
        await engine.start()
    print(f"engine: {'dockerd' if isinstance(engine, DockerdFixture) else 'podman'}")
    runtime = DockerRuntime(engine.endpoint)
    await runtime.start()
    await runtime.ensure_pause_image()
    try:
        if "--skip-real" not in sys.argv:
            agent = AgentProcess({"server": server.url, "node_name": "bench", "runtime_endpoint": engine.endpoint,
                                  "root_dir": str(tmp / "agent"), "port": free_port()}, tmp / "agent.log")
            agent.start()
            client = APIClient(server.url)
            # dockerd runs here without a bridge of its own (see tests/agent/dockerd.py): its "engine
            # network" is none, so there it has one floor only
            own_network = not isinstance(engine, DockerdFixture)
            try:
                for count in (10, 50):
                    floor = await engine_floor(runtime, count, no_network=not own_network)
                    await asyncio.sleep(2)
                    bare = await engine_floor(runtime, count, no_network=True) if own_network else floor
                    await asyncio.sleep(2)
                    latency = await agent_latency(client, "bench", count, f"b{count}")
                    print(f"{count} pods: agent p50 {statistics.median(latency):.2f}s p99 {pct(latency, 99):.2f}s | "
                          f"engine floor p50 {statistics.median(floor):.2f}s p99 {pct(floor, 99):.2f}s | "
                          f"no-network floor p50 {statistics.median(bare):.2f}s p99 {pct(bare, 99):.2f}s | "
                          f"agent p99 / floor p99 {pct(latency, 99) / pct(floor, 99):.2f}")
                    await asyncio.sleep(3)
            finally:
                await client.close()
                agent.stop()
        if "--skip-sim" not in sys.argv:
            await simulated(server.url, tmp)
    finally:
        # leave nothing running: the agent keeps containers across its own restarts by design
        # app containers before the sandboxes whose namespaces they share
        leftovers = await runtime.list_containers()
        for state in sorted(leftovers, key=lambda s: s.labels.get("io.pilothouse.role") == "sandbox"):
            with contextlib.suppress(Exception):
                await runtime.remove_container(state.id)
        await runtime.close()
        if isinstance(engine, DockerdFixture):
            await asyncio.to_thread(engine.stop)
        else:
            await engine.stop()
        server.stop()
    print(json.dumps({"tmp": str(tmp)}))


if __name__ == "__main__":
    asyncio.run(main())
