"""``controlPlane: static-pods``: ``pilothouse cluster create`` runs the API server (with its scheduler and
controller manager) as a static pod of the server host's agent, kubeadm's way.

The server host's supervisor makes the CA and serving certificate, imports the pilothouse image built
from this machine's interpreter into the host's podman storage, writes the server's manifest into the
agent's manifest directory and starts the agent, which starts that host-network pod before node IPAM
(run by the very server it starts) gives its Node a range. Checked with the real kubectl: the mirror
pod in kube-system, a Deployment running on both hosts, and the server's container killed and
restarted by the agent.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from pilothouse.machinery.topology import TopologyError, parse_cluster
from tests.agent.conftest import TEST_IMAGE, wait_for
from tests.cluster.test_seed_cluster import SeedCluster, _logs, busybox_cluster

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

SERVER = {"name": "cp-a", "role": "server", "address": "10.71.0.1"}
AGENT = {"name": "cp-b", "role": "agent", "address": "10.71.0.2"}
TOPOLOGY = {
    "apiVersion": "pilothouse.io/v1alpha1", "kind": "Cluster", "metadata": {"name": "scp"},
    "controlPlane": "static-pods",
    "network": {"hostSubnet": "10.71.0.0/24", "podCIDR": "10.72.0.0/16", "serviceRange": "10.73.0.0/16"},
    "hosts": [SERVER, AGENT],
}
MIRROR = "pilothouse-server-cp-a"


@pytest.fixture(scope="module")
def cluster() -> Iterator[SeedCluster]:
    with busybox_cluster(TOPOLOGY, "scp") as handle:
        yield handle


def _server_containers(cluster: SeedCluster) -> list[str]:
    """Ids of the running server containers in the server host's podman storage."""
    layout = cluster.layout
    host = layout.cluster().server
    listed = subprocess.run([*layout.podman_base(host), "ps", "--format", "json",
                             "--filter", f"label=io.kubernetes.pod.name={MIRROR}",
                             "--filter", "label=io.pilothouse.role=container"],
                            capture_output=True, text=True, timeout=60, check=True)
    return [c["Id"] for c in json.loads(listed.stdout or "[]") if c.get("State") == "running"]


def _mirror(cluster: SeedCluster) -> dict[str, Any] | None:
    result = cluster.kubectl("get", "pod", "-n", "kube-system", MIRROR, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def test_the_server_is_a_static_pod_with_a_mirror(cluster: SeedCluster) -> None:
    listing = wait_for(lambda: (lambda r: r.stdout if MIRROR in r.stdout and "Running" in r.stdout else None)(
        cluster.kubectl("get", "pods", "-n", "kube-system", check=False)), 120, "the server's mirror pod listed")
    assert MIRROR in listing, listing
    mirror = _mirror(cluster)
    assert mirror is not None
    assert mirror["metadata"]["annotations"]["kubernetes.io/config.source"] == "file"
    assert "kubernetes.io/config.mirror" in mirror["metadata"]["annotations"]
    assert mirror["spec"]["hostNetwork"] is True and mirror["spec"]["nodeName"] == "cp-a"
    assert mirror["status"]["podIP"] == "10.71.0.1"
    # the supervisor runs no server process of its own: the one server is the container
    assert len(_server_containers(cluster)) == 1, _logs(cluster.layout)
    # node IPAM (in that server's controller manager) gave both Nodes their range
    for node in ("cp-a", "cp-b"):
        assert str(cluster.pod_range(node)).startswith("10.72.")


def test_a_deployment_runs(cluster: SeedCluster) -> None:
    cluster.kubectl("create", "deployment", "hello", f"--image={TEST_IMAGE}", "--replicas=2", "--",
                    "sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done")
    wait_for(lambda: len(cluster.running_pods("app=hello")) == 2, 180, "the Deployment's two pods running")
    pods = cluster.running_pods("app=hello")
    assert all(p["status"]["podIP"].startswith("10.72.") for p in pods), pods


def test_killing_the_server_container_makes_the_agent_restart_it(cluster: SeedCluster) -> None:
    before = wait_for(lambda: _server_containers(cluster), 60, "the server container")
    layout = cluster.layout
    subprocess.run([*layout.podman_base(layout.cluster().server), "kill", before[0]], capture_output=True,
                   timeout=60, check=True)
    after = wait_for(lambda: [c for c in _server_containers(cluster) if c not in before], 180,
                     "a new server container started by the agent")
    assert len(after) == 1
    mirror = wait_for(lambda: (lambda m: m if m and m["status"].get("phase") == "Running" and
                               (m["status"].get("containerStatuses") or [{}])[0].get("restartCount", 0) >= 1
                               else None)(_mirror(cluster)), 180, "the mirror reporting the restart")
    assert mirror["status"]["containerStatuses"][0]["lastState"].get("terminated"), mirror["status"]
    # the restarted server serves the cluster as before: the Deployment is still there and running
    wait_for(lambda: len(cluster.running_pods("app=hello")) == 2, 120, "the Deployment after the restart")


def test_stop_and_start_bring_the_static_server_back(cluster: SeedCluster) -> None:
    """``stop`` stops the agent and with it the server's pod; ``start`` has the agent start it again
    from the same manifest (the image is not built again) over the same data."""
    cluster.cli("stop")
    assert not _server_containers(cluster)
    started = cluster.cli("start")
    assert "cp-a: node Ready" in started.stderr, started.stderr
    log = cluster.layout.log_file(cluster.layout.cluster().server).read_text()  # appended to by each run
    assert log.count("building the pilothouse image") == 1
    wait_for(lambda: len(_server_containers(cluster)) == 1, 60, "the server's container again")
    wait_for(lambda: len(cluster.running_pods("app=hello")) == 2, 180, "the Deployment kept and running again")


@pytest.mark.parametrize("server", [{"agent": False}, {"engine": "simulated"}])
def test_static_pods_need_a_podman_agent_on_the_server_host(server: dict[str, Any]) -> None:
    document = {**TOPOLOGY, "hosts": [{**SERVER, **server}, AGENT]}
    with pytest.raises(TopologyError, match=r"controlPlane: static-pods needs an agent on the server host 'cp-a'"):
        parse_cluster(document)
    assert parse_cluster({**document, "controlPlane": "processes"}).control_plane == "processes"
    assert parse_cluster(TOPOLOGY).control_plane == "static-pods"
    with pytest.raises(TopologyError, match="controlPlane"):
        parse_cluster({**TOPOLOGY, "controlPlane": "pods"})
