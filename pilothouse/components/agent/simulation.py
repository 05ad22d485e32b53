"""Simulated nodes: many Nodes in one process, pods "running" without containers.

For scale tests of the control plane (the seed's clusters, and beyond) on one machine: ``--simulate
N`` registers ``<prefix>-0000`` ... each with its own Lease heartbeat (first renewals spread over the
renew interval so N nodes do not renew in lockstep), and ONE pod informer for all of them (not N
watches) marks every pod bound to one of them Running at once, with a fake IP, and deletes
terminating pods with grace 0. Status writes go through a small pool of concurrent writers.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from typing import Any

from pilothouse.client import errors
from pilothouse.client.informer import EventHandler, InformerFactory
from pilothouse.client.rest import APIClient, resource
from pilothouse.components.agent.metrics import POD_STARTS, watch_running
from pilothouse.components.agent.node import NodeConfig, NodeStatusManager
from pilothouse.components.agent.status import qos_class
from pilothouse.machinery import meta

__all__ = ["SimulatedNodes", "simulated_node_names"]

log = logging.getLogger("pilothouse.agent.simulated")

Object = dict[str, Any]
PODS = resource("", "v1", "pods")
SIM_CAPACITY = {"cpu": "32", "memory": "131914816Ki", "ephemeral-storage": "514937088Ki", "pods": "110",
                "hugepages-1Gi": "0", "hugepages-2Mi": "0"}


def simulated_node_names(prefix: str, count: int) -> list[str]:
    return [f"{prefix}-{i:04d}" for i in range(count)]


class SimulatedNodes:
    def __init__(self, client: APIClient, names: list[str], *, labels: dict[str, str] | None = None,
                 lease_duration: int = 40, status_update_frequency: float = 10.0, port: int = 10250,
                 register: bool = True, writers: int = 48, taints: list[Object] | None = None) -> None:
        self.client = client
        self.names = names
        self.name_set = set(names)
        self.managers = [NodeStatusManager(client, NodeConfig(
            name=name, address=f"10.{200 + i // 65536 % 50}.{i // 256 % 256}.{i % 256}", port=port,
            labels=dict(labels or {}), taints=list(taints or []), register=register, capacity=dict(SIM_CAPACITY),
            runtime_version="simulated://0.1.0", os_image="pilothouse simulated node", kernel_version="simulated",
            lease_duration=lease_duration, status_update_frequency=status_update_frequency,
            jitter=max(1.0, lease_duration / 4))) for i, name in enumerate(names)]
        self.node_ips = {m.config.name: m.config.address for m in self.managers}
        self.factory = InformerFactory(client)
        # One node under its own identity may list only its pods (the Node authorizer's narrowing).
        self.informer = self.factory.informer(PODS, field_selector=f"spec.nodeName={names[0]}" if len(names) == 1
                                              else None)
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self._queued: set[str] = set()
        self._writers = writers
        self._tasks: list[asyncio.Task[None]] = []
        self._ips = itertools.count(1)
        self.pod_ips: dict[str, str] = {}

    async def start(self) -> None:
        semaphore = asyncio.Semaphore(64)

        async def register(manager: NodeStatusManager) -> None:
            async with semaphore:
                await manager.register()
            manager.start()
        await asyncio.gather(*(register(m) for m in self.managers))
        self.informer.add_handler(EventHandler.on_object(self._on_pod))
        watch_running(self._running)
        self.factory.start()
        self._tasks = [asyncio.create_task(self._writer()) for _ in range(self._writers)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(m.stop() for m in self.managers))
        await self.factory.stop()

    def _on_pod(self, pod: Object) -> None:
        if (pod.get("spec") or {}).get("nodeName") not in self.name_set:
            return
        key = f"{pod['metadata'].get('namespace')}/{pod['metadata']['name']}"
        phase = (pod.get("status") or {}).get("phase")
        if (pod["metadata"].get("deletionTimestamp") or phase not in ("Running", "Succeeded", "Failed")) \
                and key not in self._queued:
            self._queued.add(key)
            self.queue.put_nowait(key)

    def _running(self) -> list[tuple[bool, list[str]]]:
        """Every simulated pod that runs: a sandbox and its containers, all running."""
        return [(True, ["running"] * len((pod.get("spec") or {}).get("containers") or []))
                for pod in self.informer.list()
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
                "podIP": ip, "podIPs": [{"ip": ip}], "startTime": now, "containerStatuses": statuses,
                "qosClass": (pod.get("status") or {}).get("qosClass") or qos_class(pod)}

    async def _writer(self) -> None:
        while True:
            key = await self.queue.get()
            self._queued.discard(key)
            pod = self.informer.get(key)
            if pod is None:
                continue
            namespace, name = key.split("/", 1)
            try:
                if pod["metadata"].get("deletionTimestamp"):
                    self.pod_ips.pop(pod["metadata"].get("uid", ""), None)
                    with contextlib.suppress(errors.NotFoundError, errors.ConflictError):
                        await self.client.delete(PODS, name, namespace, grace_period_seconds=0,
                                                 preconditions={"uid": pod["metadata"]["uid"]})
                elif (pod.get("status") or {}).get("phase") not in ("Running", "Succeeded", "Failed"):
                    status = self.running_status(pod)
                    with contextlib.suppress(errors.NotFoundError):
                        await self.client.patch(PODS, name, {"status": status}, namespace, subresource="status")
                        POD_STARTS.observe({**pod, "status": status})
            except (errors.APIError, errors.ConnectionFailed) as error:
                log.debug("simulated pod %s: %s; retrying", key, error)
                await asyncio.sleep(0.5)
                if key not in self._queued:
                    self._queued.add(key)
                    self.queue.put_nowait(key)
