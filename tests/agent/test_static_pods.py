"""Static pods from ``pilothouse agent --pod-manifest-path DIR`` (kubelet's staticPodPath), on podman.

The agent is the real command line. A manifest in DIR runs as a pod with a mirror in the API
(``kubernetes.io/config.mirror``, owned by the Node); editing the file replaces the pod (new uid, new
containers, the mirror follows); removing the file stops the pod and deletes the mirror.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.agent.conftest import PodmanFixture, get_pod, node_ready, wait_for
from tests.conftest import ServerProcess, free_port, start_server_process, terminate

NODE = "static-node"
MIRROR = f"web-{NODE}"
MANIFEST = """
apiVersion: v1
kind: Pod
metadata: {{name: web, namespace: default, labels: {{tier: static}}}}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: web
    image: {image}
    command: ["/bin/sh", "-c", "echo version {version}; trap 'exit 0' TERM; while :; do sleep 1; done"]
"""


@pytest.fixture(scope="module")
def manifests(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("manifests")


def start_agent(server_url: str, node: str, podman: PodmanFixture, manifests: Path,
                directory: Path) -> subprocess.Popen[bytes]:
    """The real command line, as the agent unit runs it."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "agent.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "pilothouse", "agent", "--server", server_url, "--node-name", node,
             "--runtime-endpoint", podman.endpoint, "--root-dir", str(directory / "root"),
             "--port", str(free_port()), "--pod-manifest-path", str(manifests), "--stop-pods-on-exit"],
            stdout=log, stderr=subprocess.STDOUT)


@pytest.fixture(scope="module")
def agent(server: ServerProcess, podman: PodmanFixture, busybox_image: str, manifests: Path,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[subprocess.Popen[bytes]]:
    (manifests / "web.yaml").write_text(MANIFEST.format(image=busybox_image, version=1))
    directory = tmp_path_factory.mktemp("static-agent")
    process = start_agent(server.url, NODE, podman, manifests, directory)
    try:
        wait_for(lambda: node_ready(server, NODE), 60, "node Ready")
    except AssertionError:
        terminate(process)
        raise AssertionError((directory / "agent.log").read_text()[-3000:]) from None
    yield process
    terminate(process, 30)


def running_mirror(server: ServerProcess, version: int) -> dict[str, Any] | None:
    pod = get_pod(server, MIRROR)
    if pod is None or pod["status"].get("phase") != "Running":
        return None
    logs = server.kubectl("logs", MIRROR, check=False).stdout
    return pod if f"version {version}" in logs else None


def static_uid(mirror: dict[str, Any]) -> str:
    """The static pod's own uid (its containers' label), derived from the manifest hash as the agent does."""
    digest = mirror["metadata"]["annotations"]["kubernetes.io/config.hash"]
    return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"


def running_containers(podman: PodmanFixture, uid: str) -> list[dict[str, Any]]:
    return [c for c in podman.containers(f"io.kubernetes.pod.uid={uid}") if c["State"] == "running"]


def app_containers(podman: PodmanFixture, label: str) -> list[dict[str, Any]]:
    """The running app containers (not sandboxes) carrying ``label``."""
    return [c for c in podman.containers(label)
            if c["State"] == "running" and c["Labels"].get("io.pilothouse.role") == "container"]


def running_pod(server: ServerProcess, name: str) -> dict[str, Any] | None:
    pod = get_pod(server, name)
    return pod if pod is not None and pod["status"].get("phase") == "Running" else None


def test_static_pod_runs_with_a_mirror_owned_by_the_node(server: ServerProcess, agent: Any,
                                                         podman: PodmanFixture) -> None:
    mirror = wait_for(lambda: running_mirror(server, 1), 60, "static pod Running with its mirror")
    annotations = mirror["metadata"]["annotations"]
    assert annotations["kubernetes.io/config.source"] == "file"
    assert annotations["kubernetes.io/config.mirror"] == annotations["kubernetes.io/config.hash"]
    node = json.loads(server.kubectl("get", "node", NODE, "-o", "json").stdout)
    owner = mirror["metadata"]["ownerReferences"]
    assert [(o["kind"], o["name"], o["uid"], o["controller"]) for o in owner] == \
        [("Node", NODE, node["metadata"]["uid"], True)]
    assert mirror["spec"]["nodeName"] == NODE and mirror["metadata"]["labels"] == {"tier": "static"}
    assert running_containers(podman, static_uid(mirror))


def test_edited_manifest_replaces_the_pod(server: ServerProcess, agent: Any, podman: PodmanFixture,
                                          manifests: Path, busybox_image: str) -> None:
    before = wait_for(lambda: running_mirror(server, 1), 60, "version 1 Running")
    (manifests / "web.yaml").write_text(MANIFEST.format(image=busybox_image, version=2))
    after = wait_for(lambda: running_mirror(server, 2), 60, "version 2 Running")
    assert static_uid(after) != static_uid(before)
    assert after["metadata"]["uid"] != before["metadata"]["uid"]  # a new mirror for the new pod
    wait_for(lambda: not running_containers(podman, static_uid(before)), 30, "version 1's containers stopped")
    assert running_containers(podman, static_uid(after))


def test_removed_manifest_stops_the_pod_and_deletes_the_mirror(server: ServerProcess, agent: Any,
                                                               podman: PodmanFixture, manifests: Path) -> None:
    mirror = wait_for(lambda: running_mirror(server, 2), 60, "version 2 Running")
    (manifests / "web.yaml").unlink()
    wait_for(lambda: get_pod(server, MIRROR) is None, 30, "mirror deleted")
    wait_for(lambda: not podman.containers(f"io.kubernetes.pod.uid={static_uid(mirror)}"), 30,
             "the static pod's containers removed")


def test_static_pods_run_before_the_api_server_answers(podman: PodmanFixture, busybox_image: str,
                                                       tmp_path: Path) -> None:
    """kubelet's file source works without an API server (how a control plane runs as static pods):
    the pod runs first, its mirror appears once a server is there."""
    node, port = "early-node", free_port()
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "web.yaml").write_text(MANIFEST.format(image=busybox_image, version=7))
    process = start_agent(f"http://127.0.0.1:{port}", node, podman, manifests, tmp_path / "agent")
    server = None
    try:
        name = f"web-{node}"
        running = wait_for(lambda: app_containers(podman, f"io.kubernetes.pod.name={name}"), 60,
                           "the static pod's container running with no API server")
        server = start_server_process(tmp_path / "server", port=port)
        wait_for(lambda: node_ready(server, node), 60, "node Ready once the server is up")
        mirror = wait_for(lambda: running_pod(server, name), 60, "mirror Running")
        # the same containers: the pod was not restarted when the API came
        assert static_uid(mirror) == running[0]["Labels"]["io.kubernetes.pod.uid"]
        assert [c["Id"] for c in app_containers(podman, f"io.kubernetes.pod.uid={static_uid(mirror)}")] == \
            [running[0]["Id"]]
        (manifests / "web.yaml").unlink()
        wait_for(lambda: get_pod(server, name) is None, 30, "mirror deleted")
    finally:
        terminate(process, 30)
        if server is not None:
            server.stop()

