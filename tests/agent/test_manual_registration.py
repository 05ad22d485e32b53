"""The seed's manual node registration: an agent started with ``--register-node=false`` waits for a Node
registered by hand (with its labels), adopts it, and label-driven placement lands pods on it.

The agent runs the simulated runtime (no containers needed to prove registration and placement).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.conftest import ServerProcess, free_port


def _node(server: ServerProcess, name: str) -> dict[str, Any] | None:
    result = server.kubectl("get", "node", name, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def _ready(node: dict[str, Any] | None) -> bool:
    return bool(node) and any(c["type"] == "Ready" and c["status"] == "True"
                              for c in (node or {}).get("status", {}).get("conditions") or [])


def test_agent_adopts_a_node_registered_by_hand(server: ServerProcess, tmp_path: Path) -> None:
    name = "azure-prd-09"
    agent = subprocess.Popen(
        [sys.executable, "-m", "pilothouse", "agent", "--server", server.url, "--node-name", name,
         "--register-node=false", "--runtime", "simulated", "--root-dir", str(tmp_path / "agent"),
         "--port", str(free_port())], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(2)
        assert _node(server, name) is None, "with --register-node=false the agent must not create its Node"
        # What the seed's register_node.sh does, in today's API: create the Node with its labels.
        server.kubectl("create", "-f", "-", input=json.dumps({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"environment": "production", "host": "azure", "name": name}}}))
        deadline = time.monotonic() + 30
        while not _ready(node := _node(server, name)):
            assert time.monotonic() < deadline, f"the agent did not adopt {name}: {node}"
            time.sleep(0.3)
        assert node is not None
        labels = node["metadata"]["labels"]
        assert labels["environment"] == "production" and labels["host"] == "azure"
        assert node["status"]["allocatable"]["pods"] == "110"

        server.kubectl("create", "-f", "-", input=json.dumps({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "placed-by-label"},
            "spec": {"nodeSelector": {"environment": "production", "host": "azure"},
                     "containers": [{"name": "app", "image": "registry.local/app:1"}]}}))
        deadline = time.monotonic() + 30
        while True:
            pod = json.loads(server.kubectl("get", "pod", "placed-by-label", "-o", "json").stdout)
            if pod["spec"].get("nodeName") == name and pod.get("status", {}).get("phase") == "Running":
                break
            assert time.monotonic() < deadline, f"pod not placed and running on {name}: {pod.get('status')}"
            time.sleep(0.3)
        server.kubectl("delete", "pod", "placed-by-label", "--wait=false")
    finally:
        agent.terminate()
        try:
            agent.wait(15)
        except subprocess.TimeoutExpired:
            agent.kill()
            agent.wait()
