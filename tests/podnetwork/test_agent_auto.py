"""``pilothouse agent --pod-cidr auto`` on a network-namespace host: the agent waits for node IPAM (a
real controller manager with ``--allocate-node-cidrs``), puts its bridge and its cluster DNS on the
first address of its Node's range, masquerades only traffic leaving the cluster range, and routes to
the other Nodes' ranges (here host B's, whose pod answers with the agent host's own address)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ServerProcess, free_port, terminate
from tests.podnetwork.conftest import HOSTS, lab_server
from tests.podnetwork.hostlab import HostLab, enter, sh

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("nsenter") or not shutil.which("podman"),
                                reason="needs root, nsenter and podman")

CLUSTER = "10.254.0.0/16"


@pytest.fixture(scope="module")
def ipam_api(lab: HostLab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = lab_server(tmp_path_factory)
    # host B's Node, registered by hand with the range its pod uses: node IPAM must not give it again
    address, cidr, _ = HOSTS["hb"]
    server.kubectl("create", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "Node", "metadata": {
        "name": "hb"}, "spec": {"podCIDR": cidr, "podCIDRs": [cidr]}}))
    server.kubectl("patch", "node", "hb", "--subresource=status", "--type=merge", "-p",
                   json.dumps({"status": {"addresses": [{"type": "InternalIP", "address": address}]}}))
    log = open(server.data_dir / "controller-manager.log", "ab")  # noqa: SIM115 - lives with the process
    manager = subprocess.Popen(
        [sys.executable, "-m", "pilothouse", "controller-manager", "--server", server.url, "--controllers",
         "nodeipam", "--leader-elect=false", "--use-service-account-credentials=false", "--allocate-node-cidrs",
         "--cluster-cidr", CLUSTER, "--node-cidr-mask-size", "24"], stdout=log, stderr=subprocess.STDOUT)
    yield server
    terminate(manager)
    server.stop()


def _eventually(check: object, what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.5)


def test_agent_takes_its_range_from_node_ipam_and_routes_to_the_others(lab: HostLab, ipam_api: ServerProcess,
                                                                        tmp_path: Path) -> None:
    host = lab.host_netns("ha")
    address = HOSTS["ha"][0]
    log = open(tmp_path / "agent.log", "ab")  # noqa: SIM115 - lives with the process
    agent = subprocess.Popen([*enter(host), sys.executable, "-m", "pilothouse", "agent", "--server", ipam_api.url,
                              "--node-name", "agent-a", "--address", address, "--node-ip", address,
                              "--port", str(free_port()), "--root-dir", str(tmp_path / "agent"),
                              "--pod-cidr", "auto", "--cluster-cidr", CLUSTER, "--disable", "proxy", "-v"],
                             stdout=log, stderr=subprocess.STDOUT)
    try:
        def pod_cidr() -> str:
            out = ipam_api.kubectl("get", "node", "agent-a", "-o", "jsonpath={.spec.podCIDR}", check=False)
            return out.stdout.strip() if out.returncode == 0 else ""

        _eventually(pod_cidr, "agent-a got no podCIDR")
        cidr = pod_cidr()
        assert cidr == "10.254.0.0/24", cidr  # the first free range: hb's 10.254.2.0/24 is taken
        gateway = "10.254.0.1"

        def bridge_addresses() -> list[str]:
            out = sh(*enter(host), "ip", "-j", "addr", "show", "dev", "pilothouse0", check=False).stdout.strip()
            return [f"{a['local']}/{a['prefixlen']}" for link in json.loads(out or "[]") for a in link["addr_info"]]

        _eventually(lambda: f"{gateway}/24" in bridge_addresses(),
                    f"bridge in the host: {bridge_addresses()}\n{(tmp_path / 'agent.log').read_text()[-3000:]}")
        # the agent's cluster DNS on the gateway of its range
        _eventually(lambda: f"{gateway}:53" in sh(*enter(host), "ss", "-lun").stdout, "DNS on the gateway")
        # masquerade only what leaves the cluster range
        nat = sh(*enter(host), "iptables", "-t", "nat", "-S", "POSTROUTING").stdout
        assert f"-A POSTROUTING -s {cidr} ! -d {CLUSTER} ! -o pilothouse0 -j MASQUERADE" in nat, nat
        # routes to host B's range (a shared subnet: direct), and from the bridge B's pod sees our own range
        _eventually(lambda: "10.254.2.0/24 via 10.253.0.2" in sh(*enter(host), "ip", "route", "show", "proto",
                                                                 "199").stdout, "route to hb's range")
        # host B routes back to our range (as its own route component would), then a client on our
        # bridge's address reaches B's pod unmasqueraded
        sh("ip", "-n", lab.host_netns("hb"), "route", "replace", cidr, "via", address)
        ask = ("import socket; s = socket.socket(); s.bind(('" + gateway + "', 0)); s.settimeout(3); "
               "s.connect(('" + lab.pods["pb"][1] + "', 7000)); print(s.recv(100).decode())")
        assert sh(*enter(host), sys.executable, "-c", ask).stdout.strip() == gateway
    finally:
        terminate(agent, timeout=20)
    assert "Traceback" not in (tmp_path / "agent.log").read_text()
