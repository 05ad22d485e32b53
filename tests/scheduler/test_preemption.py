"""Scheduler preemption (DefaultPreemption) against a real server, simulated nodes and the real kubectl.

A server with its embedded scheduler and controllers, one ``pilothouse agent --simulate 2`` process
(two nodes of 32 CPUs each); PriorityClasses and pods are written with kubectl, and what an operator
sees is read back with kubectl: the preemptor's ``nominatedNodeName``, the victim's ``DisruptionTarget``
condition and the ``Preempted`` event in ``kubectl describe``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sched_helpers import node as node_object
from sched_helpers import pod as pod_object

from pilothouse.components.scheduler.cache import Cache
from pilothouse.components.scheduler.nodeinfo import PodInfo
from pilothouse.components.scheduler.runtime import Framework
from tests.conftest import ServerProcess, start_server_process, terminate

Object = dict[str, Any]
NODES = ("sim-0000", "sim-0001")
HOLD = "example.com/hold"  # a finalizer that keeps a preempted pod visible (Terminating) for describe

PRIORITY_CLASSES = """
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata: {name: low}
value: 100
---
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata: {name: mid}
value: 500
---
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata: {name: high}
value: 1000
---
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata: {name: high-never}
value: 1000
preemptionPolicy: Never
"""


def wait_for(check: Callable[[], Any], timeout: float = 30.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data_dir: Path = tmp_path_factory.mktemp("preemption")
    server = start_server_process(data_dir / "server")
    agent = subprocess.Popen([sys.executable, "-m", "pilothouse", "agent", "--server", server.url, "--simulate",
                              str(len(NODES)), "--node-name", "sim", "--root-dir", str(data_dir / "agent")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: server.kubectl("get", "nodes", "--no-headers", check=False).stdout.count(" Ready ")
                 >= len(NODES), 60, "simulated nodes Ready")
        wait_for(lambda: server.kubectl("get", "serviceaccount", "default", check=False).returncode == 0, 30,
                 "the default ServiceAccount")
        server.kubectl("apply", "-f", "-", input=PRIORITY_CLASSES)
        yield server
    finally:
        terminate(agent)
        server.stop()


def pod_yaml(name: str, priority_class: str, cpu: str, node: str = "", *, on_node: bool = False,
             labels: dict[str, str] | None = None, finalizer: bool = False) -> str:
    """A pod requesting ``cpu``; pinned by nodeSelector (``node``) or created bound (``on_node``)."""
    spec: Object = {"priorityClassName": priority_class, "terminationGracePeriodSeconds": 0,
                    "containers": [{"name": "app", "image": "busybox", "resources": {"requests": {"cpu": cpu}}}]}
    if node and on_node:
        spec["nodeName"] = node
    elif node:
        spec["nodeSelector"] = {"kubernetes.io/hostname": node}
    metadata: Object = {"name": name, "labels": labels or {"test": "preemption"}}
    if finalizer:
        metadata["finalizers"] = [HOLD]
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec})


def get_pod(cluster: ServerProcess, name: str) -> Object | None:
    result = cluster.kubectl("get", "pod", name, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def create(cluster: ServerProcess, *manifests: str) -> None:
    for manifest in manifests:
        cluster.kubectl("create", "-f", "-", input=manifest)


def running(cluster: ServerProcess, *names: str) -> None:
    for name in names:
        wait_for(lambda name=name: (get_pod(cluster, name) or {}).get("status", {}).get("phase") == "Running",
                 30, f"{name} Running")


def release(cluster: ServerProcess, name: str) -> None:
    cluster.kubectl("patch", "pod", name, "--type=json", "-p", '[{"op": "remove", "path": "/metadata/finalizers"}]',
                    check=False)


@pytest.fixture
def clean(cluster: ServerProcess) -> Iterator[ServerProcess]:
    yield cluster
    for name in cluster.kubectl("get", "pods", "-o", "name").stdout.split():
        release(cluster, name.split("/", 1)[1])
    cluster.kubectl("delete", "pods,pdb", "--all", "--grace-period=0", "--force", "--wait=true", check=False)


def test_preempts_the_fewest_lower_priority_pods_and_describe_shows_it(clean: ServerProcess) -> None:
    cluster = clean
    node = NODES[0]
    # On sim-0000 (32 CPUs): low 20 + mid 10 = 30 used. The preemptor needs 12: taking both away makes
    # room, giving back mid (the more important) still leaves room, giving back low does not -> only low goes.
    create(cluster, pod_yaml("low", "low", "20", node, on_node=True, finalizer=True),
           pod_yaml("mid", "mid", "10", node, on_node=True))
    running(cluster, "low", "mid")
    create(cluster, pod_yaml("urgent", "high", "12", node))
    urgent = wait_for(lambda: (p := get_pod(cluster, "urgent")) and p["status"].get("nominatedNodeName") and p,
                      30, "urgent nominated")
    assert urgent["status"]["nominatedNodeName"] == node
    assert not urgent["spec"].get("nodeName")
    uid = urgent["metadata"]["uid"]

    victim = wait_for(lambda: (p := get_pod(cluster, "low")) and p["metadata"].get("deletionTimestamp") and p,
                      30, "low being deleted")
    condition = next(c for c in victim["status"]["conditions"] if c["type"] == "DisruptionTarget")
    assert (condition["status"], condition["reason"]) == ("True", "PreemptionByScheduler")
    assert condition["message"] == "default-scheduler: preempting to accommodate a higher priority pod"
    message = f"Preempted by pod {uid} on node {node}"
    described = wait_for(lambda: (out := cluster.kubectl("describe", "pod", "low").stdout) and message in out
                         and out, 30, "the Preempted event in kubectl describe")
    assert "Preempted" in described and "DisruptionTarget" in described
    events = json.loads(cluster.kubectl("get", "events", "--field-selector", "reason=Preempted", "-o", "json").stdout)
    assert [(e["involvedObject"]["name"], e["type"]) for e in events["items"]] == [("low", "Normal")]

    # While the victim terminates the preemptor waits (no second round of victims: mid stays).
    time.sleep(2)
    mid = get_pod(cluster, "mid")
    assert mid is not None and not mid["metadata"].get("deletionTimestamp")
    assert not (get_pod(cluster, "urgent") or {})["spec"].get("nodeName")

    release(cluster, "low")
    bound = wait_for(lambda: (p := get_pod(cluster, "urgent")) and p["spec"].get("nodeName"), 30, "urgent bound")
    assert bound == node
    failed = cluster.kubectl("describe", "pod", "urgent").stdout
    assert "FailedScheduling" in failed and "Insufficient cpu" in failed


def test_a_higher_preemptor_takes_back_a_lower_ones_nomination(clean: ServerProcess) -> None:
    cluster = clean
    node = NODES[1]
    create(cluster, pod_yaml("low", "low", "20", node, on_node=True, finalizer=True))
    running(cluster, "low")
    create(cluster, pod_yaml("second", "mid", "20", node))
    wait_for(lambda: ((get_pod(cluster, "second") or {}).get("status") or {}).get("nominatedNodeName") == node, 30,
             "second nominated")
    # low is held Terminating by its finalizer; a higher pod preempts on the same node and the
    # lower-priority nomination there is cleared, as kube-scheduler's prepareCandidate does.
    create(cluster, pod_yaml("first", "high", "20", node))
    wait_for(lambda: ((get_pod(cluster, "first") or {}).get("status") or {}).get("nominatedNodeName") == node, 30,
             "first nominated")
    wait_for(lambda: not ((get_pod(cluster, "second") or {}).get("status") or {}).get("nominatedNodeName"), 30,
             "second's nomination cleared")
    release(cluster, "low")
    assert wait_for(lambda: (get_pod(cluster, "first") or {}).get("spec", {}).get("nodeName"), 30) == node


def test_preemption_policy_never_waits_and_says_so(clean: ServerProcess) -> None:
    cluster = clean
    node = NODES[1]
    create(cluster, pod_yaml("filler", "low", "30", node, on_node=True))
    running(cluster, "filler")
    create(cluster, pod_yaml("polite", "high-never", "12", node))
    described = wait_for(lambda: (out := cluster.kubectl("describe", "pod", "polite").stdout)
                         and "preemptionPolicy=Never" in out and out, 30, "FailedScheduling")
    assert "preemption: not eligible due to preemptionPolicy=Never." in described
    time.sleep(1)
    filler = get_pod(cluster, "filler")
    assert filler is not None and not filler["metadata"].get("deletionTimestamp")
    polite = get_pod(cluster, "polite") or {}
    assert not polite["status"].get("nominatedNodeName") and not polite["spec"].get("nodeName")


def test_no_lower_priority_pods_means_no_victims(clean: ServerProcess) -> None:
    cluster = clean
    node = NODES[0]
    create(cluster, pod_yaml("peer", "high", "30", node, on_node=True))
    running(cluster, "peer")
    create(cluster, pod_yaml("late", "high", "12", node))
    described = wait_for(lambda: (out := cluster.kubectl("describe", "pod", "late").stdout)
                         and "preemption:" in out and out, 30, "FailedScheduling")
    # sim-0001 does not match the selector (not helpful); sim-0000 holds no lower-priority pod.
    assert ("0/2 nodes are available: 1 Insufficient cpu, 1 node(s) didn't match Pod's node affinity/selector. "
            "preemption: 0/2 nodes are available: 1 No preemption victims found for incoming pod, "
            "1 Preemption is not helpful for scheduling.") in " ".join(described.split())


def test_a_disruption_budget_steers_the_choice_of_node(clean: ServerProcess) -> None:
    cluster = clean
    # One low pod of 30 CPUs on each node; the one on sim-0000 is guarded by a PDB that allows no
    # disruption, so the preemptor (no selector) takes the unguarded one on sim-0001.
    create(cluster, pod_yaml("guarded", "low", "30", NODES[0], on_node=True, labels={"app": "guarded"}),
           pod_yaml("plain", "low", "30", NODES[1], on_node=True, labels={"app": "plain"}))
    running(cluster, "guarded", "plain")
    cluster.kubectl("create", "poddisruptionbudget", "guard", "--selector=app=guarded", "--min-available=1")
    create(cluster, pod_yaml("urgent", "high", "12"))
    bound = wait_for(lambda: (p := get_pod(cluster, "urgent")) and p["spec"].get("nodeName"), 30, "urgent bound")
    assert bound == NODES[1]
    assert get_pod(cluster, "plain") is None
    guarded = get_pod(cluster, "guarded")
    assert guarded is not None and not guarded["metadata"].get("deletionTimestamp")


def test_victims_are_chosen_by_upstream_criteria_in_memory() -> None:
    """pickOneNodeForPreemption without a server: the node whose victims have the lowest priority wins,
    then the one with fewer victims."""
    cache = Cache()
    for name in ("a", "b", "c"):
        cache.add_node(node_object(name, cpu="4"))
    placed = [("a1", "a", 500, "3"), ("b1", "b", 100, "2"), ("b2", "b", 100, "2"), ("c1", "c", 100, "3")]
    for name, where, priority, cpu in placed:
        cache.add_pod(PodInfo(pod_object(name, cpu=cpu, node_name=where, extra_spec={"priority": priority})))
    preemptor = PodInfo(pod_object("p", cpu="3", extra_spec={"priority": 1000}))
    result = Framework(cache, seed=1).schedule(preemptor)
    # a: one victim of priority 500; b: two of 100; c: one of 100 -> c (lowest highest priority, fewest).
    assert result.node is None
    assert result.nominated_node == "c"
    assert [v.name for v in result.victims] == ["c1"]
