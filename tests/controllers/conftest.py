"""Fixtures for controller tests: a real API server, controllers in the test's loop, a fake kubelet.

``cluster`` starts the given controllers (default: replicaset, deployment, garbage collector,
namespace, serviceaccount) against the module's ``server`` (tests/conftest.py), with their own client
and informers, as a controller manager would. :class:`FakeKubelet` plays the node: it binds pods to
a node, marks them Running and Ready with a podIP, and finishes graceful deletions, so Deployments
can become available without a container runtime.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from pilothouse.client import errors
from pilothouse.client.informer import EventHandler, InformerFactory
from pilothouse.client.rest import APIClient, resource
from pilothouse.components.controllers.base import Controller, ControllerContext
from pilothouse.components.controllers.deployment import DeploymentController
from pilothouse.components.controllers.garbagecollector import GarbageCollector
from pilothouse.components.controllers.namespace import NamespaceController
from pilothouse.components.controllers.replicaset import ReplicaSetController
from pilothouse.components.controllers.serviceaccount import ServiceAccountController
from pilothouse.machinery import meta
from tests.conftest import ServerProcess, start_server_process

Object = dict[str, Any]

PODS = resource("", "v1", "pods")
NODES = resource("", "v1", "nodes")
DEFAULT_CONTROLLERS: tuple[type[Controller], ...] = (
    ReplicaSetController, DeploymentController, GarbageCollector, NamespaceController, ServiceAccountController)


def ready_status(pod: Object, ip: str) -> Object:
    """What a kubelet reports for a started pod whose containers are all ready."""
    now = meta.format_time()
    containers = (pod.get("spec") or {}).get("containers") or []
    return {
        "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": "10.0.0.1", "startTime": now,
        "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
            {"type": "Initialized", "status": "True", "lastTransitionTime": now},
            {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
            {"type": "Ready", "status": "True", "lastTransitionTime": now},
        ],
        "containerStatuses": [{"name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": True,
                               "started": True, "restartCount": 0,
                               "state": {"running": {"startedAt": now}}} for c in containers],
    }


class FakeKubelet:
    """Plays the node agent for every pod (optionally of one namespace) through the API."""

    def __init__(self, client: APIClient, node: str = "node-1", *, bind: bool = True) -> None:
        self.client = client
        self.node = node
        self.bind = bind
        #: When False, new pods stay Pending/not Ready (to hold a rollout mid-way).
        self.ready = True
        self._ips = itertools.count(2)
        self._informer = InformerFactory(client).informer(PODS)
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._informer.add_handler(EventHandler(self._seen, lambda _o, n: self._seen(n)))

    def _seen(self, pod: Object) -> None:
        self._queue.put_nowait(f"{pod['metadata']['namespace']}/{pod['metadata']['name']}")

    async def start(self) -> None:
        with contextlib.suppress(errors.AlreadyExistsError):
            await self.client.create(NODES, {"metadata": {"name": self.node}, "status": {
                "conditions": [{"type": "Ready", "status": "True"}],
                "allocatable": {"cpu": "64", "memory": "256Gi", "pods": "5000"},
                "capacity": {"cpu": "64", "memory": "256Gi", "pods": "5000"}}})
        self._informer.start()
        await self._informer.wait_synced()
        self._task = asyncio.create_task(self._loop())

    def poke(self) -> None:
        """Look at every pod again (after ``ready`` turned True)."""
        for pod in self._informer.list():
            self._seen(pod)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._informer.stop()

    async def _loop(self) -> None:
        while True:
            key = await self._queue.get()
            pod = self._informer.get(key)
            if pod is None:
                continue
            try:
                await self._handle(pod)
            except (errors.APIError, errors.ConnectionFailed):
                pass

    async def _handle(self, pod: Object) -> None:
        metadata = pod["metadata"]
        name, namespace = metadata["name"], metadata["namespace"]
        if metadata.get("deletionTimestamp"):
            await self.client.delete(PODS, name, namespace, grace_period_seconds=0)
            return
        node = (pod.get("spec") or {}).get("nodeName")
        if not node and self.bind:
            await self.client.create(PODS, {"apiVersion": "v1", "kind": "Binding",
                                            "metadata": {"name": name, "namespace": namespace},
                                            "target": {"apiVersion": "v1", "kind": "Node", "name": self.node}},
                                     namespace, name=name, subresource="binding")
            return  # the update event brings it back
        if not self.ready or (pod.get("status") or {}).get("phase") == "Running":
            return
        ip = next(self._ips)
        await self.client.update_status(PODS, {**pod, "status": ready_status(pod, f"10.244.{ip // 250}.{ip % 250}")})


class Cluster:
    """Controllers running in this event loop against ``server``."""

    def __init__(self, url: str, controllers: tuple[type[Controller], ...] = DEFAULT_CONTROLLERS) -> None:
        self.url = url
        self.client = APIClient(url, user_agent="test")
        # ServiceAccount admission refuses pods until their namespace has a ``default`` account, so
        # every cluster runs the controller that makes it, as a real controller manager does.
        self.controller_types = controllers if ServiceAccountController in controllers \
            else (*controllers, ServiceAccountController)
        self.kubelet = FakeKubelet(APIClient(url, user_agent="fake-kubelet"))
        self._ctl_client: APIClient | None = None
        self.controllers: list[Controller] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._informers: InformerFactory | None = None

    async def start_controllers(self) -> None:
        self._ctl_client = APIClient(self.url, user_agent="pilothouse-controller-manager")
        self._informers = InformerFactory(self._ctl_client)
        ctx = ControllerContext(self._ctl_client, self._informers)
        self.controllers = [cls(ctx) for cls in self.controller_types]
        self._informers.start()
        await self._informers.wait_synced(10)
        self._tasks = [asyncio.create_task(c.run()) for c in self.controllers]

    async def stop_controllers(self) -> None:
        for controller in self.controllers:
            await controller.stop()
            await controller.recorder.flush()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._informers is not None:
            await self._informers.stop()
        if self._ctl_client is not None:
            await self._ctl_client.close()
        self.controllers, self._tasks = [], []

    async def start(self) -> None:
        await self.kubelet.start()
        await self.start_controllers()

    async def stop(self) -> None:
        await self.stop_controllers()
        await self.kubelet.stop()
        await self.kubelet.client.close()
        await self.client.close()


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 15.0, interval: float = 0.05) -> Any:
    """Poll ``check`` until it returns something truthy; fail with its last value/error at the deadline."""
    deadline = asyncio.get_running_loop().time() + timeout
    last: Any = None
    while True:
        try:
            last = await check()
            if last:
                return last
        except (AssertionError, errors.APIError) as error:
            last = error
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {last!r}")
        await asyncio.sleep(interval)


async def live_pods(cluster: Cluster, ns: str, app: str) -> list[Object]:
    """The pods labelled ``app=<app>`` that are not being deleted."""
    items, _ = await cluster.client.list_all(PODS, ns, label_selector=f"app={app}")
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


async def replace_one_pod(cluster: Cluster, ns: str, app: str, count: int) -> None:
    """Once ``app`` has ``count`` live pods, delete one and see its controller make exactly one more."""

    async def settled() -> list[Object]:
        pods = await live_pods(cluster, ns, app)
        return pods if len(pods) == count else []
    victim = (await eventually(settled))[0]["metadata"]["name"]
    await cluster.client.delete(PODS, victim, ns)

    async def replaced() -> bool:
        names = {p["metadata"]["name"] for p in await live_pods(cluster, ns, app)}
        return len(names) == count and victim not in names
    await eventually(replaced)
    await asyncio.sleep(0.3)  # a stale cache must not create one more
    assert len(await live_pods(cluster, ns, app)) == count


@pytest.fixture
async def cluster(server: Any) -> AsyncIterator[Cluster]:
    c = Cluster(server.url)
    await c.start()
    try:
        yield c
    finally:
        await c.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Controller tests run their controllers (and play the kubelet and scheduler) themselves, so the
    server's own embedded scheduler and controller manager are off."""
    proc = start_server_process(tmp_path_factory.mktemp("server"),
                                extra=("--disable", "scheduler,controller-manager"))
    yield proc
    proc.stop()
