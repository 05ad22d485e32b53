"""``pilothouse up --pod-cidr auto``: the node's pod range comes from node IPAM in the embedded
controller manager, known only after the agent registered its Node, and pods still reach the API
server through the ``kubernetes`` Service: once the range is set the server also listens on its
gateway and advertises it (pilothouse/cli/podfacing.py), and the API stays off the host's other
addresses. A TCP connection from a real pod, as in test_up_api_from_pods.py."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator

import pytest

from pilothouse.apiserver.masterendpoints import advertise_address
from tests.proxy.test_up_api_from_pods import _connects, client_pod, reaches
from tests.test_secure_up import Cluster, up_cluster, wait_for
from tests.test_secure_up import pytestmark as pytestmark

NODE = "auto-node"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with up_cluster(tmp_path_factory.mktemp("auto-up"), NODE, "--pod-cidr", "auto") as running:
        yield running


def _endpoint_addresses(cluster: Cluster) -> list[str]:
    # The Endpoints object is first written once the server serves the range's gateway, which
    # follows the Node's podCIDR by a poll (cli/podfacing.py): NotFound until then, not a failure.
    result = cluster.kubectl("get", "endpoints", "kubernetes", "-o", "json", check=False)
    if result.returncode != 0:
        assert "NotFound" in result.stderr, result.stderr
        return []
    endpoints = json.loads(result.stdout)
    return [a["ip"] for subset in endpoints.get("subsets") or [] for a in subset.get("addresses") or []]


def test_pods_reach_the_api_in_a_range_from_node_ipam(cluster: Cluster) -> None:
    def ranged() -> str:
        return str(cluster.kubectl("get", "node", NODE, "-o", "jsonpath={.spec.podCIDR}").stdout)

    wait_for("node IPAM's range on the Node", ranged, 60, cluster.log)
    pod_range = ipaddress.IPv4Network(ranged())  # within up's cluster range
    assert pod_range.prefixlen == 24 and pod_range.subnet_of(ipaddress.IPv4Network("10.244.0.0/16")), pod_range
    gateway = str(pod_range.network_address + 1)
    wait_for("the kubernetes endpoints on the pods' gateway", lambda: _endpoint_addresses(cluster) == [gateway],
             30, cluster.log)
    endpoints = json.loads(cluster.kubectl("get", "endpoints", "kubernetes", "-o", "json").stdout)
    assert endpoints["subsets"][0]["ports"][0]["port"] == cluster.port
    host_address = advertise_address("0.0.0.0")
    if host_address not in ("0.0.0.0", gateway):
        assert not _connects(host_address, cluster.port), host_address

    pod_ip = client_pod(cluster, "auto-client")
    assert ipaddress.IPv4Address(pod_ip) in pod_range, (pod_ip, pod_range)
    wait_for("the API through 10.96.0.1", lambda: reaches(cluster, "auto-client", "10.96.0.1"), 60, cluster.log)
    cluster.kubectl("delete", "pod", "auto-client", "--wait=false")
