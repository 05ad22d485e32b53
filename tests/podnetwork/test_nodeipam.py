"""Node IPAM against a real server on the defaults (HTTPS, Node,RBAC) and a real ``pilothouse
controller-manager`` process running only the ``nodeipam`` controller, on its own service account
(``node-controller``): Nodes get distinct ranges, a restarted manager keeps them and gives no range
twice, a deleted Node's range is given again, and a full pool is a ``CIDRNotAvailable`` event."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ServerProcess, start_server_process, terminate

#: a /29 in /30s: two ranges, so that the third Node finds the pool full
CLUSTER_CIDR = "10.252.0.0/29"


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_server_process(tmp_path_factory.mktemp("nodeipam"), secure=True,
                                  extra=("--disable", "scheduler,controller-manager"))
    yield server
    server.stop()


def _manager(server: ServerProcess) -> subprocess.Popen[bytes]:
    log = open(server.data_dir / "controller-manager.log", "ab")  # noqa: SIM115 - lives with the process
    return subprocess.Popen(
        [sys.executable, "-m", "pilothouse", "controller-manager", "--kubeconfig", str(server.kubeconfig),
         "--controllers", "nodeipam", "--leader-elect=false", "--allocate-node-cidrs",
         "--cluster-cidr", CLUSTER_CIDR, "--node-cidr-mask-size", "30", "-v"], stdout=log, stderr=subprocess.STDOUT)


def _node(server: ServerProcess, name: str) -> None:
    # A label, so that the create owns a field: a Node of a bare name is created with no managers,
    # and then (skipNonAppliedManager, as upstream) no later update is tracked either.
    server.kubectl("create", "-f", "-",
                   input=f'{{"apiVersion": "v1", "kind": "Node", "metadata": {{"name": "{name}", '
                         f'"labels": {{"test": "nodeipam"}}}}}}')


def _cidrs(server: ServerProcess, name: str) -> tuple[str, list[str]]:
    import json

    spec: dict[str, Any] = json.loads(server.kubectl("get", "node", name, "-o", "json").stdout).get("spec") or {}
    return spec.get("podCIDR", ""), spec.get("podCIDRs") or []


def _wait_cidr(server: ServerProcess, name: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        cidr, cidrs = _cidrs(server, name)
        if cidr:
            assert cidrs == [cidr]
            return cidr
        time.sleep(0.2)
    raise AssertionError(f"node {name} got no podCIDR")


def _events(server: ServerProcess, name: str) -> str:
    return server.kubectl("get", "events", "-A", "--field-selector", f"involvedObject.name={name}",
                          "-o", "custom-columns=REASON:.reason,MSG:.message,SRC:.source.component",
                          "--no-headers").stdout


def test_allocate_restart_release_exhaust(secure: ServerProcess, tmp_path: Path) -> None:
    manager = _manager(secure)
    try:
        _node(secure, "ipam-a")
        _node(secure, "ipam-b")
        a, b = _wait_cidr(secure, "ipam-a"), _wait_cidr(secure, "ipam-b")
        assert {a, b} == {"10.252.0.0/30", "10.252.0.4/30"}
        # the patch was the node-controller account's, not the admin's the manager started with
        fields = secure.kubectl("get", "node", "ipam-a", "--show-managed-fields", "-o",
                                "jsonpath={.metadata.managedFields[*].manager}").stdout
        assert "node-controller" in fields, fields

        # a restarted manager rebuilds the pool from the Nodes: the third Node finds it full
        terminate(manager)
        manager = _manager(secure)
        _node(secure, "ipam-c")
        deadline = time.monotonic() + 30
        while "CIDRNotAvailable" not in _events(secure, "ipam-c"):
            assert time.monotonic() < deadline, _events(secure, "ipam-c")
            time.sleep(0.3)
        assert "Node ipam-c status is now: CIDRNotAvailable" in _events(secure, "ipam-c")
        assert _cidrs(secure, "ipam-c") == ("", [])
        assert _cidrs(secure, "ipam-a")[0] == a and _cidrs(secure, "ipam-b")[0] == b

        # deleting a Node releases its range, which the waiting Node then gets
        secure.kubectl("delete", "node", "ipam-a")
        assert _wait_cidr(secure, "ipam-c") == a
        assert _cidrs(secure, "ipam-b")[0] == b
    finally:
        terminate(manager)
    log = (secure.data_dir / "controller-manager.log").read_text()
    assert "Traceback" not in log, log[-3000:]


def test_server_cluster_cidr_turns_on_the_embedded_allocator(tmp_path: Path) -> None:
    server = start_server_process(tmp_path / "server", secure=True,
                                  extra=("--disable", "scheduler", "--cluster-cidr", "10.252.8.0/24",
                                         "--node-cidr-mask-size", "28"))
    try:
        _node(server, "embedded-a")
        assert _wait_cidr(server, "embedded-a", timeout=60) == "10.252.8.0/28"
    finally:
        server.stop()
