"""Pods reach the API server through the ``kubernetes`` Service under ``pilothouse up``'s defaults
(a loopback bind, TLS and RBAC on): the server also listens on the pod bridge's gateway and
advertises it, the agent's embedded proxy DNATs 10.96.0.1:443 there, and the API stays off the
host's other addresses (see pilothouse/cli/podfacing.py). A TCP connection from the pod: busybox
cannot complete TLS with the server (the in-pod check of the other e2e tests is TCP too)."""

from __future__ import annotations

import json
import socket

from pilothouse.apiserver.masterendpoints import advertise_address
from tests.test_secure_up import PAUSE_IMAGE, SLEEP, Cluster, wait_for
from tests.test_secure_up import cluster as cluster
from tests.test_secure_up import pytestmark as pytestmark

GATEWAY = "10.244.0.1"  # up's --pod-cidr default, 10.244.0.0/16: its first address is the bridge's


def _connects(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=2):
            return True
    except OSError:
        return False


def test_pods_reach_the_api_through_the_kubernetes_service(cluster: Cluster) -> None:
    endpoints = json.loads(cluster.kubectl("get", "endpoints", "kubernetes", "-o", "json").stdout)
    assert [a["ip"] for a in endpoints["subsets"][0]["addresses"]] == [GATEWAY]
    assert endpoints["subsets"][0]["ports"][0]["port"] == cluster.port
    # not on the host's network address: only loopback and the pods' gateway listen
    host_address = advertise_address("0.0.0.0")
    if host_address not in ("0.0.0.0", GATEWAY):
        assert not _connects(host_address, cluster.port), host_address
    assert _connects("127.0.0.1", cluster.port)

    client_pod(cluster, "api-client")
    wait_for("the API through 10.96.0.1", lambda: reaches(cluster, "api-client", "10.96.0.1"), 60, cluster.log)
    cluster.kubectl("delete", "pod", "api-client", "--wait=false")


def client_pod(cluster: Cluster, name: str) -> str:
    """A running pod to probe from (busybox in the pause image); its address."""
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
           "spec": {"terminationGracePeriodSeconds": 1, "containers": [
               {"name": "c", "image": PAUSE_IMAGE, "imagePullPolicy": "IfNotPresent", "command": ["sh", "-c", SLEEP]}]}}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(pod))

    def running() -> bool:
        return cluster.kubectl("get", "pod", name, "-o", "jsonpath={.status.phase}", check=False).stdout == "Running"

    wait_for(f"the client pod {name} running", running, 120, cluster.log)
    return str(cluster.kubectl("get", "pod", name, "-o", "jsonpath={.status.podIP}").stdout)


def reaches(cluster: Cluster, pod: str, target: str) -> bool:
    """A TCP connection from ``pod`` to ``target``:443."""
    # the pause image is a static busybox: every applet is there through /bin/busybox
    return cluster.kubectl("exec", pod, "--", "/bin/busybox", "nc", "-w", "3", target, "443",
                           check=False, input="").returncode == 0
