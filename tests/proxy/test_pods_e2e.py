"""End to end with real pods: a node agent on podman, ``pilothouse proxy`` (the CLI, on a table of
its own in the host's namespace), busybox ``httpd`` pods behind a Service, and a client pod that
reaches the Service by its cluster IP; a NodePort on the node's addresses; a pod reaching itself
through its Service; a pod reaching the API server through the ``kubernetes`` Service. The pods'
network is the agent's bridge on this host."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from pilothouse.apiserver.masterendpoints import advertise_address
from tests.agent.conftest import AgentProcess, PodmanFixture, start_ready_agent, wait_for
from tests.conftest import ServerProcess, start_server_process, terminate
from tests.proxy import netlab

pytestmark = pytest.mark.skipif(bool(netlab.usable()), reason=netlab.usable() or "")

NODE = "proxy-node"
LOOP = "trap 'exit 0' TERM; while :; do sleep 1; done"


def pod(name: str, image: str, labels: dict[str, str], command: str, ready_file: str = "") -> dict[str, object]:
    container: dict[str, object] = {
        "name": "main", "image": image, "imagePullPolicy": "IfNotPresent", "command": ["/bin/sh", "-c", command],
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}
    if ready_file:
        container["readinessProbe"] = {"exec": {"command": ["cat", ready_file]}, "periodSeconds": 1}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
            "spec": {"containers": [container], "terminationGracePeriodSeconds": 1}}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The module's API server, listening beyond loopback (for a short while, on a random port) and
    advertised on the pods' bridge address, so the ``kubernetes`` Service has an endpoint pods reach."""
    process = start_server_process(tmp_path_factory.mktemp("server"), extra=(
        "--bind-address", "0.0.0.0", "--advertise-address", "10.244.0.1"))
    yield process
    process.stop()


@pytest.fixture(scope="module")
def node(server: ServerProcess, podman: PodmanFixture, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[tuple[AgentProcess, str]]:
    agent = start_ready_agent(server, podman, tmp_path_factory.mktemp("agent"), NODE)
    table = f"pht-{secrets.token_hex(3)}"
    log = open(tmp_path_factory.mktemp("proxy") / "proxy.log", "ab")  # noqa: SIM115 - lives with the process
    proxy = subprocess.Popen([sys.executable, "-m", "pilothouse", "proxy", "--server", server.url, "--node-name", NODE,
                              "--proxy-table", table, "-v"], stdout=log, stderr=subprocess.STDOUT)
    try:
        yield agent, table
    finally:
        terminate(proxy)
        subprocess.run([sys.executable, "-m", "pilothouse", "proxy", "--cleanup", "--proxy-table", table], check=False)
        server.kubectl("delete", "pods", "--all", "--wait=false", check=False)
        agent.stop()


def fetch_from(server: ServerProcess, pod_name: str, url: str, count: int) -> list[str]:
    # busybox-static's wget crashes with -T: bound it with timeout(1) instead
    script = f"for i in $(seq {count}); do timeout 5 wget -qO- {url} || echo failed; done"
    return server.kubectl("exec", pod_name, "--", "sh", "-c", script, timeout=count * 6 + 30).stdout.split()


def test_pods_reach_a_service(server: ServerProcess, node: tuple[AgentProcess, str], busybox_image: str,
                              tmp_path: Path) -> None:
    serve = "mkdir -p /www; echo $POD_NAME > /www/index.html; exec httpd -f -p 8080 -h /www"
    pods = [pod("web-1", busybox_image, {"app": "web"}, serve, "/www/index.html"),
            pod("web-2", busybox_image, {"app": "web"}, serve, "/www/index.html"),
            pod("web-unready", busybox_image, {"app": "web"}, serve, "/never"),
            pod("client", busybox_image, {"app": "client"}, LOOP)]
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
           "spec": {"type": "NodePort", "selector": {"app": "web"},
                    "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}
    server.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [*pods, svc]}))

    def ready_endpoints() -> list[str] | None:
        slices = json.loads(server.kubectl("get", "endpointslices", "-l", "kubernetes.io/service-name=web",
                                           "-o", "json").stdout)["items"]
        ready = sorted(e["targetRef"]["name"] for s in slices for e in s.get("endpoints") or []
                       if e["conditions"].get("ready"))
        return ready if ready == ["web-1", "web-2"] else None

    wait_for(ready_endpoints, 90, "web-1 and web-2 ready in the Service's EndpointSlice", interval=0.5)
    wait_for(lambda: server.kubectl("exec", "client", "--", "true", check=False).returncode == 0, 30, "client runs")
    cluster_ip = server.kubectl("get", "service", "web", "-o", "jsonpath={.spec.clusterIP}").stdout
    node_port = int(server.kubectl("get", "service", "web", "-o", "jsonpath={.spec.ports[0].nodePort}").stdout)

    # the client pod reaches the Service's address; traffic spreads over the ready pods, never the unready
    # one. The proxy follows the EndpointSlice a sync later (a CI run saw 24 answers from web-1 alone right
    # after the first answer), so the second pod is waited for, and every answer meanwhile is checked.
    wait_for(lambda: fetch_from(server, "client", f"http://{cluster_ip}/", 1) != ["failed"], 20, "proxy in place")
    answers: set[str] = set()

    def both_answer() -> bool:
        answers.update(fetch_from(server, "client", f"http://{cluster_ip}/", 8))
        return {"web-1", "web-2"} <= answers

    wait_for(both_answer, 60, "web-1 and web-2 answering through the Service", interval=0.5)
    assert answers == {"web-1", "web-2"}
    # a pod reaching itself through its Service (hairpin) gets its answers
    assert set(fetch_from(server, "web-1", f"http://{cluster_ip}/", 16)) == {"web-1", "web-2"}

    # NodePort on the node's addresses: the bridge's, and the host's own
    for address in {"10.244.0.1", advertise_address("0.0.0.0")}:
        answers = set()
        for _ in range(16):
            with urllib.request.urlopen(f"http://{address}:{node_port}/", timeout=5) as response:
                answers.add(response.read().decode().strip())
        assert answers == {"web-1", "web-2"}, address
    assert set(fetch_from(server, "client", f"http://10.244.0.1:{node_port}/", 4)) <= {"web-1", "web-2"}

    # the API server through the kubernetes Service (its first address; plain HTTP on this test server)
    version = server.kubectl("exec", "client", "--", "timeout", "5", "wget", "-qO-", "http://10.96.0.1:443/version")
    assert json.loads(version.stdout)["major"] == "1"

    # by name: the agent's cluster DNS (on the bridge's gateway) gives the Service's address, and the
    # proxy carries the connection made to that name (the issue's "by cluster IP and by DNS name")
    lookup = server.kubectl("exec", "client", "--", "nslookup", "web.default.svc.cluster.local").stdout
    assert cluster_ip in lookup, lookup
    by_name = fetch_from(server, "client", "http://web.default.svc.cluster.local/", 8)
    assert set(by_name) == {"web-1", "web-2"}, by_name
    short = fetch_from(server, "client", "http://web/", 4)  # the search path of a ClusterFirst pod
    assert set(short) <= {"web-1", "web-2"} and short, short
