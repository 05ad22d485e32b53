"""Node ports are freed when a Service stops using them (issue 15): NodePort → ClusterIP (the ports are
dropped, as kube-apiserver's ``dropTypeDependentFields`` does), a changed or removed port, and
NodePort → ExternalName (the cluster IP too). Before, only deleting the Service freed anything."""

from __future__ import annotations

import random
from typing import Any

import pytest

from pilothouse.client import errors
from pilothouse.client.rest import APIClient, resource
from tests.conftest import ServerProcess

SERVICES = resource("", "v1", "services")


def service(name: str, ports: list[dict[str, Any]], service_type: str = "NodePort") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"type": service_type, "selector": {"app": name}, "ports": ports}}


def free_node_port() -> int:
    return random.randint(30000, 32767)


async def test_node_port_to_cluster_ip_frees_the_ports(server: ServerProcess) -> None:
    port = free_node_port()
    async with APIClient(server.url) as client:
        await client.create(SERVICES, service("np-a", [{"port": 80, "nodePort": port}]), "default")
        with pytest.raises(errors.InvalidError, match="already allocated"):
            await client.create(SERVICES, service("np-b", [{"port": 80, "nodePort": port}]), "default")
        changed = await client.patch(SERVICES, "np-a", {"spec": {"type": "ClusterIP"}}, "default")
        assert changed["spec"]["type"] == "ClusterIP"
        assert "nodePort" not in changed["spec"]["ports"][0]
        taken = await client.create(SERVICES, service("np-b", [{"port": 80, "nodePort": port}]), "default")
        assert taken["spec"]["ports"][0]["nodePort"] == port


async def test_a_changed_or_removed_node_port_is_freed(server: ServerProcess) -> None:
    first, second, third = free_node_port(), free_node_port(), free_node_port()
    if len({first, second, third}) < 3:
        pytest.skip("random ports collided")  # vanishingly rare; rerun
    async with APIClient(server.url) as client:
        await client.create(SERVICES, service("np-c", [{"name": "a", "port": 80, "nodePort": first},
                                                        {"name": "b", "port": 81, "nodePort": second}]), "default")
        current = await client.get(SERVICES, "np-c", "default")
        current["spec"]["ports"] = [{"name": "a", "port": 80, "nodePort": third, "protocol": "TCP"}]
        await client.update(SERVICES, current)
        for name, port in (("np-d", first), ("np-e", second)):
            taken = await client.create(SERVICES, service(name, [{"port": 80, "nodePort": port}]), "default")
            assert taken["spec"]["ports"][0]["nodePort"] == port
        with pytest.raises(errors.InvalidError, match="already allocated"):
            await client.create(SERVICES, service("np-f", [{"port": 80, "nodePort": third}]), "default")


async def test_external_name_frees_the_cluster_ip_and_node_ports(server: ServerProcess) -> None:
    port = free_node_port()
    async with APIClient(server.url) as client:
        created = await client.create(SERVICES, service("np-g", [{"port": 80, "nodePort": port}]), "default")
        ip = created["spec"]["clusterIP"]
        changed = await client.patch(SERVICES, "np-g", {"spec": {"type": "ExternalName",
                                                                 "externalName": "example.com"}}, "default")
        assert "clusterIP" not in changed["spec"] and "nodePort" not in changed["spec"]["ports"][0]
        again = service("np-h", [{"port": 80, "nodePort": port}])
        again["spec"]["clusterIP"] = ip
        taken = await client.create(SERVICES, again, "default")
        assert taken["spec"]["clusterIP"] == ip and taken["spec"]["ports"][0]["nodePort"] == port
