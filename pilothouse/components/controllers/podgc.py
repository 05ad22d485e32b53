"""The pod garbage collector: remove pods nobody else will.

As ``pkg/controller/podgc`` in Kubernetes 1.32, every ``podgc_period`` (20 s):

* terminated pods (Succeeded/Failed) beyond ``terminated_pod_gc_threshold`` (12,500; 0 disables)
  are deleted, oldest first;
* pods bound to a node that no longer exists are force-deleted (grace 0) once the node has been
  absent for ``podgc_quarantine`` (40 s) and a live read confirms it is gone; they first get a
  ``DisruptionTarget`` condition (``DeletionByPodGC``) and, when not terminal, phase Failed;
* unscheduled pods being deleted, and terminating pods on a not-ready node with the
  ``node.kubernetes.io/out-of-service`` taint, are force-deleted.

The collector is one periodic pass, not a keyed queue: its single key is ``"gc"``.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import time

from pilothouse.client import errors
from pilothouse.client.rest import resource
from pilothouse.components.controllers.base import Controller, ControllerContext
from pilothouse.components.controllers.podcontrol import PODS
from pilothouse.machinery import meta
from pilothouse.machinery.meta import Object

__all__ = ["PodGCController"]


NODES = resource("", "v1", "nodes")
OUT_OF_SERVICE = "node.kubernetes.io/out-of-service"


def _terminal(pod: Object) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def _node_ready(node: Object) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (node.get("status") or {}).get("conditions") or ())


class PodGCController(Controller):
    name = "podgc"
    workers = 1

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        options = ctx.options
        self.period = float(options.get("podgc_period", 20.0))
        self.threshold = int(options.get("terminated_pod_gc_threshold", 12500))
        self.quarantine = float(options.get("podgc_quarantine", 40.0))
        self.pods = ctx.informers.informer(PODS)
        self.nodes = ctx.informers.informer(NODES)
        self._absent_since: dict[str, float] = {}
        self._ticker: asyncio.Task[None] | None = None

    async def run(self) -> None:
        self._ticker = asyncio.create_task(self._tick())
        try:
            await super().run()
        finally:
            self._ticker.cancel()

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._ticker
        await super().stop()

    async def _tick(self) -> None:
        while True:
            self.enqueue_key("gc")
            await asyncio.sleep(self.period)

    async def sync(self, key: str) -> None:
        pods = self.pods.list()
        if self.threshold > 0:
            await self._gc_terminated(pods)
        await self._gc_orphaned(pods)
        await self._gc_unscheduled_terminating(pods)
        await self._gc_out_of_service(pods)

    async def _force_delete(self, pod: Object, reason: str | None = None, message: str = "") -> None:
        metadata = pod["metadata"]
        if reason is not None:
            status = copy.deepcopy(pod.get("status") or {})
            conditions = [c for c in status.get("conditions") or () if c.get("type") != "DisruptionTarget"]
            conditions.append({"type": "DisruptionTarget", "status": "True", "reason": reason, "message": message,
                               "lastTransitionTime": meta.format_time()})
            status["conditions"] = conditions
            if not _terminal(pod):
                status["phase"] = "Failed"
            with contextlib.suppress(errors.APIError):
                await self.client.update_status(PODS, {**pod, "status": status})
        try:
            await self.client.delete(PODS, metadata["name"], metadata["namespace"], grace_period_seconds=0,
                                     preconditions={"uid": metadata["uid"]})
        except errors.NotFoundError:
            return
        self.log.info("pod GC: force-deleted %s/%s", metadata["namespace"], metadata["name"])

    async def _gc_terminated(self, pods: list[Object]) -> None:
        terminated = [p for p in pods if _terminal(p) and not p["metadata"].get("deletionTimestamp")]
        excess = len(terminated) - self.threshold
        if excess <= 0:
            return
        terminated.sort(key=lambda p: (p["metadata"].get("creationTimestamp") or "", p["metadata"]["name"]))
        for pod in terminated[:excess]:
            await self._force_delete(pod)

    async def _gc_orphaned(self, pods: list[Object]) -> None:
        now = time.monotonic()
        existing = {n["metadata"]["name"] for n in self.nodes.list()}
        referenced = {n for p in pods if (n := (p.get("spec") or {}).get("nodeName"))}
        for name in list(self._absent_since):
            if name in existing or name not in referenced:
                del self._absent_since[name]
        due: set[str] = set()
        for name in referenced - existing:
            since = self._absent_since.setdefault(name, now)
            if now - since >= self.quarantine:
                due.add(name)
            else:
                self.queue.add_after("gc", self.quarantine - (now - since) + 0.01)
        for name in due:
            try:
                await self.client.get(NODES, name)
                continue  # the cache was behind: the node exists
            except errors.NotFoundError:
                pass
            for pod in pods:
                if (pod.get("spec") or {}).get("nodeName") == name:
                    await self._force_delete(pod, "DeletionByPodGC", "PodGC: node no longer exists")

    async def _gc_unscheduled_terminating(self, pods: list[Object]) -> None:
        for pod in pods:
            if pod["metadata"].get("deletionTimestamp") and not (pod.get("spec") or {}).get("nodeName"):
                await self._force_delete(pod)

    async def _gc_out_of_service(self, pods: list[Object]) -> None:
        nodes = {n["metadata"]["name"]: n for n in self.nodes.list()}
        for pod in pods:
            node = nodes.get((pod.get("spec") or {}).get("nodeName") or "")
            if node is None or not pod["metadata"].get("deletionTimestamp") or _node_ready(node):
                continue
            taints = (node.get("spec") or {}).get("taints") or ()
            if any(t.get("key") == OUT_OF_SERVICE for t in taints):
                await self._force_delete(pod, "DeletionByPodGC", "PodGC: node is out of service")
