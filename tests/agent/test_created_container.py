"""A container created but never started is started (issue 15, chaos ``CHAOS_SEED=136199913``).

podman SIGKILLed between the agent's create and start of a pod's container left it ``created``; the
pod worker drove ``running`` and ``exited`` containers only, so the pod stayed Pending with its
container created for good. The kubelet starts a container again from the ``created`` state; the agent
starts the one it created (the attempt the kill cut short), so nothing is recreated and the restart
count stays 0. Made here without the race: the agent stopped, its container replaced by one created
with the same labels, the agent started again. Real agent process, real podman, real API server.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.agent.conftest import PodmanFixture, get_pod, make_agent, node_ready, wait_for
from tests.conftest import ServerProcess

NODE = "created-container-node"
ULIMITS = [{"Name": "nofile", "Soft": 1024, "Hard": 1024}, {"Name": "nproc", "Soft": 1024, "Hard": 1024}]


def _running_container(server: ServerProcess, name: str) -> dict[str, Any] | None:
    pod = get_pod(server, name) or {}
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    ready = statuses and statuses[0].get("ready") and "running" in (statuses[0].get("state") or {})
    return statuses[0] if ready else None


def test_a_created_container_is_started_not_left(server: ServerProcess, podman: PodmanFixture,
                                                 busybox_image: str, tmp_path: Path) -> None:
    agent = make_agent(server, podman, tmp_path, NODE)
    agent.start()
    try:
        wait_for(lambda: node_ready(server, NODE), 30, "node Ready")
        server.kubectl("apply", "-f", "-", input=json.dumps({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "half-started"},
            "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 1, "containers": [
                {"name": "c", "image": busybox_image, "imagePullPolicy": "IfNotPresent",
                 "command": ["sleep", "100000"]}]}}))
        wait_for(lambda: _running_container(server, "half-started"), 60, "pod running")
        uid = get_pod(server, "half-started")["metadata"]["uid"]  # type: ignore[index]
        agent.stop()  # SIGTERM: the containers keep running
        listed = podman.containers(f"io.kubernetes.pod.uid={uid}")
        (app,) = [c for c in listed if c["Labels"]["io.pilothouse.role"] == "container"]
        (sandbox,) = [c for c in listed if c["Labels"]["io.pilothouse.role"] == "sandbox"]
        status, body = podman.api("DELETE", f"/containers/{app['Id']}?force=true")
        assert status == 204, body
        # What a kill between create and start leaves: the attempt created, never started.
        status, body = podman.api("POST", f"/containers/create?name={app['Names'][0].lstrip('/')}", {
            "Image": busybox_image, "Entrypoint": ["sleep", "100000"], "Labels": app["Labels"],
            "HostConfig": {"Ulimits": ULIMITS, "NetworkMode": f"container:{sandbox['Id']}"}})
        assert status == 201, body
        created = json.loads(body)["Id"]
        agent.start()

        def started() -> dict[str, Any] | None:
            status = _running_container(server, "half-started")  # the status before the stop said running
            return status if status and status["containerID"].partition("://")[2] == created else None
        try:
            status_now = wait_for(started, 30, "the created container started")
        except AssertionError:
            raise AssertionError(agent.log()) from None
        assert status_now["restartCount"] == 0
        mine = podman.containers(f"io.kubernetes.pod.uid={uid}")
        assert sorted(c["State"] for c in mine) == ["running", "running"], mine
    finally:
        server.kubectl("delete", "pod", "half-started", "--wait=false", check=False)
        wait_for(lambda: get_pod(server, "half-started") is None, 30, "pod deleted")
        agent.stop()
