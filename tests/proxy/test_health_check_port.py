"""``spec.healthCheckNodePort``, as kube-apiserver allocates it, through the official client: a
LoadBalancer Service with ``externalTrafficPolicy: Local`` gets one from the node-port range, keeps
it across updates, frees it when the policy or type changes, and a port asked for that another
Service holds is refused."""

from __future__ import annotations

import random
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config

from tests.conftest import ServerProcess


@pytest.fixture(scope="module")
def core(server: ServerProcess) -> k8s.CoreV1Api:
    return k8s.CoreV1Api(config.new_client_from_config(config_file=str(server.kubeconfig)))


def balancer(name: str, policy: str = "Local", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"type": "LoadBalancer", "externalTrafficPolicy": policy, "selector": {"app": name},
                     "ports": [{"port": 80}], **spec}}


def test_allocated_kept_and_freed(core: k8s.CoreV1Api) -> None:
    created = core.create_namespaced_service("default", balancer("hc-a"))
    port = created.spec.health_check_node_port
    assert 30000 <= port <= 32767 and port != created.spec.ports[0].node_port
    relabelled = core.patch_namespaced_service("hc-a", "default", {"metadata": {"labels": {"x": "y"}}})
    assert relabelled.spec.health_check_node_port == port
    # taken: another Service cannot have it as a node port or as its own health check port
    for taker in (balancer("hc-b", "Cluster", ports=[{"port": 80, "nodePort": port}]),
                  balancer("hc-b", healthCheckNodePort=port)):
        with pytest.raises(k8s.ApiException) as refused:
            core.create_namespaced_service("default", taker)
        assert refused.value.status == 422 and "already allocated" in refused.value.body
    cluster = core.patch_namespaced_service("hc-a", "default", {"spec": {"externalTrafficPolicy": "Cluster"}})
    assert cluster.spec.health_check_node_port is None
    # freed: now anyone may ask for it
    taken = core.create_namespaced_service("default", balancer("hc-b", healthCheckNodePort=port))
    assert taken.spec.health_check_node_port == port
    core.delete_namespaced_service("hc-b", "default")
    again = core.create_namespaced_service("default", balancer("hc-c", "Cluster",
                                                                ports=[{"port": 80, "nodePort": port}]))
    assert again.spec.ports[0].node_port == port


def test_only_local_load_balancers_get_one(core: k8s.CoreV1Api) -> None:
    assert core.create_namespaced_service("default", balancer("hc-cluster", "Cluster")).spec.health_check_node_port \
        is None
    node_port = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "hc-np"},
                 "spec": {"type": "NodePort", "externalTrafficPolicy": "Local", "ports": [{"port": 80}]}}
    assert core.create_namespaced_service("default", node_port).spec.health_check_node_port is None
    explicit = random.randint(30000, 32767)
    asked = core.create_namespaced_service("default", balancer("hc-asked", healthCheckNodePort=explicit))
    assert asked.spec.health_check_node_port == explicit
