"""The chaos harness: a workload against a :class:`~tests.chaos.cluster.ChaosCluster` while its processes
are SIGKILLed and restarted at random moments, then the checks that the cluster converged.

One seeded ``random.Random`` draws every choice (which write, which victim, how long it stays down),
and the seed is printed first, so ``CHAOS_SEED=N`` (or ``bench/chaos.py --seed N``) replays the same
sequence of decisions (timings still differ from run to run: processes start as fast as they start).

The workload (namespace ``chaos``): Deployments scaled up and down and restarted (a rollout), each
behind a Service; a StatefulSet scaled up and down; Jobs; ConfigMaps written over and over. Every write
is recorded as acknowledged (a 2xx), refused (a 4xx: not applied) or unknown (no answer, or a 5xx:
it may have been applied), so the checks know every value a field may legitimately hold at the end.

Afterwards, with every process running again, the cluster must converge (:func:`divergences` is
polled until it is empty): every acknowledged write present, each Deployment at its replicas with
all pods from its newest ReplicaSet, Running and Ready, its Service's EndpointSlices listing exactly
those pods, the StatefulSet's ordinals exactly 0..n-1 once each, each Job running exactly its parallelism
(simulated containers run until stopped, so Jobs do not complete there). And no 5xx was answered
except while the API server was down.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from tests.chaos.cluster import ChaosCluster, Component
from tests.chaos.realnode import RealNode, engine_divergences

__all__ = ["ChaosReport", "Recorder", "Workload", "divergences", "run_chaos", "seed_from_env"]

NS = "chaos"
APPS = f"/apis/apps/v1/namespaces/{NS}"
CORE = f"/api/v1/namespaces/{NS}"
BATCH = f"/apis/batch/v1/namespaces/{NS}"
MERGE = "application/merge-patch+json"


def seed_from_env() -> int:
    return int(os.environ.get("CHAOS_SEED") or random.SystemRandom().randrange(1, 2**31))


class Unknown(Exception):
    """No answer (connection refused or dropped, a timeout) or a 5xx: the write may have happened."""


@dataclass
class Recorder:
    """What the clients saw: every 5xx (when, what) and every window in which a victim was down."""

    started: float = field(default_factory=time.monotonic)
    #: (sent, answered, method and path, code, body) of each 5xx
    server_errors: list[tuple[float, float, str, int, str]] = field(default_factory=list)
    down: list[tuple[str, float, float]] = field(default_factory=list)
    kills: list[str] = field(default_factory=list)
    requests: int = 0
    unanswered: int = 0

    def at(self) -> float:
        return time.monotonic() - self.started

    def unexplained_5xx(self, grace: float = 0.0) -> list[str]:
        """5xx answers not explained by an outage: any to a request in flight while the API server was
        down (or ``grace`` seconds after), and while an etcd member was down only a write whose request
        that member died under (its fate is unknown, so a 503 is the honest answer; a read is retried
        elsewhere). In flight, not answered: a write whose member's leader died is answered only when
        the client's etcd request timeout (5 s) runs out, seconds after the member is back."""
        def explained(sent: float, answered: float, what: str, message: str) -> bool:
            for name, start, end in self.down:
                if answered < start or sent > end + grace:
                    continue
                if name == "apiserver":
                    return True
                if name.startswith("etcd-") and not what.startswith("GET ") and "etcd request /v3/kv/txn" in message:
                    return True
            return False

        return [f"t={answered:.2f}s {what}: {code} {message[:300]}"
                for sent, answered, what, code, message in self.server_errors
                if not explained(sent, answered, what, message)]


class API:
    """A small JSON client that records what it saw (no retries: every failure is the harness's to see)."""

    def __init__(self, url: str, recorder: Recorder) -> None:
        self.url = url
        self.recorder = recorder
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20))

    async def close(self) -> None:
        await self.session.close()

    async def call(self, method: str, path: str, body: Any = None, content_type: str = "application/json",
                   ) -> tuple[int, Any]:
        self.recorder.requests += 1
        sent = self.recorder.at()
        data = None if body is None else json.dumps(body)
        try:
            async with self.session.request(method, self.url + path, data=data,
                                            headers={"Content-Type": content_type}) as response:
                text = await response.text()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as error:
            self.recorder.unanswered += 1
            raise Unknown(f"{method} {path}: {type(error).__name__}") from None
        answer = json.loads(text) if text.startswith("{") else text
        if status >= 500:
            self.recorder.server_errors.append((sent, self.recorder.at(), f"{method} {path}", status, text))
            raise Unknown(f"{method} {path}: {status}")
        return status, answer

    async def get(self, path: str) -> Any:
        status, answer = await self.call("GET", path)
        if status != 200:
            raise Unknown(f"GET {path}: {status}")
        return answer


