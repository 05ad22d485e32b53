"""The agent on Docker's own engine: dockerd (Debian's docker.io) instead of podman's service.

The agent speaks only the Docker Engine API, so the same agent must run pods on dockerd given its
socket with ``--runtime-endpoint``. One dockerd, one API server and one agent for the module; the
daemon has no bridge of its own (see tests/agent/dockerd.py), so pod addresses come from the
agent's pod network. SKIPS (with the reason) when dockerd is not installed or cannot start here.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.agent.conftest import AgentProcess, get_pod, ready_pods, start_ready_agent, wait_for
from tests.agent.dockerd import DockerdFixture, dockerd_available
from tests.conftest import KUBECTL, ServerProcess, free_port

NODE = "docker-node"
IMAGE = "localhost/pilothouse-test/busybox-docker:1.35"
LOOP = "trap 'exit 0' TERM; while :; do sleep 1; done"


@pytest.fixture(scope="module")
def dockerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerdFixture]:
    reason = dockerd_available()
    if reason:
        pytest.skip(reason)
    # a short path: containerd's sockets live under the exec root and unix paths stop at 108 bytes
    fixture = DockerdFixture(tmp_path_factory.mktemp("dkd"))
    try:
        fixture.start()
    except RuntimeError as error:
        pytest.skip(f"dockerd cannot run here: {error}")
    try:
        fixture.import_busybox(IMAGE)
        yield fixture
    finally:
        for container in fixture.containers("io.pilothouse.agent"):
            fixture.api("DELETE", f"/containers/{container['Id']}?force=true")
        fixture.stop()


@pytest.fixture(scope="module")
def agent(server: ServerProcess, dockerd: DockerdFixture,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    proc = start_ready_agent(server, dockerd, tmp_path_factory.mktemp("docker-agent"), NODE)
    yield proc
    proc.stop()


def _running(server: ServerProcess, name: str) -> dict[str, Any] | None:
    pod = get_pod(server, name)
    if pod and pod["status"].get("phase") == "Running" and all(
            c.get("ready") for c in pod["status"].get("containerStatuses") or [{}]):
        return pod
    return None


def _apply_pod(server: ServerProcess, name: str, command: str, extra: str = "") -> None:
    server.kubectl("apply", "-f", "-", input=f"""
apiVersion: v1
kind: Pod
metadata: {{name: {name}, labels: {{app: {name}}}}}
spec:
  nodeName: {NODE}
  terminationGracePeriodSeconds: 3
  containers:
  - name: main
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["/bin/sh", "-c", {json.dumps(command)}]
{extra}""")


def test_node_reports_docker(server: ServerProcess, agent: AgentProcess) -> None:
    node = json.loads(server.kubectl("get", "node", NODE, "-o", "json").stdout)
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("docker://20.")


def test_deployment_runs_with_pod_addresses(server: ServerProcess, agent: AgentProcess,
                                            dockerd: DockerdFixture) -> None:
    server.kubectl("create", "deployment", "dweb", f"--image={IMAGE}", "--replicas=2", "--",
                   "/bin/sh", "-c", LOOP)

    pods = wait_for(lambda: ready_pods(server, "app=dweb", 2), 60, "2 dweb pods Running with an IP")
    assert pods[0]["status"]["podIP"] != pods[1]["status"]["podIP"]
    for pod in pods:
        containers = dockerd.containers(f"io.kubernetes.pod.uid={pod['metadata']['uid']}")
        assert len(containers) == 2 and {c["State"] for c in containers} == {"running"}  # sandbox + app
        assert pod["status"]["containerStatuses"][0]["containerID"].startswith("docker://")
    server.kubectl("delete", "deployment", "dweb")


def test_logs_exec_and_port_forward(server: ServerProcess, agent: AgentProcess) -> None:
    _apply_pod(server, "dhttpd", "echo started; mkdir -p /www; echo hello-from-docker > /www/index.html; "
                                 "exec httpd -f -p 80 -h /www",
               extra="    readinessProbe: {httpGet: {path: /index.html, port: 80}, periodSeconds: 1}")
    wait_for(lambda: _running(server, "dhttpd"), 40, "dhttpd Running and Ready (HTTP probe on the pod IP)")
    assert "started" in server.kubectl("logs", "dhttpd").stdout
    result = server.kubectl("exec", "dhttpd", "--", "sh", "-c", "cat /www/index.html; exit 3", check=False)
    assert result.returncode == 3 and result.stdout == "hello-from-docker\n"
    # the pod's name as hostname in its containers (dockerd: from the sandbox they join) and the
    # agent's cluster DNS in resolv.conf
    names = server.kubectl("exec", "dhttpd", "--", "sh", "-c", "hostname; cat /etc/resolv.conf").stdout
    assert names.startswith("dhttpd\nsearch default.svc.cluster.local ") and "nameserver 10.244." in names
    local = free_port()
    process = subprocess.Popen([KUBECTL, "port-forward", "pod/dhttpd", f"{local}:80"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,
                               env={"KUBECONFIG": str(server.kubeconfig), "HOME": str(server.data_dir / "home")})
    try:
        assert process.stdout is not None
        assert f"Forwarding from 127.0.0.1:{local} -> 80" in process.stdout.readline()
        with urllib.request.urlopen(f"http://127.0.0.1:{local}/index.html", timeout=10) as response:
            assert response.read() == b"hello-from-docker\n"
    finally:
        process.terminate()
        process.wait(10)
    server.kubectl("delete", "pod", "dhttpd", "--wait=false")


def test_killed_container_restarts_and_delete_removes(server: ServerProcess, agent: AgentProcess,
                                                      dockerd: DockerdFixture) -> None:
    _apply_pod(server, "dcrash", LOOP)
    pod = wait_for(lambda: _running(server, "dcrash"), 40, "dcrash Running")
    uid = pod["metadata"]["uid"]
    for container in dockerd.containers(f"io.kubernetes.pod.uid={uid}"):
        if container["Labels"].get("io.pilothouse.role") == "container":
            dockerd.kill(container["Id"])

    def restarted() -> dict[str, Any] | None:
        current = _running(server, "dcrash")
        statuses = (current or {}).get("status", {}).get("containerStatuses") or [{}]
        return statuses[0] if statuses[0].get("restartCount") == 1 else None
    status = wait_for(restarted, 20, "restarted once")
    assert status["lastState"]["terminated"]["exitCode"] == 137
    start = time.monotonic()
    server.kubectl("delete", "pod", "dcrash")  # waits until the pod is gone
    wait_for(lambda: not dockerd.containers(f"io.kubernetes.pod.uid={uid}"), 20, "containers removed")
    assert time.monotonic() - start < 20
