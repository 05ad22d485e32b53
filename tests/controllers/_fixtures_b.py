"""Helpers for the DaemonSet/StatefulSet/Job/CronJob/Endpoints/node lifecycle/pod GC tests.

Controllers run in the test's event loop against the real server process of ``tests/conftest.py``;
the tests play the kubelet (pod status) and the node agent (Node objects, Leases) through the API.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pilothouse.client import errors
from pilothouse.client.informer import InformerFactory
from pilothouse.client.rest import APIClient, resource
from pilothouse.components.controllers.base import Controller, ControllerContext
from pilothouse.machinery import meta

__all__ = [
    "NAMESPACES",
    "NODES",
    "PODS",
    "Harness",
    "create_namespace",
    "create_node",
    "mark_pod",
    "pod_template",
    "run_controllers",
    "wait_for",
]

Object = dict[str, Any]
T = TypeVar("T")
C = TypeVar("C", bound=Controller)

PODS = resource("", "v1", "pods")
NODES = resource("", "v1", "nodes")
NAMESPACES = resource("", "v1", "namespaces")

_counter = itertools.count(1)


@dataclass
class Harness:
    ctx: ControllerContext
    controllers: list[Controller]

    def get(self, cls: type[C]) -> C:
        for controller in self.controllers:
            if isinstance(controller, cls):
                return controller
        raise KeyError(cls.__name__)


@contextlib.asynccontextmanager
async def run_controllers(url: str, *classes: type[Controller],
                          options: dict[str, Any] | None = None) -> AsyncIterator[Harness]:
    """Build the controllers on a fresh client and informers, run them, stop them at exit."""
    client = APIClient(url, user_agent="test-controller-manager")
    ctx = ControllerContext(client, InformerFactory(client), options=dict(options or {}))
    controllers = [cls(ctx) for cls in classes]
    ctx.informers.start()
    await ctx.informers.wait_synced(10)
    tasks = [asyncio.create_task(c.run()) for c in controllers]
    try:
        yield Harness(ctx, controllers)
    finally:
        for controller in controllers:
            await controller.stop()
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await ctx.informers.stop()
        await client.close()


async def wait_for(check: Callable[[], Awaitable[T | None]], timeout: float = 10.0,
                   interval: float = 0.05, what: str = "condition") -> T:
    """Poll ``check`` until it returns something truthy; fail the test after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: T | None = None
    while loop.time() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last value: {last!r}")


async def create_namespace(client: APIClient, prefix: str = "t") -> str:
    name = f"{prefix}-{next(_counter)}-{meta.generate_name_suffix(4)}"
    await client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    # No service account controller runs here; ServiceAccount admission wants the default account.
    await client.create(resource("", "v1", "serviceaccounts"), {
        "apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": name}}, name)
    return name


def _ready_condition(status: str = "True") -> Object:
    now = meta.format_time()
    return {"type": "Ready", "status": status, "reason": "KubeletReady", "message": "kubelet is posting ready status",
            "lastHeartbeatTime": now, "lastTransitionTime": now}


async def create_node(client: APIClient, name: str, *, labels: dict[str, str] | None = None,
                      taints: list[Object] | None = None, ready: str = "True") -> Object:
    """A Node as a node agent registers it, with a Ready condition."""
    body: Object = {"apiVersion": "v1", "kind": "Node",
                    "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
                    "spec": {"taints": taints} if taints else {}}
    node = await client.create(NODES, body)
    node["status"] = {"conditions": [_ready_condition(ready)],
                      "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                      "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                      "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}]}
    return await client.update_status(NODES, node)


async def mark_pod(client: APIClient, namespace: str, name: str, *, phase: str = "Running",
                   ready: bool = True, ip: str | None = "10.1.0.1", node: str | None = None,
                   exit_code: int | None = None) -> Object:
    """Write a pod's status as its kubelet would (optionally binding it to ``node`` first)."""
    for _ in range(20):
        pod = await client.get(PODS, name, namespace)
        if node and not pod["spec"].get("nodeName"):
            with contextlib.suppress(errors.ConflictError):  # bound meanwhile
                await client.create(PODS, {"apiVersion": "v1", "kind": "Binding",
                                           "metadata": {"name": name, "namespace": namespace},
                                           "target": {"apiVersion": "v1", "kind": "Node", "name": node}},
                                    namespace, name=name, subresource="binding")
            pod = await client.get(PODS, name, namespace)
        now = meta.format_time()
        status: Object = {"phase": phase, "startTime": now,
                          "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                          "lastTransitionTime": now},
                                         {"type": "ContainersReady", "status": "True" if ready else "False",
                                          "lastTransitionTime": now}]}
        if ip:
            status["podIP"] = ip
            status["podIPs"] = [{"ip": ip}]
        if exit_code is not None:
            status["containerStatuses"] = [{
                "name": c["name"], "ready": False, "restartCount": 0, "image": c.get("image", ""),
                "imageID": "", "state": {"terminated": {"exitCode": exit_code, "reason":
                                                        "Completed" if exit_code == 0 else "Error",
                                                        "startedAt": now, "finishedAt": now}}}
                for c in pod["spec"]["containers"]]
        pod["status"] = status
        try:
            return await client.update_status(PODS, pod)
        except errors.ConflictError:
            await asyncio.sleep(0.02)
    raise AssertionError(f"could not update status of pod {namespace}/{name}")


def pod_template(labels: dict[str, str], **spec: Any) -> Object:
    return {"metadata": {"labels": dict(labels)},
            "spec": {"containers": [{"name": "main", "image": "busybox:1.36",
                                     "ports": [{"name": "http", "containerPort": 8080}]}], **spec}}
