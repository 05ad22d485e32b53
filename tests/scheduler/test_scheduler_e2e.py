"""The scheduler against a real API server: placement, failure reporting, and requeueing on events.

The server runs with its embedded scheduler (and controller manager) disabled; the scheduler under
test runs in the test's event loop, so its queue can be inspected.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sched_helpers import PROCESSING_TOLERATION, anti_affinity, node, pod, seed_nodes

from pilothouse.client import errors
from pilothouse.client.rest import APIClient, resource
from pilothouse.components.scheduler import Scheduler
from tests.conftest import ServerProcess, create_default_service_account, start_server_process

PODS = resource("", "v1", "pods")
NODES = resource("", "v1", "nodes")
EVENTS = resource("", "v1", "events")

Object = dict[str, Any]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data_dir: Path = tmp_path_factory.mktemp("scheduler-server")
    proc = start_server_process(data_dir, extra=("--disable", "scheduler,controller-manager"))
    # No service account controller runs here: make the account ServiceAccount admission requires.
    create_default_service_account(proc.url)
    yield proc
    proc.stop()


@pytest.fixture
async def client(server: Any) -> AsyncIterator[APIClient]:
    api = APIClient(server.url)
    yield api
    # Leave the cluster empty for the next test: pods first (force), then nodes.
    for item in (await api.list(PODS, "default")).get("items") or []:
        try:
            await api.delete(PODS, item["metadata"]["name"], "default", grace_period_seconds=0)
        except errors.NotFoundError:
            pass
    for item in (await api.list(NODES)).get("items") or []:
        try:
            await api.delete(NODES, item["metadata"]["name"])
        except errors.NotFoundError:
            pass
    await api.close()


@pytest.fixture
async def scheduler(server: Any, client: APIClient) -> AsyncIterator[Scheduler]:
    sched = Scheduler(server.url, seed=7)
    await sched.start()
    yield sched
    await sched.stop()


async def wait_for(fetch: Callable[[], Any], check: Callable[[Any], bool], timeout: float = 10.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    last = None
    while asyncio.get_running_loop().time() < deadline:
        last = await fetch()
        if check(last):
            return last
        await asyncio.sleep(0.05)
    raise AssertionError(f"condition not met in {timeout}s; last: {last}")


async def wait_bound(client: APIClient, name: str, timeout: float = 10.0) -> str:
    obj = await wait_for(lambda: client.get(PODS, name, "default"), lambda p: bool(p["spec"].get("nodeName")),
                         timeout)
    return str(obj["spec"]["nodeName"])


def scheduled_condition(p: Object) -> Object | None:
    for condition in (p.get("status") or {}).get("conditions") or ():
        if condition.get("type") == "PodScheduled":
            return condition  # type: ignore[no-any-return]
    return None


async def wait_unschedulable(client: APIClient, name: str, message_part: str = "") -> Object:
    def check(p: Object) -> bool:
        condition = scheduled_condition(p)
        return (condition is not None and condition.get("status") == "False"
                and condition.get("reason") == "Unschedulable" and message_part in condition.get("message", ""))
    return await wait_for(lambda: client.get(PODS, name, "default"), check)  # type: ignore[no-any-return]


async def events_for(client: APIClient, uid: str) -> list[Object]:
    items = (await client.list(EVENTS, "default")).get("items") or []
    return [e for e in items if (e.get("involvedObject") or {}).get("uid") == uid]


async def create_nodes(client: APIClient, nodes: list[Object]) -> None:
    for n in nodes:
        await client.create(NODES, n)


async def test_seed_topology(client: APIClient, scheduler: Scheduler) -> None:
    await create_nodes(client, seed_nodes())
    web = {"app": "web"}
    for i in range(3):
        await client.create(PODS, pod(f"web-{i}", labels=web, affinity=anti_affinity(web)), "default")
    placed = [await wait_bound(client, f"web-{i}") for i in range(3)]
    assert sorted(placed) == ["azure-prd-02", "azure-prd-03", "azure-prd-04"]

    created = await client.create(PODS, pod("web-3", labels=web, affinity=anti_affinity(web)), "default")
    expected = ("0/4 nodes are available: 1 node(s) had untolerated taint {dedicated: processing}, "
                "3 node(s) didn't match pod anti-affinity rules. preemption: 0/4 nodes are available: "
                "1 Preemption is not helpful for scheduling, 3 No preemption victims found for incoming pod.")
    pending = await wait_unschedulable(client, "web-3")
    assert scheduled_condition(pending)["message"] == expected  # type: ignore[index]
    assert not pending["spec"].get("nodeName")
    events = await wait_for(lambda: events_for(client, created["metadata"]["uid"]), lambda e: bool(e))
    assert events[0]["reason"] == "FailedScheduling" and events[0]["type"] == "Warning"
    assert events[0]["message"] == expected
    assert events[0]["reportingComponent"] == "default-scheduler"  # events.k8s.io, as kube-scheduler

    await client.create(PODS, pod("proc", node_selector={"dedicated": "processing"},
                                  tolerations=PROCESSING_TOLERATION), "default")
    assert await wait_bound(client, "proc") == "ded-prd-01"

    bound = await client.get(PODS, "web-0", "default")
    assert scheduled_condition(bound)["status"] == "True"  # type: ignore[index]
    scheduled = await wait_for(lambda: events_for(client, bound["metadata"]["uid"]), lambda e: bool(e))
    assert scheduled[0]["reason"] == "Scheduled"
    assert scheduled[0]["message"] == f"Successfully assigned default/web-0 to {bound['spec']['nodeName']}"


async def test_insufficient_cpu_then_pod_deleted(client: APIClient, scheduler: Scheduler) -> None:
    await create_nodes(client, [node("small", cpu="1", memory="2Gi")])
    await client.create(PODS, pod("hog", cpu="800m"), "default")
    assert await wait_bound(client, "hog") == "small"
    await client.create(PODS, pod("late", cpu="500m"), "default")
    pending = await wait_unschedulable(client, "late")
    assert scheduled_condition(pending)["message"] == (  # type: ignore[index]
        "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: "
        "1 No preemption victims found for incoming pod.")
    assert scheduler.queue.where("default/late") == "unschedulable"
    # Deleting the hog frees the cpu: the NodeResourcesFit event moves the pod back at once.
    await client.delete(PODS, "hog", "default", grace_period_seconds=0)
    assert await wait_bound(client, "late", timeout=5) == "small"


async def test_a_pod_that_ends_frees_its_node_and_leaves_the_cache(client: APIClient,
                                                                   scheduler: Scheduler) -> None:
    """kube-scheduler's pod informer watches only pods that are not terminal
    (``status.phase!=Succeeded,status.phase!=Failed``): a pod that fails arrives as DELETED, frees
    its node at once and is no longer cached."""
    await create_nodes(client, [node("small", cpu="1", memory="2Gi")])
    await client.create(PODS, pod("done", cpu="800m"), "default")
    assert await wait_bound(client, "done") == "small"
    await client.create(PODS, pod("next", cpu="500m"), "default")
    await wait_unschedulable(client, "next")
    assert scheduler._pods is not None and scheduler._pods.get("default/done") is not None
    await client.patch(PODS, "done", {"status": {"phase": "Failed"}}, "default", subresource="status")
    assert await wait_bound(client, "next", timeout=5) == "small"
    assert scheduler._pods.get("default/done") is None
    assert scheduler.cache.get_pod("default/done") is None
    # a pod bound by its creator that succeeds leaves the cache too
    await client.create(PODS, pod("ended", node_name="small"), "default")
    await client.patch(PODS, "ended", {"status": {"phase": "Succeeded"}}, "default", subresource="status")
    await wait_for(lambda: client.get(PODS, "ended", "default"), lambda p: p["status"].get("phase") == "Succeeded")
    await asyncio.sleep(0.3)
    assert scheduler._pods.get("default/ended") is None and scheduler.cache.get_pod("default/ended") is None


async def test_cordon_and_taints_with_kubectl(server: Any, client: APIClient, scheduler: Scheduler) -> None:
    await create_nodes(client, [node("worker")])
    server.kubectl("cordon", "worker")
    await client.create(PODS, pod("c1"), "default")
    await wait_unschedulable(client, "c1", "1 node(s) were unschedulable.")
    tolerant = [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]
    await client.create(PODS, pod("daemon", tolerations=tolerant), "default")
    assert await wait_bound(client, "daemon") == "worker"
    server.kubectl("uncordon", "worker")
    assert await wait_bound(client, "c1", timeout=5) == "worker"

    server.kubectl("taint", "nodes", "worker", "team=blue:NoSchedule")
    await client.create(PODS, pod("c2"), "default")
    await wait_unschedulable(client, "c2", "1 node(s) had untolerated taint {team: blue}.")
    blue = [{"key": "team", "operator": "Equal", "value": "blue", "effect": "NoSchedule"}]
    await client.create(PODS, pod("c3", tolerations=blue), "default")
    assert await wait_bound(client, "c3") == "worker"
    server.kubectl("taint", "nodes", "worker", "team-")
    assert await wait_bound(client, "c2", timeout=5) == "worker"


async def test_pending_pod_scheduled_when_node_added(client: APIClient, scheduler: Scheduler) -> None:
    await create_nodes(client, [node("hdd-1", labels={"disk": "hdd"})])
    await client.create(PODS, pod("fast", node_selector={"disk": "ssd"}), "default")
    await wait_unschedulable(client, "fast", "1 node(s) didn't match Pod's node affinity/selector.")
    await create_nodes(client, [node("ssd-1", labels={"disk": "ssd"})])
    assert await wait_bound(client, "fast", timeout=5) == "ssd-1"


async def test_not_ready_node_and_other_scheduler(client: APIClient, scheduler: Scheduler) -> None:
    await create_nodes(client, [node("sick", ready="False")])
    await client.create(PODS, pod("s1"), "default")
    await wait_unschedulable(client, "s1", "1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }.")
    other = pod("mine", extra_spec={"schedulerName": "someone-else"})
    await client.create(PODS, other, "default")
    # The node becomes Ready (a condition update): s1 moves; the other scheduler's pod stays alone.
    sick = await client.get(NODES, "sick")
    sick["status"]["conditions"][0]["status"] = "True"
    await client.update_status(NODES, sick)
    assert await wait_bound(client, "s1", timeout=5) == "sick"
    await asyncio.sleep(0.3)
    assert not (await client.get(PODS, "mine", "default"))["spec"].get("nodeName")
