"""The ``kubernetes`` Service's endpoints name the API server's advertised address and port, read
back with the official client, as a pod's client library finds the API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from tests.conftest import ServerProcess, start_server_process


def api_clients(server: ServerProcess) -> tuple[client.CoreV1Api, client.DiscoveryV1Api]:
    api = config.new_client_from_config(config_file=str(server.kubeconfig))
    return client.CoreV1Api(api), client.DiscoveryV1Api(api)


@pytest.fixture
def advertised(tmp_path: Path) -> Iterator[ServerProcess]:
    server = start_server_process(tmp_path / "a", extra=("--advertise-address", "10.250.9.9"))
    yield server
    server.stop()


def test_kubernetes_service_points_at_the_advertised_address(advertised: ServerProcess) -> None:
    core, discovery = api_clients(advertised)
    service = core.read_namespaced_service("kubernetes", "default")
    assert service.spec.cluster_ip == "10.96.0.1" and service.spec.selector is None
    endpoints = core.read_namespaced_endpoints("kubernetes", "default")
    assert [a.ip for a in endpoints.subsets[0].addresses] == ["10.250.9.9"]
    assert [(p.name, p.port, p.protocol) for p in endpoints.subsets[0].ports] == [("https", advertised.port, "TCP")]
    endpoint_slice = discovery.read_namespaced_endpoint_slice("kubernetes", "default")
    assert endpoint_slice.metadata.labels["kubernetes.io/service-name"] == "kubernetes"
    assert endpoint_slice.address_type == "IPv4"
    assert [(e.addresses, e.conditions.ready) for e in endpoint_slice.endpoints] == [(["10.250.9.9"], True)]
    assert [(p.name, p.port) for p in endpoint_slice.ports] == [("https", advertised.port)]


def test_loopback_server_writes_no_endpoints(server: ServerProcess) -> None:
    core, _ = api_clients(server)
    assert core.read_namespaced_service("kubernetes", "default").spec.cluster_ip == "10.96.0.1"
    with pytest.raises(client.ApiException) as error:
        core.read_namespaced_endpoints("kubernetes", "default")
    assert error.value.status == 404
