"""Services at scale (issue 16): S Services with EndpointSlices for their pods, and the latency of
endpoint updates during a rollout, with PASS/FAIL against 1 s at the 99th percentile.

Real processes through the API: ``pilothouse server`` (embedded store, scheduler, controller
manager with its EndpointSlice and Endpoints controllers) and ``pilothouse agent --simulate``
processes whose nodes report each pod Running and Ready with an IP, as kubelets do. The benchmark
creates S Deployments of P replicas (label ``app=<name>``) and S Services selecting them, and
follows every pod and every EndpointSlice of the namespace through two watches. It measures:

(a) the time from the first create until every Service has slices listing exactly its ready pods
    (a pod's endpoint state: ready, not ready, terminating or absent; compared for every pod);
(b) during a rollout of ``--rollout`` Deployments (a template annotation changed), the latency from
    each pod endpoint state change seen on the pod watch (its status write: Ready; its deletion:
    terminating, then gone) to the first EndpointSlice event of its Service that shows it: p50, p99,
    max, and PASS/FAIL against 1 s at p99;
(c) the controller manager's CPU seconds in each phase, and the EndpointSlice and Endpoints writes
    per endpoint change (from the server's ``apiserver_request_total``).

    .venv/bin/python bench/services_scale.py --services 1000 --pods-per-service 15   # 10%
    .venv/bin/python bench/services_scale.py                                          # 10,000 x 15

Every wait is bounded by ``--timeout``; on timeout what was reached is printed, marked.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from density import CPUMeter, Table, quantile, request_counts, wait_nodes

from tests.conftest import OPEN_FLAGS, free_port, wait_healthy

NAMESPACE = "svcscale"
PODS = f"/api/v1/namespaces/{NAMESPACE}/pods"
SLICES = f"/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices"
DEPLOYMENTS = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments"
SERVICES = f"/api/v1/namespaces/{NAMESPACE}/services"
MERGE = {"Content-Type": "application/merge-patch+json"}
SERVICE_LABEL = "kubernetes.io/service-name"

Object = dict[str, Any]
#: A pod's endpoint state: "ready", "notready", "terminating" or None (no endpoint).
State = str | None


def pod_state(pod: Object | None) -> State:
    """What the pod's endpoint must be, by the EndpointSlice controller's rules."""
    if pod is None:
        return None
    status = pod.get("status") or {}
    if not status.get("podIP") or status.get("phase") in ("Succeeded", "Failed"):
        return None
    if pod["metadata"].get("deletionTimestamp"):
        return "terminating"
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or ())
    return "ready" if ready else "notready"


def endpoint_state(endpoint: Object) -> State:
    conditions = endpoint.get("conditions") or {}
    if conditions.get("terminating"):
        return "terminating"
    return "ready" if conditions.get("ready") else "notready"


class World:
    """Pods and slices as the two watches show them, and the pending pod changes of the rollout."""

    def __init__(self) -> None:
        self.pods: dict[str, tuple[str, State]] = {}  # pod → (service, state)
        self.slices: dict[str, tuple[str, dict[str, State]]] = {}  # slice → (service, pod → state)
        self.by_service: dict[str, set[str]] = {}  # service → its slices
        self.measuring = False
        self.pending: dict[str, tuple[str, State, float]] = {}  # pod → (service, wanted, since)
        self.latencies: list[float] = []
        self.superseded = 0
        self.changes = 0

    def shown(self, service: str) -> dict[str, State]:
        """The endpoint state of each pod in the Service's slices."""
        shown: dict[str, State] = {}
        for name in self.by_service.get(service, ()):
            shown.update(self.slices[name][1])
        return shown

    def on_pod(self, kind: str, pod: Object, now: float) -> None:
        name = pod["metadata"]["name"]
        service = (pod["metadata"].get("labels") or {}).get("app", "")
        state = None if kind == "DELETED" else pod_state(pod)
        old = self.pods.get(name, (service, None))[1]
        if kind == "DELETED":
            self.pods.pop(name, None)
        else:
            self.pods[name] = (service, state)
        if state == old or not self.measuring:
            return
        self.changes += 1
        if name in self.pending:
            self.superseded += 1
        if self.shown(service).get(name) == state:
            self.pending.pop(name, None)
            self.latencies.append(0.0)
            return
        self.pending[name] = (service, state, now)

    def on_slice(self, kind: str, obj: Object, now: float) -> None:
        name = obj["metadata"]["name"]
        service = (obj["metadata"].get("labels") or {}).get(SERVICE_LABEL, "")
        if kind == "DELETED":
            self.slices.pop(name, None)
            self.by_service.get(service, set()).discard(name)
        else:
            endpoints = {(e.get("targetRef") or {}).get("name", ""): endpoint_state(e)
                         for e in obj.get("endpoints") or ()}
            self.slices[name] = (service, endpoints)
            self.by_service.setdefault(service, set()).add(name)
        if not self.pending:
            return
        shown = self.shown(service)
        for pod, (pod_service, wanted, since) in list(self.pending.items()):
            if pod_service == service and shown.get(pod) == wanted:
                self.latencies.append(now - since)
                del self.pending[pod]

    def wrong_services(self, services: set[str]) -> int:
        """How many Services' slices differ from their pods' endpoint states (an extra, a missing
        or a wrong endpoint, or no slice at all)."""
        wanted: dict[str, dict[str, State]] = {s: {} for s in services}
        for pod, (service, state) in self.pods.items():
            if state is not None and service in wanted:
                wanted[service][pod] = state
        return sum(1 for service in services
                   if not self.by_service.get(service) or self.shown(service) != wanted[service])


