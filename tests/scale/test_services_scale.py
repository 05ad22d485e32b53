"""Issue 16's Services at scale, at a size CI affords: 200 Services x 6 pods on 100 simulated nodes.

A real server process (embedded store, scheduler, controller manager) and one ``pilothouse agent
--simulate 100``. 200 Deployments of 6 replicas and 200 Services selecting them are created with the
official client; then 10 Deployments are rolled out (a template annotation), one is scaled to 0 and
one Service's selector is moved to another Deployment's pods. Checked from paged LISTs once the
rollout is done: every Service's EndpointSlices hold exactly its pods, each once, with the pod's IP,
node and readiness; slices are owned by their Service and labelled as the controller labels them; a
Service without pods keeps one empty slice. No timing asserts: the latencies are
bench/services_scale.py's job.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config

from tests.conftest import ServerProcess, free_port, start_server_process, terminate

pytestmark = pytest.mark.timeout(1800)

NODES = 100
SERVICES = 200
PODS = 6
ROLLOUT = 10
NAMESPACE = "svcscale"
#: a bound on the waits, not a timing figure
DEADLINE = 1500.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_server_process(tmp_path_factory.mktemp("services"))
    root = tmp_path_factory.mktemp("agent")
    log = open(root / "agent.log", "ab")  # noqa: SIM115 - lives as long as the process
    agent = subprocess.Popen([sys.executable, "-m", "pilothouse", "agent", "--server", server.url,
                              "--simulate", str(NODES), "--node-name", "svc", "--port", str(free_port()),
                              "--root-dir", str(root / "state")], stdout=log, stderr=subprocess.STDOUT)
    try:
        yield server
    finally:
        terminate(agent, 30)
        server.stop()


def wait_for(check: Callable[[], bool], what: str, deadline: float) -> None:
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(3.0)


def paged(list_page: Callable[..., Any]) -> list[Any]:
    items: list[Any] = []
    token = None
    for _ in range(1000):
        page = list_page(NAMESPACE, limit=500, _continue=token)
        items.extend(page.items)
        token = page.metadata._continue
        if not token:
            return items
    raise AssertionError("paged LIST did not end")


def deployment(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name},
            "spec": {"replicas": PODS, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "app", "image": "registry.local/app:1",
                                                           "resources": {"requests": {"cpu": "10m"}}}]}}}}


def mismatches(core: k8s.CoreV1Api, discovery: k8s.DiscoveryV1Api) -> list[str]:
    """Every way the slices differ from the pods, Service by Service (empty: exactly right)."""
    services = {s.metadata.name: s for s in paged(core.list_namespaced_service)}
    pods = paged(core.list_namespaced_pod)
    slices = paged(discovery.list_namespaced_endpoint_slice)
    by_label: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for pod in pods:
        for label in (pod.metadata.labels or {}).items():
            by_label[label].append(pod)
    wanted: dict[str, dict[str, tuple[str, str, bool, bool]]] = defaultdict(dict)
    for name, service in services.items():
        selector = service.spec.selector or {}
        for pod in by_label[next(iter(selector.items()))] if selector else []:
            if not pod.status.pod_ip or pod.status.phase in ("Succeeded", "Failed") or \
                    any((pod.metadata.labels or {}).get(k) != v for k, v in selector.items()):
                continue
            ready = any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
            terminating = pod.metadata.deletion_timestamp is not None
            wanted[name][pod.metadata.name] = (pod.status.pod_ip, pod.spec.node_name,
                                               ready and not terminating, terminating)
    shown: dict[str, Counter[tuple[str, str, str, bool, bool]]] = defaultdict(Counter)
    slices_of: Counter[str] = Counter()
    problems: list[str] = []
    for item in slices:
        labels = item.metadata.labels or {}
        service = labels.get("kubernetes.io/service-name", "")
        if labels.get("endpointslice.kubernetes.io/managed-by") != "endpointslice-controller.k8s.io":
            problems.append(f"slice {item.metadata.name}: not labelled managed-by the controller")
        owners = [(o.kind, o.name) for o in item.metadata.owner_references or [] if o.controller]
        if owners != [("Service", service)]:
            problems.append(f"slice {item.metadata.name}: owners {owners}, service {service}")
        slices_of[service] += 1
        for endpoint in item.endpoints or []:
            shown[service][(endpoint.target_ref.name, endpoint.addresses[0], endpoint.node_name,
                            bool(endpoint.conditions.ready), bool(endpoint.conditions.terminating))] += 1
    for name in services:
        expected = Counter({(pod, *fields): 1 for pod, fields in wanted[name].items()})
        if shown[name] != expected:
            problems.append(f"service {name}: slices {sorted(shown[name].items())} != pods {sorted(expected)}")
        if not slices_of[name]:
            problems.append(f"service {name}: no slice")
    problems += [f"slices of {name}, which is not a Service" for name in slices_of if name not in services]
    return problems


def test_500_services_slices_exact_after_a_rollout(cluster: ServerProcess) -> None:
    deadline = time.monotonic() + DEADLINE
    api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    core, apps, discovery = k8s.CoreV1Api(api), k8s.AppsV1Api(api), k8s.DiscoveryV1Api(api)
    wait_for(lambda: sum(1 for n in core.list_node().items for c in n.status.conditions or []
                         if c.type == "Ready" and c.status == "True") >= NODES, "Ready nodes", deadline)
    core.create_namespace({"metadata": {"name": NAMESPACE}})
    names = [f"svc-{i:03d}" for i in range(SERVICES)]
    for name in names:
        core.create_namespaced_service(NAMESPACE, {"metadata": {"name": name}, "spec": {
            "selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]}})
        apps.create_namespaced_deployment(NAMESPACE, deployment(name))

    def settled(replicas: dict[str, int]) -> bool:
        deployments = {d.metadata.name: d for d in paged(apps.list_namespaced_deployment)}
        # observedGeneration first: until the controller saw a change, the old status reads "done"
        if any(d.status.observed_generation != d.metadata.generation for d in deployments.values()):
            return False
        if any((deployments[n].status.updated_replicas or 0, deployments[n].status.replicas or 0,
                deployments[n].status.available_replicas or 0) != (r, r, r) for n, r in replicas.items()):
            return False
        return len(paged(core.list_namespaced_pod)) == sum(replicas.values())

    replicas = dict.fromkeys(names, PODS)
    wait_for(lambda: settled(replicas), "every pod ready", deadline)
    wait_for(lambda: not mismatches(core, discovery), "slices of every Service", deadline)

    for name in names[:ROLLOUT]:
        apps.patch_namespaced_deployment(name, NAMESPACE, {"spec": {"template": {"metadata": {
            "annotations": {"rollout": "2"}}}}})
    apps.patch_namespaced_deployment_scale(names[-1], NAMESPACE, {"spec": {"replicas": 0}})
    replicas[names[-1]] = 0
    # A Service now selecting another Deployment's pods: its slices must follow the selector.
    core.patch_namespaced_service(names[-2], NAMESPACE, {"spec": {"selector": {"app": names[0]}}})
    wait_for(lambda: settled(replicas), "the rollout", deadline)
    problems: list[str] = []

    def exact() -> bool:
        nonlocal problems
        problems = mismatches(core, discovery)
        return not problems
    try:
        wait_for(exact, "slices exact after the rollout", deadline)
    except AssertionError:
        raise AssertionError("\n".join(problems[:20])) from None
    # The scaled-down Service keeps one empty placeholder slice.
    empty = discovery.list_namespaced_endpoint_slice(
        NAMESPACE, label_selector=f"kubernetes.io/service-name={names[-1]}").items
    assert len(empty) == 1 and not empty[0].endpoints
    moved = discovery.list_namespaced_endpoint_slice(
        NAMESPACE, label_selector=f"kubernetes.io/service-name={names[-2]}").items
    assert {e.target_ref.name.rsplit("-", 2)[0] for s in moved for e in s.endpoints or []} == {names[0]}
