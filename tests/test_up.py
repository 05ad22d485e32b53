"""``pilothouse up``, the README's first command: a whole cluster on this machine, and Ctrl-C stops it all.

Runs the real command as a user would (its own data dir and port), waits for the node, runs a pod through
kubectl (with the agent's offline pause image, the only image the default engine storage is sure to have),
reads its logs, then sends SIGINT and checks that the pod's containers and every process are gone.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import KUBECTL, OPEN_FLAGS, free_port

pytestmark = pytest.mark.skipif(shutil.which("podman") is None or not Path(KUBECTL).exists(),
                                reason="needs podman (installed by scripts/install-deps) and kubectl")

PAUSE_IMAGE = "localhost/pilothouse/pause"


# The defaults: HTTPS and Node,RBAC, the scheduler, controller manager and agent each with its own
# kubeconfig (issue 11); and the opt-outs, plain HTTP where everyone is system:admin.
@pytest.mark.parametrize("flags", [OPEN_FLAGS, ()], ids=["http", "https"])
def test_up_runs_a_pod_and_ctrl_c_stops_everything(tmp_path: Path, flags: tuple[str, ...]) -> None:
    data_dir = tmp_path / "cluster"
    port = free_port()
    log = open(tmp_path / "up.log", "wb")  # noqa: SIM115 - closed below
    up = subprocess.Popen([sys.executable, "-m", "pilothouse", "up", "--data-dir", str(data_dir), "--port", str(port),
                           "--node-name", "up-node", *flags], stdout=log, stderr=subprocess.STDOUT)
    env = {**os.environ, "KUBECONFIG": str(data_dir / "kubeconfig.yaml"), "HOME": str(tmp_path / "home")}

    def kubectl(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([KUBECTL, *args], capture_output=True, text=True, env=env, timeout=60)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {result.stderr}\n{(tmp_path / 'up.log').read_text()}")
        return result

    try:
        deadline = time.monotonic() + 120
        while True:
            assert up.poll() is None, (tmp_path / "up.log").read_text()
            assert time.monotonic() < deadline, "the node never became Ready:\n" + (tmp_path / "up.log").read_text()
            if (data_dir / "kubeconfig.yaml").exists():
                nodes = kubectl("get", "nodes", "-o", "json", check=False)
                if nodes.returncode == 0 and any(
                        c["type"] == "Ready" and c["status"] == "True"
                        for n in json.loads(nodes.stdout)["items"] for c in n["status"].get("conditions") or []):
                    break
            time.sleep(0.5)
        kubectl("run", "hello", f"--image={PAUSE_IMAGE}", "--image-pull-policy=IfNotPresent", "--command", "--",
                "sh", "-c", "echo hello from up; trap 'exit 0' TERM; while :; do sleep 1; done")
        kubectl("wait", "--for=condition=Ready", "pod/hello", "--timeout=60s")
        assert "hello from up" in kubectl("logs", "hello").stdout
        uid = kubectl("get", "pod", "hello", "-o", "jsonpath={.metadata.uid}").stdout
        running = subprocess.run(["podman", "ps", "-q", "--filter", f"label=io.kubernetes.pod.uid={uid}"],
                                 capture_output=True, text=True, timeout=30).stdout.split()
        assert len(running) == 2  # the pod's sandbox and its container

        up.send_signal(signal.SIGINT)
        up.wait(90)
        assert up.returncode == 0, (tmp_path / "up.log").read_text()
        left = subprocess.run(["podman", "ps", "-q", "--filter", f"label=io.kubernetes.pod.uid={uid}"],
                              capture_output=True, text=True, timeout=30).stdout.split()
        assert left == [], "Ctrl-C left the pod's containers running"
        children = subprocess.run(["pgrep", "-f", f"--server http://127.0.0.1:{port}"],
                                  capture_output=True, text=True).stdout.split()
        assert children == [], "Ctrl-C left components running"
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
        log.close()
        leftovers = subprocess.run(["podman", "ps", "-aq", "--filter", "label=io.kubernetes.pod.name=hello",
                                    "--filter", "label=io.kubernetes.pod.namespace=default"],
                                   capture_output=True, text=True, timeout=30).stdout.split()
        if leftovers:  # --depend: the sandbox goes with the containers that joined its namespaces
            subprocess.run(["podman", "rm", "-f", "-t", "0", "--depend", *leftovers], capture_output=True, timeout=60)
