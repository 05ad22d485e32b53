"""The agent keeps collecting orphaned containers after its engine was away (issue 15, chaos).

A real-agent chaos round (``CHAOS_SEED=1555179043``) ended with a deleted pod's sandbox left in podman
for good: podman was SIGKILLed while the pod's worker removed it, so the removal failed (the worker
leaves what it cannot remove to the orphan collection, as the kubelet leaves it to its container
GC) and podman's record stayed ``removing`` (a later ``DELETE ?force=true`` removes it). The orphan
collection never came back to it: its loop had met the dead engine once (aiodocker's
``DockerError``, not the ``RuntimeError_`` it expected) and ended for good. The kubelet's container
GC logs a failed pass and tries again on the next one; so does the agent's relist loop now.

Real agent process, a podman service of the test's own (SIGKILLed, as the chaos does), real API server.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

from tests.agent.conftest import PodmanFixture, import_busybox, remove_podman, start_ready_agent, wait_for
from tests.conftest import ServerProcess

NODE = "engine-outage-node"
ORPHAN_UID = "0rphan00-0000-4000-8000-000000000000"
ULIMITS = [{"Name": "nofile", "Soft": 1024, "Hard": 1024}, {"Name": "nproc", "Soft": 1024, "Hard": 1024}]


def test_orphans_are_collected_after_the_engine_was_killed(server: ServerProcess, tmp_path: Path) -> None:
    # A short path of its own: podman refuses a --runroot longer than 50 characters.
    directory = Path(tempfile.mkdtemp(prefix="gc-podman-"))
    podman = PodmanFixture(directory, directory / "podman.sock")
    podman.start()
    try:
        image = import_busybox(podman)
        agent_dir = tmp_path / "agent"
        agent = start_ready_agent(server, podman, agent_dir, NODE, relist_period=0.5)
        try:
            assert podman.process is not None
            podman.process.kill()
            podman.process.wait()
            time.sleep(3)  # several relist passes meet the dead engine
            podman.start()
            # What the killed removal left: a container of this agent's whose pod is gone.
            labels = {"io.kubernetes.pod.uid": ORPHAN_UID, "io.kubernetes.pod.name": "gone",
                      "io.pilothouse.role": "sandbox", "io.pilothouse.agent": f"{NODE}@{agent_dir / 'root'}"}
            status, body = podman.api("POST", "/containers/create?name=orphaned-sandbox", {
                "Image": image, "Entrypoint": ["sleep", "1000"], "Labels": labels,
                "HostConfig": {"Ulimits": ULIMITS}})
            assert status == 201, body
            status, body = podman.api("POST", f"/containers/{json.loads(body)['Id']}/start")
            assert status == 204, body
            try:
                wait_for(lambda: not podman.containers(f"io.kubernetes.pod.uid={ORPHAN_UID}"), 30,
                         "the orphan collected")
            except AssertionError:
                raise AssertionError(agent.log()) from None
        finally:
            agent.stop()
    finally:
        remove_podman(podman)
        shutil.rmtree(directory, ignore_errors=True)
