"""``agent --stop-pods-on-exit`` (what ``pilothouse up`` runs) leaves nothing in the engine (issue 15):
stopping used to leave every pod's exited containers behind, and those of a pod in its deletion grace
period too. It also says which pods it waits for. Real agent process (the CLI), real podman."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.agent.conftest import PodmanFixture, get_pod, node_ready, wait_for
from tests.conftest import ServerProcess, free_port

NODE = "stopping-node"
LOOP = "trap 'exit 0' TERM; while :; do sleep 1; done"


def pod(name: str, image: str, command: str, grace: int) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {
        "nodeName": NODE, "terminationGracePeriodSeconds": grace,
        "containers": [{"name": "main", "image": image, "imagePullPolicy": "IfNotPresent",
                        "command": ["/bin/sh", "-c", command]}]}})


def test_stop_pods_on_exit_removes_every_container(server: ServerProcess, podman: PodmanFixture,
                                                   busybox_image: str, tmp_path: Path) -> None:
    log_path = tmp_path / "agent.log"
    with open(log_path, "wb") as log:
        agent = subprocess.Popen(
            [sys.executable, "-m", "pilothouse", "agent", "--server", server.url, "--node-name", NODE,
             "--runtime-endpoint", podman.endpoint, "--root-dir", str(tmp_path / "root"),
             "--port", str(free_port()), "--stop-pods-on-exit"],
            stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: node_ready(server, NODE), 60, "node Ready")
        server.kubectl("apply", "-f", "-", input=pod("steady", busybox_image, LOOP, 5))
        # sh as PID 1 ignores SIGTERM: this one stays in its grace period until SIGKILL
        server.kubectl("apply", "-f", "-", input=pod("leaving", busybox_image, "while :; do sleep 1; done", 8))

        def running(name: str) -> bool:
            pod = get_pod(server, name)
            return bool(pod) and pod["status"].get("phase") == "Running"
        wait_for(lambda: running("steady") and running("leaving"), 60, "pods Running")
        uids = [get_pod(server, name)["metadata"]["uid"] for name in ("steady", "leaving")]  # type: ignore[index]
        server.kubectl("delete", "pod", "leaving", "--wait=false")
        wait_for(lambda: bool((get_pod(server, "leaving") or {}).get("metadata", {}).get("deletionTimestamp")),
                 10, "leaving marked for deletion")
        agent.send_signal(signal.SIGTERM)
        agent.wait(60)
    except (AssertionError, subprocess.TimeoutExpired):
        agent.kill()
        pytest.fail(log_path.read_text(errors="replace")[-4000:])
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
    left = [c for uid in uids for c in podman.containers(f"io.kubernetes.pod.uid={uid}")]
    assert left == [], [(c.get("Names"), c.get("State")) for c in left]
    text = log_path.read_text(errors="replace")
    assert "stopping 2 pods" in text and "default/steady" in text and "default/leaving" in text, text[-3000:]
