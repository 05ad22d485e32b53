"""Three real agents, each in its own network-namespace host with ``--pod-cidr auto`` (hosts A and B on
the router's bridge: a direct route; host C behind the router: VXLAN), node IPAM in a real controller
manager, and real busybox pods: a pod on A reaches pods on B and C by their addresses, and they see the
A pod's own address (busybox httpd's CGI ``REMOTE_ADDR``): no NAT between pods across hosts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.agent.conftest import PodmanFixture, busybox_image, podman  # noqa: F401 - fixtures
from tests.conftest import ServerProcess, create_default_service_account, free_port, terminate
from tests.podnetwork.conftest import HOSTS, lab_server
from tests.podnetwork.hostlab import HostLab, enter, sh

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("nsenter"), reason="needs root and nsenter")

CLUSTER = "10.240.0.0/16"
#: a CGI that answers the client's address as httpd saw it
SERVE = ("mkdir -p /www/cgi-bin && printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho $REMOTE_ADDR\\n'"
         " > /www/cgi-bin/ip && chmod +x /www/cgi-bin/ip && exec httpd -f -p 8080 -h /www")
LOOP = "trap 'exit 0' TERM; while :; do sleep 1; done"
T = TypeVar("T")


@pytest.fixture(scope="module")
def cluster(lab: HostLab, tmp_path_factory: pytest.TempPathFactory,
            podman: PodmanFixture) -> Iterator[ServerProcess]:  # noqa: F811
    server = lab_server(tmp_path_factory)
    create_default_service_account(server.url)
    log = open(server.data_dir / "controller-manager.log", "ab")  # noqa: SIM115 - lives with the process
    manager = subprocess.Popen(
        [sys.executable, "-m", "pilothouse", "controller-manager", "--server", server.url, "--controllers",
         "nodeipam", "--leader-elect=false", "--use-service-account-credentials=false", "--allocate-node-cidrs",
         "--cluster-cidr", CLUSTER], stdout=log, stderr=subprocess.STDOUT)
    agents = []
    for host in ("ha", "hb", "hc"):
        address = HOSTS[host][0]
        root = server.data_dir / f"agent-{host}"
        root.mkdir()
        agents.append(subprocess.Popen(
            [*enter(lab.host_netns(host)), sys.executable, "-m", "pilothouse", "agent", "--server", server.url,
             "--node-name", f"agent-{host}", "--address", address, "--node-ip", address, "--port", str(free_port()),
             "--root-dir", str(root), "--runtime-endpoint", podman.endpoint, "--pod-cidr", "auto",
             "--cluster-cidr", CLUSTER, "--disable", "proxy", "-v"],
            stdout=open(root / "agent.log", "ab"), stderr=subprocess.STDOUT))  # noqa: SIM115
    yield server
    server.kubectl("delete", "pods", "--all", "--grace-period=1", "--wait=true", check=False, timeout=60)
    for agent in agents:
        terminate(agent, timeout=20)
    terminate(manager)
    server.stop()


def _wait(get: Callable[[], T | None], what: str, timeout: float = 90) -> T:
    deadline = time.monotonic() + timeout
    while (value := get()) is None or value == "":
        assert time.monotonic() < deadline, what
        time.sleep(0.5)
    return value


def _pod(name: str, node: str, image: str, command: str) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {
        "nodeName": node, "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "main", "image": image, "command": ["sh", "-c", command]}]}})


def _running_ip(server: ServerProcess, name: str) -> str | None:
    out = server.kubectl("get", "pod", name, "-o", "json", check=False)
    if out.returncode != 0:
        return None
    pod: dict[str, Any] = json.loads(out.stdout)
    status = pod.get("status") or {}
    return status.get("podIP") if status.get("phase") == "Running" else None


def test_pods_on_two_agents_reach_each_other_without_nat(lab: HostLab, cluster: ServerProcess,
                                                         busybox_image: str, tmp_path: Path) -> None:  # noqa: F811
    nodes = ("agent-ha", "agent-hb", "agent-hc")
    ranges = {node: _wait(lambda n=node: cluster.kubectl(  # type: ignore[misc]
        "get", "node", n, "-o", "jsonpath={.spec.podCIDR}", check=False).stdout.strip(), f"{node}'s range")
        for node in nodes}
    assert len(set(ranges.values())) == 3, ranges
    for node in ("agent-hb", "agent-hc"):
        cluster.kubectl("create", "-f", "-", input=_pod(f"web-{node}", node, busybox_image, SERVE))
    cluster.kubectl("create", "-f", "-", input=_pod("client", "agent-ha", busybox_image, LOOP))
    client = _wait(lambda: _running_ip(cluster, "client"), "client Running")
    assert client.startswith(ranges["agent-ha"].rsplit(".", 1)[0]), (client, ranges)
    # A's routes: B's range directly via B's address, C's over the overlay
    routes = _wait(lambda: (lambda out: out if out.count(" via ") == 2 else None)(sh(
        *enter(lab.host_netns("ha")), "ip", "route", "show", "proto", "199").stdout), "A's routes")
    assert f"{ranges['agent-hb']} via {HOSTS['hb'][0]} dev eth0" in routes, routes
    assert f"{ranges['agent-hc']} via {ranges['agent-hc'].split('/')[0]} dev pilothouse.1 onlink" in routes, routes
    for node in ("agent-hb", "agent-hc"):
        web = _wait(lambda n=node: _running_ip(cluster, f"web-{n}"), f"web on {node} Running")  # type: ignore[misc]
        assert web.startswith(ranges[node].rsplit(".", 1)[0]), (web, ranges)

        def ask(address: str = web) -> str | None:
            out = cluster.kubectl("exec", "client", "--", "sh", "-c",
                                  f"printf 'GET /cgi-bin/ip HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {address} 8080",
                                  check=False)
            lines = out.stdout.strip().splitlines()
            if out.returncode != 0 or not lines or not lines[0].startswith("HTTP/"):
                return None
            return lines[-1].strip().removeprefix("[::ffff:").removesuffix("]")  # httpd's IPv4-mapped form

        assert _wait(ask, f"the client pod reaches the web pod on {node}", timeout=60) == client