async def follow(session: aiohttp.ClientSession, url: str, handle: Any, stop: asyncio.Event) -> None:
    """List then watch ``url``, calling ``handle(type, object, now)``; relists after a 410."""
    revision = ""
    while not stop.is_set():
        if not revision:
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=600)) as response:
                body = orjson.loads(await response.read())
            for item in body["items"]:
                handle("ADDED", item, time.perf_counter())
            revision = body["metadata"]["resourceVersion"]
        params = {"watch": "1", "resourceVersion": revision, "allowWatchBookmarks": "true",
                  "timeoutSeconds": "300"}
        try:
            async with session.get(url, params=params, timeout=aiohttp.ClientTimeout(total=None)) as response:
                async for line in response.content:
                    event = orjson.loads(line)
                    obj = event["object"]
                    if event["type"] == "ERROR":
                        revision = "" if obj.get("code") == 410 else revision
                        break
                    revision = obj["metadata"].get("resourceVersion", revision)
                    if event["type"] != "BOOKMARK":
                        handle(event["type"], obj, time.perf_counter())
        except (aiohttp.ClientError, TimeoutError):
            await asyncio.sleep(0.5)


async def create_all(session: aiohttp.ClientSession, url: str, items: list[tuple[str, Object]],
                     concurrency: int = 32) -> int:
    """POST every (path, body) with ``concurrency`` in flight; returns the failures."""
    queue = list(reversed(items))
    failures = 0

    async def worker() -> None:
        nonlocal failures
        while queue:
            path, body = queue.pop()
            async with session.post(url + path, data=orjson.dumps(body),
                                    headers={"Content-Type": "application/json"}) as response:
                await response.read()
                failures += response.status >= 300
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return failures


def deployment(name: str, replicas: int) -> Object:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "app", "image": "registry.local/app:1",
                                                           "resources": {"requests": {"cpu": "10m"}}}]}}}}


def service(name: str) -> Object:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]}}


def endpoint_writes(before: Counter[tuple[str, str]], after: Counter[tuple[str, str]]) -> dict[str, int]:
    writes: dict[str, int] = {}
    for (verb, resource), count in (after - before).items():
        if verb in ("POST", "PUT", "PATCH", "DELETE") and resource in ("endpointslices", "endpoints"):
            writes[resource] = writes.get(resource, 0) + count
    return writes


