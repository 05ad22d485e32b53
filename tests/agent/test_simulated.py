"""Simulated nodes: ``--simulate N`` registers N Ready nodes with leases from one process."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from pilothouse.components.agent.simulation import node_tokens
from pilothouse.machinery.kubeconfig import build_kubeconfig
from tests.agent.conftest import AgentProcess, wait_for
from tests.conftest import ServerProcess, free_port, start_server_process
from tests.metrics.scrape import parse


def run_a_pod(server: ServerProcess, node: str) -> None:
    """A pod bound to ``node`` by hand goes Running with an IP, then is deleted."""
    server.kubectl("run", "simpod", "--image=busybox", "--overrides", json.dumps({"spec": {"nodeName": node}}))

    def pod_running() -> bool:
        pod = json.loads(server.kubectl("get", "pod", "simpod", "-o", "json").stdout)
        return pod["status"].get("phase") == "Running" and bool(pod["status"].get("podIP"))
    wait_for(pod_running, 15, "simulated pod Running")
    server.kubectl("delete", "pod", "simpod", "--timeout=15s")


def test_simulate_50_nodes_ready_and_pods_run(server: ServerProcess, tmp_path: Path) -> None:
    # status updates every 2 s instead of 10 (the kubelet's nodeStatusUpdateFrequency): more of them to count
    proc = AgentProcess({"server": server.url, "node_name": "sim", "simulate": 50, "runtime": "simulated",
                         "node_status_update_frequency": 2.0, "root_dir": str(tmp_path / "root"),
                         "port": free_port()}, tmp_path / "agent.log")
    proc.start()
    try:
        def ready_nodes() -> int:
            nodes = json.loads(server.kubectl("get", "nodes", "-o", "json").stdout)["items"]
            return sum(1 for n in nodes if n["metadata"]["name"].startswith("sim-") and any(
                c["type"] == "Ready" and c["status"] == "True" for c in n["status"].get("conditions") or []))
        wait_for(lambda: ready_nodes() == 50, 30, "50 Ready nodes")
        leases = json.loads(server.kubectl("get", "leases", "-n", "kube-node-lease", "-o", "json").stdout)["items"]
        assert {lease["metadata"]["name"] for lease in leases} >= {f"sim-{i:04d}" for i in range(50)}
        # Each status update reads the Node from an informer, as the kubelet's node lister, not with a
        # GET: past the first reports, 50 nodes updating every 2 s would GET theirs ~150 times in 6 s.
        time.sleep(8)
        before = parse(server.kubectl("get", "--raw", "/metrics").stdout)
        time.sleep(6)
        after = parse(server.kubectl("get", "--raw", "/metrics").stdout)
        node_gets = (after.value("apiserver_request_total", verb="GET", resource="nodes")
                     - before.value("apiserver_request_total", verb="GET", resource="nodes"))
        assert node_gets < 10, f"{node_gets:.0f} Node GETs in 6 s"
        run_a_pod(server, "sim-0007")
    except AssertionError:
        pytest.fail(proc.log())
    finally:
        proc.stop()


def test_simulated_nodes_speak_as_their_own_kubelets(tmp_path: Path) -> None:
    """``--simulate-token-file``: each node's heartbeat, pod watch and pod status go out as its own
    ``system:node:<name>``. Under the secure server's defaults (Node,RBAC and NodeRestriction) a node
    may write only its own Node, Lease and pods, so the nodes come up and run a pod only if each
    request carries its own node's identity: the agent's own user (in ``system:nodes``, no node
    name) is refused by the Node authorizer."""
    names = [f"sim-{i:04d}" for i in range(3)]
    token_file = tmp_path / "tokens.csv"
    token_file.write_text("agent-token,sim-agent,u0,system:nodes\n" + "".join(
        f'token-{name},system:node:{name},u-{name},"system:nodes"\n' for name in names))
    server = start_server_process(tmp_path / "server", extra=("--token-auth-file", str(token_file)), secure=True)
    ca_pem = (server.data_dir / "pki" / "ca.crt").read_bytes()
    kubeconfig = build_kubeconfig(server.url, user="sim-agent", ca_pem=ca_pem)
    kubeconfig["users"][0]["user"] = {"token": "agent-token"}  # no client certificate: x509 would win
    (tmp_path / "agent.conf").write_text(json.dumps(kubeconfig))
    proc = AgentProcess({"server": server.url, "kubeconfig": str(tmp_path / "agent.conf"), "node_name": "sim",
                         "simulate": 3,
                         "runtime": "simulated", "simulate_token_file": str(token_file),
                         "root_dir": str(tmp_path / "root"), "port": free_port()}, tmp_path / "agent.log")
    proc.start()
    try:
        def ready_nodes() -> set[str]:
            nodes = json.loads(server.kubectl("get", "nodes", "-o", "json").stdout)["items"]
            return {n["metadata"]["name"] for n in nodes if any(
                c["type"] == "Ready" and c["status"] == "True" for c in n["status"].get("conditions") or [])}
        wait_for(lambda: ready_nodes() == set(names), 30, "3 Ready nodes")
        leases = json.loads(server.kubectl("get", "leases", "-n", "kube-node-lease", "-o", "json").stdout)["items"]
        assert {lease["spec"]["holderIdentity"] for lease in leases} == set(names)
        run_a_pod(server, "sim-0001")
        # the agent's own identity is not a node's: the Node authorizer gives it nothing
        denied = server.kubectl("get", "lease", "-n", "kube-node-lease", "sim-0000", check=False,
                                env={"KUBECONFIG": str(tmp_path / "agent.conf")})
        assert denied.returncode != 0 and "forbidden" in denied.stderr.lower(), denied
    except AssertionError:
        pytest.fail(proc.log())
    finally:
        proc.stop()
        server.stop()


def test_a_simulated_node_without_a_token_is_refused(tmp_path: Path) -> None:
    token_file = tmp_path / "tokens.csv"
    token_file.write_text('t0,system:node:sim-0000,u0,"system:nodes"\n')
    with pytest.raises(ValueError, match="no token for system:node:sim-0001"):
        node_tokens(str(token_file), ["sim-0000", "sim-0001"])
