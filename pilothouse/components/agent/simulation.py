"""Simulated nodes: many Nodes in one process, pods "running" without containers.

For scale tests of the control plane (the seed's clusters, and beyond) on one machine: ``--simulate
N`` registers ``<prefix>-0000`` ... each with its own Lease heartbeat (first renewals spread over the
renew interval so N nodes do not renew in lockstep). Pods bound to them are marked Running at once,
with a fake IP, and terminating pods are deleted with grace 0. Status writes go through a small pool
of concurrent writers, and each pod's status is written once (the Running one), as a kubelet whose
containers start instantly would.

Pods are seen as kubelets see them (``watch="per-node"``, the default): one pod watch per node,
filtered by ``fieldSelector=spec.nodeName=<node>``, so the API server carries the fan-out of N
watchers that a real cluster gives it. ``watch="shared"`` keeps the older single informer over all
pods (one watch for the whole process): far cheaper for the server while it fans every event out to
every watcher, and useful to tell the cost of the watches from the rest. Each node reads its Node
from an informer, as the kubelet's node lister, not with a GET at every status update (one informer
over the process's Nodes, where each kubelet watches its own: see ``__init__``).

Each node may have its own identity (``tokens``: node name to bearer token, the user
``system:node:<name>`` of a static token file, :func:`node_tokens`): its heartbeat, its pod watch and
its pods' status then go out under that user, as each kubelet has its own credential. The Node
authorizer and NodeRestriction then hold each node to itself, and priority and fairness sees one flow
per node; under the process's one identity all N nodes are one flow (``ByUser``), whose few queues
refuse a burst that N kubelets would spread over N flows.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging

from pilothouse.client import errors
from pilothouse.client.informer import EventHandler, Informer, InformerFactory
from pilothouse.client.rest import APIClient, resource
from pilothouse.components.agent.metrics import POD_STARTS, watch_running
from pilothouse.components.agent.node import NodeConfig, NodeStatusManager
from pilothouse.components.agent.status import qos_class
from pilothouse.machinery import meta
from pilothouse.machinery.kinds import ResourceType
from pilothouse.machinery.meta import Object
from pilothouse.machinery.tokenfile import read_token_file

__all__ = ["WATCH_MODES", "SimulatedNodes", "node_tokens", "simulated_node_names"]

log = logging.getLogger("pilothouse.agent.simulated")

PODS = resource("", "v1", "pods")
NODES = resource("", "v1", "nodes")
SIM_CAPACITY = {"cpu": "32", "memory": "131914816Ki", "ephemeral-storage": "514937088Ki", "pods": "110",
                "hugepages-1Gi": "0", "hugepages-2Mi": "0"}
#: per-node: a kubelet's own filtered pod watch per node; shared: one informer over all pods
WATCH_MODES = ("per-node", "shared")


def simulated_node_names(prefix: str, count: int) -> list[str]:
    return [f"{prefix}-{i:04d}" for i in range(count)]


def node_tokens(path: str, names: list[str]) -> dict[str, str]:
    """Each node's token from a static token file: the one of the user ``system:node:<name>``, as
    its kubelet would authenticate. Every node must have one: a node left on the process's identity
    would be refused by the Node authorizer, or measured as another caller."""
    by_user = {record.user: record.token for record in read_token_file(path)}
    missing = [name for name in names if f"system:node:{name}" not in by_user]
    if missing:
        raise ValueError(f"{path} has no token for system:node:{missing[0]} ({len(missing)} nodes without one)")
    return {name: by_user[f"system:node:{name}"] for name in names}


class SimulatedNodes:
    def __init__(self, client: APIClient, names: list[str], *, labels: dict[str, str] | None = None,
                 lease_duration: int = 40, status_update_frequency: float = 10.0, port: int = 10250,
                 register: bool = True, writers: int = 48, taints: list[Object] | None = None,
                 watch: str = "per-node", tokens: dict[str, str] | None = None) -> None:
        if watch not in WATCH_MODES:
            raise ValueError(f"watch mode must be one of {WATCH_MODES}, not {watch!r}")
        if tokens and watch != "per-node":
            raise ValueError("nodes with their own identities watch their own pods (watch='per-node')")
        self.client = client
        self.names = names
        self.name_set = set(names)
        #: the client each node speaks through: its own identity over the shared connections, or the process's
        self.clients = {name: client.as_token(tokens[name]) if tokens else client for name in names}
        self.managers = [NodeStatusManager(self.clients[name], NodeConfig(
            name=name, address=f"10.{200 + i // 65536 % 50}.{i // 256 % 256}.{i % 256}", port=port,
            labels=dict(labels or {}), taints=list(taints or []), register=register, capacity=dict(SIM_CAPACITY),
            runtime_version="simulated://0.1.0", os_image="pilothouse simulated node", kernel_version="simulated",
            lease_duration=lease_duration, status_update_frequency=status_update_frequency,
            jitter=max(1.0, lease_duration / 4))) for i, name in enumerate(names)]
        self.node_ips = {m.config.name: m.config.address for m in self.managers}
        self.factory = InformerFactory(client)
        #: informers under a node's identity, started and stopped here (the factory's use the process's)
        self._own_informers: list[Informer] = []
        # The kubelet's pod source: spec.nodeName=<node> (pkg/kubelet/config/apiserver.go). The shared
        # mode's one watch is unfiltered, except for a single node under its own identity, which may
        # list only its pods (the Node authorizer's narrowing).
        one = len(names) == 1
        shared = None if watch == "per-node" else self.factory.informer(
            PODS, field_selector=f"spec.nodeName={names[0]}" if one else None)
        self.informers = ({name: self._informer(name, PODS, f"spec.nodeName={name}") for name in names}
                          if shared is None else dict.fromkeys(names, shared))
        # The kubelet's node lister, read at each status update instead of a GET. One informer on the
        # process's Nodes for all of them, not one per node as each kubelet has: over HTTP/1.1 a watch is
        # a connection, and 5,000 more watch connections (each with its LIST and relists) took a full
        # core of the agents in the full-scale density run while the Node events are few (a status
        # report in 5 minutes per node). Under one node's identity when nodes have their own: a node
        # may list and watch every Node.
        nodes = Informer(self.clients[names[0]], NODES,
                         field_selector=f"metadata.name={names[0]}" if one else None)
        self._own_informers.append(nodes)
        for manager in self.managers:
            manager.node_lister = functools.partial(nodes.get, manager.config.name)
        self.queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self._queued: set[str] = set()
        #: uids whose Running status was written: written once, even if an older event of the pod
        #: (its binding, say) arrives after the write and before the watch shows Running
        self._started: set[str] = set()
        self._writers = writers
        self._tasks: list[asyncio.Task[None]] = []
        self._ips = itertools.count(1)
        self.pod_ips: dict[str, str] = {}

    def _informer(self, name: str, kind: ResourceType, selector: str) -> Informer:
        """Node ``name``'s informer of ``kind`` (its own pods), under its identity."""
        if self.clients[name] is self.client:
            return self.factory.informer(kind, field_selector=selector)
        informer = Informer(self.clients[name], kind, field_selector=selector)
        self._own_informers.append(informer)
        return informer

    async def start(self) -> None:
        semaphore = asyncio.Semaphore(64)

        async def register(manager: NodeStatusManager) -> None:
            async with semaphore:
                await manager.register()
            manager.start()
        await asyncio.gather(*(register(m) for m in self.managers))
        for informer in self._distinct_informers():
            informer.add_handler(EventHandler.on_object(self._on_pod, self._on_pod_deleted))
        watch_running(self._running)
        self.factory.start()
        for informer in self._own_informers:
            informer.start()
        self._tasks = [asyncio.create_task(self._writer()) for _ in range(self._writers)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(m.stop() for m in self.managers))
        await self.factory.stop()
        await asyncio.gather(*(informer.stop() for informer in self._own_informers))

    def _on_pod(self, pod: Object) -> None:
        node = (pod.get("spec") or {}).get("nodeName")
        if node not in self.name_set:
            return
        key = f"{pod['metadata'].get('namespace')}/{pod['metadata']['name']}"
        if (pod["metadata"].get("deletionTimestamp") or self._needs_status(pod)) and key not in self._queued:
            self._queued.add(key)
            self.queue.put_nowait((node, key))

    def _needs_status(self, pod: Object) -> bool:
        """Not yet written Running; or Running but not Ready, which another writer made it (the node
        lifecycle controller marks a late node's pods NotReady): the kubelet's status manager
        writes again whenever the server's status differs from its own, and only then."""
        status = pod.get("status") or {}
        phase = status.get("phase")
        if phase in ("Succeeded", "Failed"):
            return False
        if phase != "Running":
            return pod["metadata"].get("uid") not in self._started
        return any(c.get("type") == "Ready" and c.get("status") != "True" for c in status.get("conditions") or [])

    def _on_pod_deleted(self, pod: Object) -> None:
        uid = pod["metadata"].get("uid", "")
        self._started.discard(uid)
        self.pod_ips.pop(uid, None)

    def _distinct_informers(self) -> list[Informer]:
        return list({id(i): i for i in self.informers.values()}.values())

    def _running(self) -> list[tuple[bool, list[str]]]:
        """Every simulated pod that runs: a sandbox and its containers, all running."""
        return [(True, ["running"] * len((pod.get("spec") or {}).get("containers") or []))
                for informer in self._distinct_informers() for pod in informer.list()
                if (pod.get("spec") or {}).get("nodeName") in self.name_set
                and (pod.get("status") or {}).get("phase") == "Running"]

    def running_status(self, pod: Object) -> Object:
        uid = pod["metadata"].get("uid", "")
        ip = self.pod_ips.get(uid)
        if ip is None:
            n = next(self._ips)
            ip = self.pod_ips[uid] = f"10.{100 + n // 65536 % 100}.{n // 256 % 256}.{n % 256}"
        now = meta.format_time()
        host_ip = self.node_ips.get(pod["spec"].get("nodeName", ""), "")
        conditions = [{"type": kind, "status": "True", "lastProbeTime": None, "lastTransitionTime": now}
                      for kind in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady",
                                   "PodScheduled")]
        statuses = [{"name": c.get("name"), "image": c.get("image", ""), "imageID": "", "ready": True,
                     "restartCount": 0, "started": True, "containerID": f"simulated://{uid}-{c.get('name')}",
                     "state": {"running": {"startedAt": now}}, "lastState": {}}
                    for c in pod["spec"].get("containers") or []]
        return {"phase": "Running", "conditions": conditions, "hostIP": host_ip, "hostIPs": [{"ip": host_ip}],
                "podIP": ip, "podIPs": [{"ip": ip}],
                "startTime": (pod.get("status") or {}).get("startTime") or now, "containerStatuses": statuses,
                "qosClass": (pod.get("status") or {}).get("qosClass") or qos_class(pod)}

    async def _writer(self) -> None:
        while True:
            node, key = await self.queue.get()
            self._queued.discard(key)
            pod = self.informers[node].get(key)
            if pod is None:
                continue
            namespace, name = key.split("/", 1)
            try:
                if pod["metadata"].get("deletionTimestamp"):
                    self.pod_ips.pop(pod["metadata"].get("uid", ""), None)
                    with contextlib.suppress(errors.NotFoundError, errors.ConflictError):
                        await self.clients[node].delete(PODS, name, namespace, grace_period_seconds=0,
                                                        preconditions={"uid": pod["metadata"]["uid"]})
                elif self._needs_status(pod):
                    status = self.running_status(pod)
                    with contextlib.suppress(errors.NotFoundError):
                        await self.clients[node].patch(PODS, name, {"status": status}, namespace,
                                                       subresource="status")
                        self._started.add(pod["metadata"].get("uid", ""))
                        POD_STARTS.observe({**pod, "status": status})
            except (errors.APIError, errors.ConnectionFailed) as error:
                log.debug("simulated pod %s: %s; retrying", key, error)
                await asyncio.sleep(0.5)
                if key not in self._queued:
                    self._queued.add(key)
                    self.queue.put_nowait((node, key))