async def settle(world: World, names: set[str], deadline: float, quiet: float = 0.0) -> bool:
    """Until every Service's slices are right (and no change pending), or the deadline."""
    while time.perf_counter() < deadline:
        if not world.pending and not world.wrong_services(names):
            return True
        await asyncio.sleep(0.5 + quiet)
    return False


async def scenario(args: argparse.Namespace, url: str, server: subprocess.Popen[bytes],
                   agents: list[subprocess.Popen[bytes]]) -> None:
    table = Table()
    deadline = time.perf_counter() + args.timeout
    names = {f"svc-{i:05d}" for i in range(args.services)}
    world = World()
    stop = asyncio.Event()
    meter = CPUMeter(server.pid, [a.pid for a in agents])
    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:
        start = time.perf_counter()
        ready = await wait_nodes(session, url, args.nodes, start + args.timeout / 4)
        table.add("nodes Ready", f"{ready}/{args.nodes} in {time.perf_counter() - start:.1f} s", "all",
                  ready >= args.nodes)
        async with session.post(url + "/api/v1/namespaces", json={"metadata": {"name": NAMESPACE}}) as response:
            await response.read()
        watches = [asyncio.create_task(follow(session, url + PODS, world.on_pod, stop)),
                   asyncio.create_task(follow(session, url + SLICES, world.on_slice, stop))]
        meter.read(starting=True)
        counts = await request_counts(session, url)
        start = time.perf_counter()
        failures = await create_all(session, url, [(SERVICES, service(n)) for n in sorted(names)]
                                    + [(DEPLOYMENTS, deployment(n, args.pods_per_service)) for n in sorted(names)])
        created = time.perf_counter() - start
        total = args.services * args.pods_per_service

        def all_ready() -> bool:
            return sum(1 for _, state in world.pods.values() if state == "ready") >= total

        while not all_ready() and time.perf_counter() < deadline:
            await asyncio.sleep(1.0)
        pods_ready = time.perf_counter() - start
        done = await settle(world, names, deadline)
        elapsed = time.perf_counter() - start
        meter.read()
        spent = meter.spent()
        after = await request_counts(session, url)
        writes = endpoint_writes(counts, after)
        wrong = world.wrong_services(names)
        table.add(f"(a) {args.services} Services x {args.pods_per_service} pods: all slices exact",
                  f"{elapsed:.1f} s after the first create ({created:.1f} s creating, create failures {failures}; "
                  f"pods Ready {pods_ready:.1f} s); wrong Services {wrong}", "exact", done and not wrong)
        table.add("    controller manager CPU, endpoint writes",
                  f"{spent.get('controller-manager', 0.0):.1f} s CPU; {writes}", "")

        # (b) the rollout
        rolled = sorted(names)[:args.rollout]
        world.measuring = True
        meter = CPUMeter(server.pid, [a.pid for a in agents])
        meter.read(starting=True)
        counts = after
        start = time.perf_counter()
        generations: dict[str, int] = {}
        for name in rolled:
            patch = {"spec": {"template": {"metadata": {"annotations": {"rollout": str(time.time())}}}}}
            async with session.patch(f"{url}{DEPLOYMENTS}/{name}", data=orjson.dumps(patch), headers=MERGE) as response:
                generations[name] = orjson.loads(await response.read())["metadata"]["generation"]

        async def rolled_out() -> bool:
            async with session.get(url + DEPLOYMENTS) as response:
                items = orjson.loads(await response.read())["items"]
            status = {d["metadata"]["name"]: d.get("status") or {} for d in items}
            # observedGeneration first: until the controller saw the patch, the old status reads "done"
            return all(status[n].get("observedGeneration", 0) >= generations[n]
                       and status[n].get("updatedReplicas") == args.pods_per_service
                       and status[n].get("replicas") == args.pods_per_service
                       and status[n].get("availableReplicas") == args.pods_per_service for n in rolled)

        while time.perf_counter() < deadline and not (await rolled_out() and
                                                      len(world.pods) == total and all_ready()):
            await asyncio.sleep(2.0)
        done = await settle(world, names, deadline)
        elapsed = time.perf_counter() - start
        meter.read()
        spent = meter.spent()
        after = await request_counts(session, url)
        writes = endpoint_writes(counts, after)
        latencies = world.latencies
        p99 = quantile(latencies, 0.99)
        table.add(f"(b) rollout of {len(rolled)} Deployments ({len(rolled) * args.pods_per_service} pods)",
                  f"{elapsed:.1f} s; {world.changes} pod endpoint changes, {len(latencies)} seen in slices, "
                  f"{len(world.pending)} never, {world.superseded} superseded; slices exact: {done}", "", done)
        table.add("    pod change -> EndpointSlice",
                  f"p50 {1000 * quantile(latencies, 0.5):.0f} ms, p99 {1000 * p99:.0f} ms, "
                  f"max {1000 * max(latencies, default=float('nan')):.0f} ms", "p99 < 1 s",
                  bool(latencies) and p99 < 1.0 and not world.pending)
        per_change = {k: round(v / max(1, world.changes), 2) for k, v in writes.items()}
        table.add("(c) controller manager CPU, writes per endpoint change",
                  f"{spent.get('controller-manager', 0.0):.1f} s CPU "
                  f"({1000 * spent.get('controller-manager', 0.0) / max(1, world.changes):.1f} ms per change), "
                  f"server {spent.get('server', 0.0):.1f} s; {writes} = {per_change} per change", "")
        stop.set()
        for task in watches:
            task.cancel()
        await asyncio.gather(*watches, return_exceptions=True)
    table.print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--pods-per-service", type=int, default=15)
    parser.add_argument("--nodes", type=int, default=0, help="simulated nodes (default: 30 pods per node)")
    parser.add_argument("--agents", type=int, default=1, help="agent processes the nodes are split over")
    parser.add_argument("--rollout", type=int, default=0, help="Deployments rolled out (default: 2%%, at least 5)")
    parser.add_argument("--log", default=os.devnull, help="where the server's and agents' output goes")
    parser.add_argument("--timeout", type=float, default=1800.0, help="bound on the whole run, in seconds")
    args = parser.parse_args()
    args.nodes = args.nodes or max(1, args.services * args.pods_per_service // 30)
    args.rollout = min(args.services, args.rollout or max(5, args.services // 50))
    port = free_port()
    print(f"services: {args.services} Services x {args.pods_per_service} pods on {args.nodes} nodes, "
          f"rollout of {args.rollout}; load {os.getloadavg()[0]:.1f}", flush=True)
    with tempfile.TemporaryDirectory() as data_dir, open(args.log, "ab") as log:
        server = subprocess.Popen([sys.executable, "-m", "pilothouse", "server", "--data-dir", data_dir,
                                   "--port", str(port), *OPEN_FLAGS], stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        agents: list[subprocess.Popen[bytes]] = []
        try:
            wait_healthy(url, server)
            share = -(-args.nodes // args.agents)
            for i in range(args.agents):
                count = min(share, args.nodes - i * share)
                agents.append(subprocess.Popen(
                    [sys.executable, "-m", "pilothouse", "agent", "--server", url, "--simulate", str(count),
                     "--node-name", f"sim{i}", "--port", str(free_port()), "--root-dir", f"{data_dir}/agent{i}"],
                    stdout=log, stderr=subprocess.STDOUT))
            asyncio.run(scenario(args, url, server, agents))
        finally:
            for process in (*agents, server):
                process.terminate()
            for process in (*agents, server):
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()


if __name__ == "__main__":
    main()
