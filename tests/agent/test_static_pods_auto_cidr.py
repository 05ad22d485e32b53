"""Static host-network pods start before the Node has a pod range (``--pod-cidr auto``), as kubelet's do.

With ``--pod-cidr auto`` the agent waits for node IPAM's ``spec.podCIDR``, and node IPAM runs in the
controller manager; when that is itself a static pod (``--control-plane static-pods``) waiting for the
range before starting any static pod would be a deadlock. kubelet only needs the range for CNI, so
host-network static pods start at once and the others once the range (and the pod network) is there.
The agent is the real command line against podman; the server comes up later, with node IPAM.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.agent.conftest import PodmanFixture, get_pod, wait_for
from tests.conftest import ServerProcess, free_port, start_server_process, terminate

NODE = "auto-cidr-node"
MANIFEST = """
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: default}}
spec:
  hostNetwork: {host_network}
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {image}
    command: ["/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]
"""


def app_containers(podman: PodmanFixture, pod: str) -> list[dict[str, Any]]:
    return [c for c in podman.containers(f"io.kubernetes.pod.name={pod}-{NODE}")
            if c["State"] == "running" and c["Labels"].get("io.pilothouse.role") == "container"]


def running_pod(server: ServerProcess, name: str) -> dict[str, Any] | None:
    pod = get_pod(server, name)
    return pod if pod is not None and pod["status"].get("phase") == "Running" else None


def test_host_network_static_pods_start_before_node_ipam(podman: PodmanFixture, busybox_image: str,
                                                         tmp_path: Path) -> None:
    port = free_port()
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "host.yaml").write_text(MANIFEST.format(name="host", host_network="true", image=busybox_image))
    (manifests / "bridged.yaml").write_text(MANIFEST.format(name="bridged", host_network="false",
                                                            image=busybox_image))
    directory = tmp_path / "agent"
    directory.mkdir()
    with (directory / "agent.log").open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "pilothouse", "agent", "--server", f"http://127.0.0.1:{port}",
             "--node-name", NODE, "--runtime-endpoint", podman.endpoint, "--root-dir", str(directory / "root"),
             "--port", str(free_port()), "--pod-manifest-path", str(manifests), "--pod-cidr", "auto",
             "--cluster-cidr", "10.213.0.0/16", "--pod-routes", "none", "--stop-pods-on-exit"],
            stdout=log, stderr=subprocess.STDOUT)
    server = None
    try:
        try:
            wait_for(lambda: app_containers(podman, "host"), 60, "the host-network static pod running, no server")
        except AssertionError:
            raise AssertionError((directory / "agent.log").read_text()[-3000:]) from None
        # no range yet: the bridged pod waits for it (kubelet's CNI would fail without one)
        assert not podman.containers(f"io.kubernetes.pod.name=bridged-{NODE}")
        server = start_server_process(tmp_path / "server", port=port,
                                      extra=("--cluster-cidr", "10.213.0.0/16"))
        wait_for(lambda: app_containers(podman, "bridged"), 90, "the bridged static pod once node IPAM gave a range")
        node = server.kubectl("get", "node", NODE, "-o", "jsonpath={.spec.podCIDR}").stdout
        assert node.startswith("10.213.")
        mirror = wait_for(lambda: running_pod(server, f"bridged-{NODE}"), 60, "the bridged pod's mirror Running")
        assert mirror["status"]["podIP"].startswith("10.213."), mirror["status"]
        host = wait_for(lambda: get_pod(server, f"host-{NODE}"), 60, "the host pod's mirror")
        assert host["spec"]["hostNetwork"] is True
    finally:
        terminate(process, 30)
        if server is not None:
            server.stop()
