"""The network-namespace host lab (hostlab.py) and an API server its hosts reach, holding their Nodes."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.conftest import ServerProcess, free_port, server_flags, wait_healthy
from tests.podnetwork.hostlab import ROOT_ADDRESS, HostLab

HOSTS = {"ha": ("10.253.0.1", "10.254.1.0/24", False), "hb": ("10.253.0.2", "10.254.2.0/24", False),
         "hc": ("10.253.3.2", "10.254.3.0/24", True)}


@pytest.fixture(scope="module")
def lab() -> Iterator[HostLab]:
    lab = HostLab().create()
    try:
        for name, (address, cidr, far) in HOSTS.items():
            lab.add_host(name, address, far=far)
            lab.add_pod(name, f"p{name[1]}", cidr)
        yield lab
    finally:
        lab.destroy()


@pytest.fixture(scope="module")
def api(lab: HostLab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server the hosts reach on the lab's root address (and nobody outside the machine), with a Node
    per host of :data:`HOSTS` (its range and address)."""
    server = lab_server(tmp_path_factory)
    for name, (address, cidr, _) in HOSTS.items():
        node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
                "spec": {"podCIDR": cidr, "podCIDRs": [cidr]}}
        server.kubectl("create", "-f", "-", input=json.dumps(node))
        server.kubectl("patch", "node", name, "--subresource=status", "--type=merge", "-p",
                       json.dumps({"status": {"addresses": [{"type": "InternalIP", "address": address}]}}))
    yield server
    server.stop()


def lab_server(tmp_path_factory: pytest.TempPathFactory, *extra: str) -> ServerProcess:
    """``pilothouse server`` on the lab's root address, plain HTTP, no embedded components."""
    data_dir = tmp_path_factory.mktemp("podroutes")
    port = free_port()
    log = open(data_dir / "server.log", "ab")  # noqa: SIM115 - lives as long as the process
    process = subprocess.Popen([sys.executable, "-m", "pilothouse", "server", "--data-dir", str(data_dir),
                                "--port", str(port), "--bind-address", ROOT_ADDRESS,
                                "--disable", "scheduler,controller-manager", *server_flags(False, extra)],
                               stdout=log, stderr=subprocess.STDOUT)
    url = f"http://{ROOT_ADDRESS}:{port}"
    wait_healthy(url, process)
    return ServerProcess(url, data_dir, data_dir / "kubeconfig.yaml", process, port)