def _deployment(name: str, replicas: int, pod_spec: dict[str, Any] | None = None) -> dict[str, Any]:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "strategy": {"rollingUpdate": {"maxSurge": 2, "maxUnavailable": 1}},
                     "template": {"metadata": {"labels": labels},
                                  "spec": pod_spec or {"containers": [{"name": "c", "image": "sim/app:1"}]}}}}


def _service(name: str, selector: dict[str, str], headless: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {"selector": selector, "ports": [{"port": 80}]}
    if headless:
        spec["clusterIP"] = "None"
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec}


def _statefulset_object(replicas: int) -> dict[str, Any]:
    labels = {"app": "web"}
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "web"},
            "spec": {"replicas": replicas, "serviceName": "web", "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "c", "image": "sim/web:1"}]}}}}


def _job(name: str, completions: int) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"completions": completions, "parallelism": 2, "backoffLimit": 100,
                     "template": {"spec": {"restartPolicy": "Never",
                                           "containers": [{"name": "c", "image": "sim/job:1",
                                                           "command": ["exit", "0"]}]}}}}


@dataclass
class Workload:
    """The writes, and for each field the harness checks, every value it may hold at the end: the last
    acknowledged one and any unknown ones sent after it."""

    api: API
    rng: random.Random
    #: The real node's pod spec (tests/chaos/realnode.py): the Deployment ``r0`` runs there.
    real_pod: dict[str, Any] | None = None
    deployments: int = 3
    configmaps: int = 12
    max_replicas: int = 8
    max_web: int = 5
    max_real: int = 4
    replicas: dict[str, set[int]] = field(default_factory=dict)
    web: set[int] = field(default_factory=set)
    configmap_seq: dict[str, set[int]] = field(default_factory=dict)
    configmap_acked: dict[str, int] = field(default_factory=dict)
    jobs: dict[str, bool] = field(default_factory=dict)  # name → acknowledged (else unknown)
    sequence: int = 0
    log: list[str] = field(default_factory=list)

    async def setup(self) -> None:
        """The namespace and the objects the chaos then changes (before any kill)."""
        await self.api.call("POST", "/api/v1/namespaces", {"metadata": {"name": NS}})
        for i in range(self.deployments):
            name = f"d{i}"
            await self._must("POST", f"{APPS}/deployments", _deployment(name, 2))
            await self._must("POST", f"{CORE}/services", _service(name, {"app": name}))
            self.replicas[name] = {2}
        if self.real_pod is not None:
            await self._must("POST", f"{APPS}/deployments", _deployment("r0", 2, self.real_pod))
            await self._must("POST", f"{CORE}/services", _service("r0", {"app": "r0"}))
            self.replicas["r0"] = {2}
        await self._must("POST", f"{CORE}/services", _service("web", {"app": "web"}, headless=True))
        await self._must("POST", f"{APPS}/statefulsets", _statefulset_object(2))
        self.web = {2}

    async def _must(self, method: str, path: str, body: Any) -> None:
        status, answer = await self.api.call(method, path, body)
        assert status in (200, 201), (method, path, status, answer)

    def _possible(self, values: set[int], value: int, outcome: str) -> set[int]:
        if outcome == "acked":
            return {value}
        if outcome == "unknown":
            return values | {value}
        return values

    async def _write(self, method: str, path: str, body: Any, content_type: str = "application/json",
                     ) -> tuple[str, int]:
        try:
            status, _ = await self.api.call(method, path, body, content_type)
        except Unknown:
            return "unknown", 0
        return ("acked" if status < 300 else "refused"), status

    async def step(self) -> None:
        """One write, drawn from the seeded RNG."""
        self.sequence += 1
        roll = self.rng.random()
        if roll < 0.35:
            name = self._deployment_name()
            replicas = self.rng.randrange((self.max_real if name == "r0" else self.max_replicas) + 1)
            outcome, _ = await self._write("PATCH", f"{APPS}/deployments/{name}/scale",
                                           {"spec": {"replicas": replicas}}, MERGE)
            self.replicas[name] = self._possible(self.replicas[name], replicas, outcome)
            self.log.append(f"scale {name} {replicas}: {outcome}")
        elif roll < 0.75:
            await self._configmap(f"cm-{self.rng.randrange(self.configmaps)}")
        elif roll < 0.83:
            name = self._deployment_name()
            patch = {"spec": {"template": {"metadata": {"annotations": {"chaos/restart": str(self.sequence)}}}}}
            outcome, _ = await self._write("PATCH", f"{APPS}/deployments/{name}", patch, MERGE)
            self.log.append(f"rollout {name}: {outcome}")
        elif roll < 0.95:
            replicas = self.rng.randrange(self.max_web + 1)
            outcome, _ = await self._write("PATCH", f"{APPS}/statefulsets/web/scale",
                                           {"spec": {"replicas": replicas}}, MERGE)
            self.web = self._possible(self.web, replicas, outcome)
            self.log.append(f"scale web {replicas}: {outcome}")
        elif len(self.jobs) < 3:
            name = f"job-{len(self.jobs)}"
            outcome, _ = await self._write("POST", f"{BATCH}/jobs", _job(name, 4))
            if outcome != "refused":
                self.jobs[name] = outcome == "acked"
            self.log.append(f"job {name}: {outcome}")

    def _deployment_name(self) -> str:
        # Without a real node the draws are those of the runs before it (their seeds replay).
        names = [f"d{i}" for i in range(self.deployments)] + (["r0"] if self.real_pod is not None else [])
        return names[self.rng.randrange(len(names))]

    async def _configmap(self, name: str) -> None:
        value = self.sequence
        body = {"data": {"seq": str(value)}}
        outcome, status = await self._write("PATCH", f"{CORE}/configmaps/{name}", body, MERGE)
        if outcome == "refused" and status == 404:
            outcome, status = await self._write("POST", f"{CORE}/configmaps", {"metadata": {"name": name}, **body})
        if outcome == "acked":
            self.configmap_acked[name] = value
        self.configmap_seq[name] = self._possible(self.configmap_seq.get(name, set()), value, outcome)
        self.log.append(f"configmap {name} {value}: {outcome}")


