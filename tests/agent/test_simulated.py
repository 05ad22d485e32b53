"""Simulated nodes: ``--simulate N`` registers N Ready nodes with leases from one process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.agent.conftest import AgentProcess, wait_for
from tests.conftest import ServerProcess, free_port


def test_simulate_50_nodes_ready_and_pods_run(server: ServerProcess, tmp_path: Path) -> None:
    proc = AgentProcess({"server": server.url, "node_name": "sim", "simulate": 50, "runtime": "simulated",
                         "root_dir": str(tmp_path / "root"), "port": free_port()}, tmp_path / "agent.log")
    proc.start()
    try:
        def ready_nodes() -> int:
            nodes = json.loads(server.kubectl("get", "nodes", "-o", "json").stdout)["items"]
            return sum(1 for n in nodes if n["metadata"]["name"].startswith("sim-") and any(
                c["type"] == "Ready" and c["status"] == "True" for c in n["status"].get("conditions") or []))
        wait_for(lambda: ready_nodes() == 50, 30, "50 Ready nodes")
        leases = json.loads(server.kubectl("get", "leases", "-n", "kube-node-lease", "-o", "json").stdout)["items"]
        assert {lease["metadata"]["name"] for lease in leases} >= {f"sim-{i:04d}" for i in range(50)}
        server.kubectl("run", "simpod", "--image=busybox", "--overrides",
                       json.dumps({"spec": {"nodeName": "sim-0007"}}))

        def pod_running() -> bool:
            pod = json.loads(server.kubectl("get", "pod", "simpod", "-o", "json").stdout)
            return pod["status"].get("phase") == "Running" and bool(pod["status"].get("podIP"))
        wait_for(pod_running, 15, "simulated pod Running")
        server.kubectl("delete", "pod", "simpod", "--timeout=15s")
    except AssertionError:
        pytest.fail(proc.log())
    finally:
        proc.stop()
