"""The seed's manual registration, unchanged: ``register_node.sh`` (copied byte for byte from the seed's
cloud-config, as cloud-init writes it) waits for ``/healthz``, then pipes a legacy ``v1beta1`` ``Minion``
into ``/opt/bin/kubectl create -s URL -f -``. The real kubectl 1.32 finds the kind through discovery,
which a server started with ``--runtime-config api/v1beta1=true`` serves; the Node stored is v1 with the
script's labels, and an agent run with ``--register-node=false`` adopts it and goes Ready.

The script calls ``/opt/bin/kubectl``: it runs in a private mount namespace where ``/opt/bin/kubectl``
is the real kubectl, so the host's /opt is left alone.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import KUBECTL, ServerProcess, free_port, start_server_process, terminate

SCRIPT = Path(__file__).parent / "register_node.sh"

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("curl"),
                                reason="needs root, unshare and curl to give the script its /opt/bin/kubectl")


def run_script(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    opt = tmp_path / "opt"
    (opt / "bin").mkdir(parents=True, exist_ok=True)
    (opt / "bin" / "kubectl").unlink(missing_ok=True)
    (opt / "bin" / "kubectl").symlink_to(KUBECTL)
    inner = f'mount --bind "{opt}" /opt && exec "{SCRIPT}" "$@"'
    # No kubeconfig at all: the script's -s URL is all kubectl has, as on the seed's hosts.
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path / "home")}
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", inner, "sh", *args],
                          capture_output=True, text=True, timeout=120, env=env)


def test_the_seeds_register_node_script_registers_a_node_the_agent_adopts(tmp_path: Path) -> None:
    server = start_server_process(tmp_path / "server", extra=("--runtime-config", "api/v1beta1=true"))
    name = "azure-prd-02"
    log_path = tmp_path / "agent.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed below
    agent = subprocess.Popen(
        [sys.executable, "-m", "pilothouse", "agent", "--server", server.url, "--node-name", name,
         "--register-node=false", "--runtime", "simulated", "--root-dir", str(tmp_path / "agent"),
         "--port", str(free_port())], stdout=log, stderr=subprocess.STDOUT)
    try:
        result = run_script(tmp_path, name, server.url, "production")
        assert result.returncode == 0, (result.stdout, result.stderr)
        assert "minion/azure-prd-02 created" in result.stdout, result.stdout
        assert "Successfully registered node" in result.stdout, result.stdout
        # Legacy discovery says so too, with v1 first (the preferred version).
        assert json.loads(server.kubectl("get", "--raw", "/api").stdout)["versions"] == ["v1", "v1beta1"]

        node = _wait_ready(server, name, agent, log_path)
        assert node["apiVersion"] == "v1"
        labels = node["metadata"]["labels"]
        assert {k: labels.get(k) for k in ("environment", "host", "name")} == {
            "environment": "production", "host": "azure", "name": name}

        # Run again, the node exists: kubectl's AlreadyExists, and the script (sh -e) fails.
        again = run_script(tmp_path, name, server.url, "production")
        assert again.returncode != 0
        assert 'nodes "azure-prd-02" already exists' in again.stderr, again.stderr
    finally:
        terminate(agent)
        log.close()
        server.stop()


def _wait_ready(server: ServerProcess, name: str, agent: subprocess.Popen[bytes], log: Path) -> dict[str, object]:
    deadline = time.monotonic() + 60
    while True:
        assert agent.poll() is None, log.read_text()
        result = server.kubectl("get", "node", name, "-o", "json", check=False)
        node = json.loads(result.stdout) if result.returncode == 0 else {}
        conditions = (node.get("status") or {}).get("conditions") or []
        if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
            return dict(node)
        assert time.monotonic() < deadline, f"{name} not adopted Ready: {node}\n{log.read_text()}"
        time.sleep(0.5)


def test_a_default_server_does_not_serve_v1beta1(server: ServerProcess, tmp_path: Path) -> None:
    """Without the flag discovery stays a stock 1.32 one, and kubectl says it does not know the kind."""
    assert "v1beta1" not in server.kubectl("api-versions").stdout.split()
    result = run_script(tmp_path, "azure-prd-03", server.url, "production")
    assert result.returncode != 0
    assert 'no matches for kind "Minion" in version "v1beta1"' in result.stderr, result.stderr


def test_the_script_against_a_secure_servers_insecure_port(tmp_path: Path) -> None:
    """The seed's own shape: the script talks to the master's plain-HTTP port 8080 (``--insecure-port``)
    of a server that otherwise serves HTTPS; the Node is there, with its labels, through the secure port."""
    port = free_port()
    server = start_server_process(tmp_path / "server", secure=True, extra=(
        "--insecure-port", str(port), "--runtime-config", "api/v1beta1=true",
        "--disable", "scheduler,controller-manager"))
    try:
        result = run_script(tmp_path, "ded-prd-01", f"http://127.0.0.1:{port}", "processing")
        assert result.returncode == 0 and "Successfully registered node" in result.stdout, (result.stdout,
                                                                                            result.stderr)
        node = json.loads(server.kubectl("get", "node", "ded-prd-01", "-o", "json").stdout)
        assert node["metadata"]["labels"] == {"environment": "processing", "host": "azure", "name": "ded-prd-01"}
    finally:
        server.stop()
