"""A restarted controller manager keeps running nodes Ready (found by the chaos harness).

The node lifecycle controller counted the silence of a node it saw for the first time from the
node's creation, so a controller manager started (or restarted) after its nodes were older than
``--node-monitor-grace-period`` marked every one of them NotReady (``NodeStatusUnknown``) at once,
although their kubelets renewed their Leases all along; then tainted them and evicted their pods.
Upstream gives a node first seen with a Ready condition a full grace period from now.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ServerProcess, free_port, start_server_process, terminate

GRACE = 15.0


def ready_statuses(url: str) -> dict[str, str]:
    with urllib.request.urlopen(url + "/api/v1/nodes", timeout=10) as response:
        nodes = json.loads(response.read())["items"]
    return {n["metadata"]["name"]: next((c["status"] for c in n["status"].get("conditions") or ()
                                         if c["type"] == "Ready"), "none") for n in nodes}


@pytest.fixture
def server_and_nodes(tmp_path: Path) -> Iterator[ServerProcess]:
    server = start_server_process(tmp_path / "server", extra=("--disable", "scheduler,controller-manager"))
    agent = subprocess.Popen([sys.executable, "-m", "pilothouse", "agent", "--server", server.url, "--node-name",
                              "old", "--simulate", "3", "--root-dir", str(tmp_path / "agent"), "--port",
                              str(free_port())], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield server
    finally:
        terminate(agent)
        server.stop()


def test_nodes_older_than_the_grace_period_stay_ready_when_the_controller_manager_starts(
        server_and_nodes: ServerProcess, tmp_path: Path) -> None:
    url = server_and_nodes.url
    deadline = time.monotonic() + 30
    while set(ready_statuses(url).values()) != {"True"} or len(ready_statuses(url)) < 3:
        assert time.monotonic() < deadline, ready_statuses(url)
        time.sleep(0.5)
    time.sleep(GRACE + 3)  # every node is now older than the grace period; the leases keep being renewed
    manager = subprocess.Popen([sys.executable, "-m", "pilothouse", "controller-manager", "--server", url,
                                "--secure-port", str(free_port()), "--leader-elect=false",
                                "--use-service-account-credentials=false", "--controllers", "nodelifecycle",
                                "--node-monitor-grace-period", str(GRACE)],
                               stdout=open(tmp_path / "cm.log", "ab"), stderr=subprocess.STDOUT)  # noqa: SIM115
    try:
        seen: list[dict[str, str]] = []
        end = time.monotonic() + 12  # the controller syncs every node at once when it starts
        while time.monotonic() < end:
            seen.append(ready_statuses(url))
            time.sleep(1)
        assert manager.poll() is None, (tmp_path / "cm.log").read_text()[-2000:]
        assert all(set(s.values()) == {"True"} for s in seen), seen
    finally:
        terminate(manager)