def _ready(pod: dict[str, Any]) -> bool:
    status = pod.get("status") or {}
    return status.get("phase") == "Running" and any(
        c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions") or ())


def _why(pod: dict[str, Any]) -> str:
    """A pod that is not Ready, shortly: name, node, phase and the conditions that are not True."""
    status = pod.get("status") or {}
    down = ",".join(f"{c['type']}" for c in status.get("conditions") or () if c["status"] != "True")
    return f"{pod['metadata']['name']}@{pod['spec'].get('nodeName')}:{status.get('phase')}:{down}"


def _owner(obj: dict[str, Any]) -> str:
    refs = [r for r in obj["metadata"].get("ownerReferences") or () if r.get("controller")]
    return f"{refs[0]['kind']}/{refs[0]['name']}" if refs else ""


async def divergences(api: API, workload: Workload, node_names: list[str], real: RealNode | None = None,
                      ) -> list[str]:
    """What differs from the converged cluster (empty: converged); with ``real``, podman too."""
    found: list[str] = []
    pods = (await api.get(f"{CORE}/pods"))["items"]
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    replicasets = (await api.get(f"{APPS}/replicasets"))["items"]
    nodes = set(node_names)
    for node in (await api.get("/api/v1/nodes"))["items"]:
        ready = [c for c in node["status"].get("conditions") or () if c["type"] == "Ready"]
        if not ready or ready[0]["status"] != "True":
            found.append(f"node {node['metadata']['name']} not Ready: {ready[0] if ready else 'no condition'}")
    for pod in live:
        node = pod["spec"].get("nodeName")
        if node not in nodes:
            found.append(f"pod {pod['metadata']['name']} on node {node!r}")
    for name, possible in sorted(workload.replicas.items()):
        deployment = await api.get(f"{APPS}/deployments/{name}")
        want = deployment["spec"]["replicas"]
        if want not in possible:
            found.append(f"deployment {name}: spec.replicas {want}, acknowledged/possible {sorted(possible)}")
        status = deployment.get("status") or {}
        if status.get("observedGeneration", 0) < deployment["metadata"]["generation"]:
            found.append(f"deployment {name}: generation {deployment['metadata']['generation']} not observed")
        for key in ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas"):
            if status.get(key, 0) != want:
                found.append(f"deployment {name}: status.{key} {status.get(key, 0)} != {want}")
        owned = [rs for rs in replicasets if _owner(rs) == f"Deployment/{name}"]
        newest = max(owned, key=lambda rs: int(rs["metadata"].get("annotations", {}).get(
            "deployment.kubernetes.io/revision", "0")), default=None)
        for rs in owned:
            if rs is not newest and rs["spec"].get("replicas", 0):
                found.append(f"deployment {name}: old replicaset {rs['metadata']['name']} has "
                             f"{rs['spec']['replicas']} replicas")
        mine = [p for p in live if p["metadata"].get("labels", {}).get("app") == name]
        if len(mine) != want:
            found.append(f"deployment {name}: {len(mine)} pods for {want} replicas")
        if newest is not None:
            strangers = [p["metadata"]["name"] for p in mine if _owner(p) != f"ReplicaSet/{newest['metadata']['name']}"]
            if strangers:
                found.append(f"deployment {name}: pods not of the newest replicaset: {strangers}")
        unready = [_why(p) for p in mine if not _ready(p)]
        if unready:
            found.append(f"deployment {name}: pods not Ready: {unready}")
        found += await _endpoints(api, name, mine)
    found += await _check_statefulset(api, workload, live)
    found += await _jobs(api, workload, pods)
    for name, possible in sorted(workload.configmap_seq.items()):
        status, answer = await api.call("GET", f"{CORE}/configmaps/{name}")
        if status == 404:
            if name in workload.configmap_acked:
                found.append(f"configmap {name}: acknowledged seq {workload.configmap_acked[name]} lost (404)")
            continue
        seq = int(answer["data"]["seq"])
        if seq not in possible:
            found.append(f"configmap {name}: seq {seq}, acknowledged/possible {sorted(possible)}")
    if real is not None:
        found += await engine_divergences(real, pods)
    return found


async def _endpoints(api: API, service: str, pods: list[dict[str, Any]]) -> list[str]:
    slices = (await api.get(f"/apis/discovery.k8s.io/v1/namespaces/{NS}/endpointslices"
                            f"?labelSelector=kubernetes.io%2Fservice-name%3D{service}"))["items"]
    listed = sorted(address for s in slices for e in s.get("endpoints") or ()
                    if (e.get("conditions") or {}).get("ready") for address in e["addresses"])
    want = sorted(p["status"]["podIP"] for p in pods if _ready(p) and p["status"].get("podIP"))
    return [] if listed == want else [f"service {service}: endpointslices list {listed}, ready pods {want}"]


async def _check_statefulset(api: API, workload: Workload, live: list[dict[str, Any]]) -> list[str]:
    found: list[str] = []
    web = await api.get(f"{APPS}/statefulsets/web")
    want = web["spec"]["replicas"]
    if want not in workload.web:
        found.append(f"statefulset web: spec.replicas {want}, acknowledged/possible {sorted(workload.web)}")
    names = sorted(p["metadata"]["name"] for p in live if p["metadata"].get("labels", {}).get("app") == "web")
    if names != sorted(f"web-{i}" for i in range(want)):
        found.append(f"statefulset web: pods {names} for {want} replicas")
    unready = [_why(p) for p in live if p["metadata"].get("labels", {}).get("app") == "web" and not _ready(p)]
    if unready:
        found.append(f"statefulset web: pods not Ready: {unready}")
    status = web.get("status") or {}
    if status.get("readyReplicas", 0) != want or status.get("replicas", 0) != want:
        found.append(f"statefulset web: status {status.get('replicas')}/{status.get('readyReplicas')} for {want}")
    return found


async def _jobs(api: API, workload: Workload, pods: list[dict[str, Any]]) -> list[str]:
    """Simulated nodes run a container until it is stopped (their engine runs no command), so a Job
    never completes there: what must hold is that each Job runs exactly ``parallelism`` pods, all
    Running, whatever was killed meanwhile (no pod lost, none started twice), and counts them."""
    found: list[str] = []
    for name, acked in sorted(workload.jobs.items()):
        status, job = await api.call("GET", f"{BATCH}/jobs/{name}")
        if status == 404:
            if acked:
                found.append(f"job {name}: acknowledged, lost (404)")
            continue
        want = job["spec"]["parallelism"]
        mine = [p for p in pods if _owner(p) == f"Job/{name}" and not p["metadata"].get("deletionTimestamp")]
        running = [p for p in mine if (p.get("status") or {}).get("phase") == "Running"]
        active = (job.get("status") or {}).get("active", 0)
        if len(mine) != want or len(running) != want or active != want:
            found.append(f"job {name}: {len(mine)} pods, {len(running)} Running, status.active {active} "
                         f"(parallelism {want}): {[_why(p) for p in mine]}")
    return found


@dataclass
class ChaosReport:
    seed: int
    kills: list[str]
    writes: int
    requests: int
    unanswered: int
    converged_after: float | None
    divergences: list[str]
    unexplained_5xx: list[str]

    @property
    def ok(self) -> bool:
        return not self.divergences and not self.unexplained_5xx

    def summary(self) -> str:
        converged = f"{self.converged_after:.1f}s" if self.converged_after is not None else "never"
        lines = [f"chaos seed {self.seed}: {len(self.kills)} kills, {self.writes} writes, {self.requests} requests "
                 f"({self.unanswered} unanswered), converged after {converged}"]
        lines += [f"  kill: {k}" for k in self.kills]
        lines += [f"  DIVERGENCE: {d}" for d in self.divergences]
        lines += [f"  5xx outside a server outage: {e}" for e in self.unexplained_5xx]
        return "\n".join(lines)


async def _chaos(cluster: ChaosCluster, rng: random.Random, recorder: Recorder, until: float,
                 gap: tuple[float, float], max_down: float, victims: list[Component],
                 first: Sequence[Component]) -> None:
    first = list(first)
    while time.monotonic() < until:
        await asyncio.sleep(rng.uniform(*gap))
        if time.monotonic() >= until:
            return
        victim = first.pop(0) if first else rng.choice(victims)
        down = rng.uniform(0, max_down)
        start = recorder.at()
        async with cluster.lock:  # the supervisor leaves the victim down meanwhile
            await asyncio.to_thread(victim.kill)
            await asyncio.sleep(down)
            await asyncio.to_thread(victim.start)
        end = recorder.at()
        recorder.down.append((victim.name, start, end))
        recorder.kills.append(f"t={start:.1f}s {victim.name} down {end - start:.1f}s")
        print(f"chaos: {recorder.kills[-1]}", flush=True)


async def _supervise(cluster: ChaosCluster, recorder: Recorder) -> None:
    """Restart a component that exited by itself, as systemd's ``Restart=always`` (or the server's
    supervisor) does: the scheduler and the controller manager exit when they lose their lease, which
    they do whenever the API server stays away longer than their renew deadline."""
    while True:
        await asyncio.sleep(1.0)
        async with cluster.lock:
            for component in cluster.components:
                if not component.running:
                    recorder.kills.append(f"t={recorder.at():.1f}s {component.name} exited by itself, restarted")
                    print(f"chaos: {recorder.kills[-1]}", flush=True)
                    component.restarts += 1
                    await asyncio.to_thread(component.start)


async def run_chaos(cluster: ChaosCluster, seed: int, *, seconds: float, converge: float = 120.0,
                    gap: tuple[float, float] = (2.0, 6.0), max_down: float = 3.0,
                    victims: list[Component] | None = None, first: Sequence[Component] = (),
                    grace_5xx: float = 0.0) -> ChaosReport:
    """Workload and kills for ``seconds``, then up to ``converge`` seconds for the cluster to converge.
    ``first``: victims killed first, in this order (a CI-sized run that must kill them), then at random."""
    print(f"chaos seed {seed} (replay: CHAOS_SEED={seed})", flush=True)
    rng = random.Random(seed)
    recorder = Recorder()
    api = API(cluster.url, recorder)
    workload = Workload(api, random.Random(rng.randrange(2**31)),
                        real_pod=cluster.real.pod_spec() if cluster.real is not None else None)
    supervisor: asyncio.Task[None] | None = None
    try:
        await workload.setup()
        until = time.monotonic() + seconds
        chaos = asyncio.create_task(_chaos(cluster, random.Random(rng.randrange(2**31)), recorder, until, gap,
                                           max_down, victims or cluster.victims, first))
        supervisor = asyncio.create_task(_supervise(cluster, recorder))
        while time.monotonic() < until:
            await workload.step()
            await asyncio.sleep(workload.rng.uniform(0.02, 0.2))
        await chaos
        converge_start = time.monotonic()
        deadline = converge_start + converge
        found: list[str] = ["not checked"]
        converged_after = None
        while time.monotonic() < deadline:
            try:
                found = await divergences(api, workload, cluster.node_names, cluster.real)
            except Unknown as error:
                found = [f"check failed: {error}"]
            if not found:
                converged_after = time.monotonic() - converge_start
                break
            await asyncio.sleep(1.0)
        return ChaosReport(seed, recorder.kills, len(workload.log), recorder.requests, recorder.unanswered,
                           converged_after, found,
                           recorder.unexplained_5xx(grace_5xx))
    finally:
        if supervisor is not None:
            supervisor.cancel()
        await api.close()
