"""The highly available control plane with real processes: etcd members, ``pilothouse server``s, kubectl.

* two API servers on one etcd: what one writes, the other reads and watches (the real kubectl too);
* a three-member etcd under the API: losing one member during a write burst loses no acknowledged
  write and the API keeps serving; losing two makes writes fail fast with a 5xx Status; they work
  again when a member returns;
* SIGKILL of the server whose scheduler holds the lease: its children die with it, another server's
  scheduler takes the lease once it expires and binds new pods.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from pilothouse.client import errors
from pilothouse.client.leaderelection import LEASES
from pilothouse.client.rest import APIClient, resource
from tests.conftest import KUBECTL, ServerProcess, start_server_process, write_burst
from tests.store.etcd_server import EtcdCluster, etcd_binary

pytestmark = pytest.mark.skipif(etcd_binary() is None, reason="etcd binary not found (apt-get install etcd-server)")

CONFIGMAPS = resource("", "v1", "configmaps")
NODES = resource("", "v1", "nodes")
PODS = resource("", "v1", "pods")
NO_COMPONENTS = ("--disable", "scheduler,controller-manager")
LEASE_SECONDS = 4.0


def configmap(name: str, value: str = "v") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default"},
            "data": {"k": value}}


# Fixture order matters: a test asks for its etcd before ``servers_stopped``, so the API servers
# are stopped (their components releasing their leases) while etcd still runs.


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[EtcdCluster]:
    with EtcdCluster(1, base_dir=tmp_path / "etcd") as cluster:
        yield cluster


@pytest.fixture
def etcd3(tmp_path: Path) -> Iterator[EtcdCluster]:
    cluster = EtcdCluster(3, base_dir=tmp_path / "etcd", heartbeat_ms=20, election_ms=200)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.fixture
def servers_stopped() -> Iterator[list[ServerProcess]]:
    """Servers a test starts; all stopped at the end whatever happens (tests stop them before etcd)."""
    started: list[ServerProcess] = []
    yield started
    for s in started:
        s.stop()


@pytest.fixture
async def clients() -> AsyncIterator[list[APIClient]]:
    opened: list[APIClient] = []
    yield opened
    for c in opened:
        await c.close()


def start(servers: list[ServerProcess], data_dir: Path, endpoint: str, *extra: str) -> ServerProcess:
    s = start_server_process(data_dir, extra=("--datastore-endpoint", endpoint, *extra))
    servers.append(s)
    return s


# ------------------------------------------------------------ shared etcd


async def test_two_api_servers_on_one_etcd_share_reads_and_watches(
        tmp_path: Path, etcd: EtcdCluster, servers_stopped: list[ServerProcess], clients: list[APIClient]) -> None:
    a = start(servers_stopped, tmp_path / "a", etcd.endpoint, *NO_COMPONENTS)
    b = start(servers_stopped, tmp_path / "b", etcd.endpoint, *NO_COMPONENTS)
    ca, cb = APIClient(a.url), APIClient(b.url)
    clients += [ca, cb]

    env = {**os.environ, "KUBECONFIG": str(b.kubeconfig), "HOME": str(b.data_dir / "home")}
    watcher = await asyncio.create_subprocess_exec(
        KUBECTL, "get", "configmaps", "-n", "default", "-w", "-o", "name",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    try:
        api_events: list[tuple[str, str]] = []

        async def api_watch() -> None:
            async for event in cb.watch(CONFIGMAPS, "default", resource_version="0", bookmarks=False):
                name = event["object"]["metadata"]["name"]
                if name == "shared":
                    api_events.append((event["type"], event["object"]["data"]["k"]))

        watch_task = asyncio.create_task(api_watch())
        await asyncio.sleep(1.0)  # kubectl's initial list and watch are established
        created = await ca.create(CONFIGMAPS, configmap("shared", "one"))
        read = await cb.get(CONFIGMAPS, "shared", "default")
        assert read["data"] == {"k": "one"}
        assert read["metadata"]["uid"] == created["metadata"]["uid"]
        assert read["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]

        assert watcher.stdout is not None
        line = await asyncio.wait_for(watcher.stdout.readline(), 10)
        assert line.decode().strip() == "configmap/shared"  # the ADDED event
        updated = {**read, "data": {"k": "two"}}
        await ca.update(CONFIGMAPS, updated)
        line = await asyncio.wait_for(watcher.stdout.readline(), 10)
        assert line.decode().strip() == "configmap/shared"  # the MODIFIED event

        deadline = time.monotonic() + 10
        while len(api_events) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert api_events == [("ADDED", "one"), ("MODIFIED", "two")]
        # And the other way round: written through B, listed through A.
        await cb.create(CONFIGMAPS, configmap("from-b"))
        names = {i["metadata"]["name"] for i in (await ca.list(CONFIGMAPS, "default"))["items"]}
        assert {"shared", "from-b"} <= names
        watch_task.cancel()
    finally:
        watcher.kill()
        await watcher.wait()


# ------------------------------------------------------ etcd member loss


async def _burst(client: APIClient, prefix: str, seconds: float, writers: int = 6) -> tuple[set[str], int]:
    acked, failures = await write_burst(lambda name: client.create(CONFIGMAPS, configmap(name)),
                                        lambda w, i: f"{prefix}-{w}-{i}", seconds, writers,
                                        (errors.ServerError, errors.ConnectionFailed))
    return set(acked), failures


async def test_etcd_member_loss_keeps_acknowledged_writes_and_quorum_loss_fails_fast(
        tmp_path: Path, etcd3: EtcdCluster,
        servers_stopped: list[ServerProcess], clients: list[APIClient]) -> None:
    a = start(servers_stopped, tmp_path / "a", etcd3.endpoint, *NO_COMPONENTS)
    b = start(servers_stopped, tmp_path / "b", etcd3.endpoint, *NO_COMPONENTS)
    ca, cb = APIClient(a.url, timeout=30), APIClient(b.url, timeout=30)
    clients += [ca, cb]

    async def stop_leader_soon() -> str:
        await asyncio.sleep(0.8)
        leader = etcd3.leader() or etcd3.members[0]
        await asyncio.to_thread(etcd3.stop_member, leader)
        return leader.name

    (acked_a, failed_a), (acked_b, failed_b), stopped = await asyncio.gather(
        _burst(ca, "a", 2.5), _burst(cb, "b", 2.5), stop_leader_soon())
    acked = acked_a | acked_b
    assert len(acked) > 50, (len(acked), failed_a + failed_b)
    # Every acknowledged create is there, through either server.
    for c in (ca, cb):
        items, _ = await c.list_all(CONFIGMAPS, "default")
        present = {i["metadata"]["name"] for i in items}
        assert acked <= present, sorted(acked - present)[:5]
    # The API keeps serving on two of three members.
    await ca.create(CONFIGMAPS, configmap("after-one-down"))
    assert (await cb.get(CONFIGMAPS, "after-one-down", "default"))["data"] == {"k": "v"}

    second = next(m for m in etcd3.members if m.running)
    await asyncio.to_thread(etcd3.stop_member, second)
    started = time.monotonic()
    with pytest.raises(errors.ServerError) as failed:
        await ca.create(CONFIGMAPS, configmap("no-quorum"))
    elapsed = time.monotonic() - started
    assert elapsed < 15, elapsed  # the store's request timeout (5 s) bounds it: no hang
    assert failed.value.code in (500, 503, 504)
    assert failed.value.status.get("kind") == "Status"
    assert failed.value.status.get("status") == "Failure"
    assert "unavailable" in failed.value.message.lower() or "timeout" in failed.value.message.lower()

    await asyncio.to_thread(etcd3.start_member, second, wait=False)
    deadline = time.monotonic() + 30
    while True:
        try:
            await cb.create(CONFIGMAPS, configmap("quorum-back"))
            break
        except (errors.ServerError, errors.ConnectionFailed):
            assert time.monotonic() < deadline, f"writes did not recover after {stopped} returned"
            await asyncio.sleep(0.5)
    assert (await ca.get(CONFIGMAPS, "quorum-back", "default"))["metadata"]["name"] == "quorum-back"


# ------------------------------------------------ control-plane failover


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")  # a zombie nobody reaps has exited


async def _holder(client: APIClient, name: str) -> str:
    try:
        lease = await client.get(LEASES, name, "kube-system")
    except (errors.NotFoundError, errors.ServerError, errors.ConnectionFailed):
        return ""
    return str(lease["spec"].get("holderIdentity") or "")


async def test_killing_the_leading_server_hands_over_the_scheduler(
        tmp_path: Path, etcd: EtcdCluster, servers_stopped: list[ServerProcess], clients: list[APIClient]) -> None:
    lease_flag = ("--leader-elect-lease-duration", f"{LEASE_SECONDS:g}")
    a = start(servers_stopped, tmp_path / "a", etcd.endpoint, *lease_flag)
    ca = APIClient(a.url)
    clients.append(ca)
    deadline = time.monotonic() + 20
    while not (await _holder(ca, "kube-scheduler") and await _holder(ca, "kube-controller-manager")):
        assert time.monotonic() < deadline, "server A's components never took their leases"
        await asyncio.sleep(0.2)
    first = {n: await _holder(ca, n) for n in ("kube-scheduler", "kube-controller-manager")}

    b = start(servers_stopped, tmp_path / "b", etcd.endpoint, *lease_flag)
    cb = APIClient(b.url)
    clients.append(cb)
    a_children = _children(a.process.pid)
    b_children = _children(b.process.pid)
    assert len(a_children) == 2 and len(b_children) == 2
    await asyncio.sleep(LEASE_SECONDS + 0.5)  # B's components campaign, but A keeps renewing
    assert {n: await _holder(cb, n) for n in first} == first

    a.process.send_signal(signal.SIGKILL)
    a.process.wait(5)
    killed = time.monotonic()
    # The supervisor's children die with it (PR_SET_PDEATHSIG), instead of lingering as orphans.
    while any(_alive(p) for p in a_children):
        assert time.monotonic() - killed < 10, "server A's children outlived it"
        await asyncio.sleep(0.1)

    while (holder := await _holder(cb, "kube-scheduler")) in ("", first["kube-scheduler"]):
        # Standbys watch the Lease, so they see the last renewal as it happens and take over when
        # the lease duration has passed since it: within the lease duration of the kill (plus the
        # moment the API calls take).
        assert time.monotonic() - killed < LEASE_SECONDS + 0.5, "the scheduler lease was not taken over in time"
        await asyncio.sleep(0.1)
    handover = time.monotonic() - killed
    assert holder != first["kube-scheduler"]
    assert handover >= LEASE_SECONDS * 0.5, handover  # a dead holder's lease is not stolen early

    table = b.kubectl("get", "lease", "-n", "kube-system").stdout
    assert holder in table

    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "worker-1",
                                                             "labels": {"kubernetes.io/hostname": "worker-1"}},
            "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
                       "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                       "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"}}}
    await cb.create(NODES, node)
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "after-failover", "namespace": "default"},
           "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
                                    "resources": {"requests": {"cpu": "100m"}}}]}}
    await cb.create(PODS, pod)
    deadline = time.monotonic() + 20
    while not (current := await cb.get(PODS, "after-failover", "default"))["spec"].get("nodeName"):
        if time.monotonic() > deadline:
            log = (b.data_dir / "server.log").read_text(errors="replace")[-3000:]
            raise AssertionError(f"the new leader's scheduler did not bind the pod: {current.get('status')}\n"
                                 f"scheduler lease: {await _holder(cb, 'kube-scheduler')}\n{log}")
        await asyncio.sleep(0.2)
    assert (await cb.get(PODS, "after-failover", "default"))["spec"]["nodeName"] == "worker-1"

    # The controller manager followed too.
    deadline = time.monotonic() + LEASE_SECONDS + 3
    while await _holder(cb, "kube-controller-manager") in ("", first["kube-controller-manager"]):
        assert time.monotonic() < deadline, "the controller-manager lease was not taken over"
        await asyncio.sleep(0.1)
    assert all(_alive(p) for p in b_children)
    print(f"scheduler lease handed over {handover:.2f}s after SIGKILL (lease {LEASE_SECONDS:g}s)")
