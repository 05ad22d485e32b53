"""``--nodeport-addresses primary`` (kube-proxy 1.29+) and health-check node ports bound to the
node-port addresses only, against a real API server and a real kernel (tests/proxy/netlab.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest

from pilothouse.components.proxy.rules import ProxyConfig
from tests.conftest import ServerProcess
from tests.proxy import netlab
from tests.proxy.test_flags import _config
from tests.proxy.test_kernel import apply, node_port, settle, slice_of, web_service
from tests.proxy.test_kernel_features import running

NODE = "np-primary"
kernel = pytest.mark.skipif(bool(netlab.usable()), reason=netlab.usable() or "")


@pytest.fixture(scope="module")
def lab() -> Iterator[netlab.Lab]:
    with netlab.Lab.serving(2) as lab:
        yield lab


def test_primary_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    _, config, output = _config(monkeypatch, "--nodeport-addresses", "primary")
    assert isinstance(config, ProxyConfig) and config.nodeport_addresses == ("primary",), output
    code, config, output = _config(monkeypatch, "--nodeport-addresses", "primary,10.0.0.0/8")
    assert code == 2 and config is None and "cannot be combined" in output, output


def register_node(server: ServerProcess, internal_ip: str) -> None:
    """The Node as an agent registers it (all fields, status too, may be set on create)."""
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE},
            "status": {"addresses": [{"type": "Hostname", "address": NODE},
                                     {"type": "ExternalIP", "address": "198.51.100.7"},
                                     {"type": "InternalIP", "address": internal_ip}]}}
    server.kubectl("delete", "node", NODE, "--ignore-not-found")
    server.kubectl("create", "-f", "-", input=json.dumps(node))


@kernel
async def test_primary_serves_node_ports_and_health_checks_on_the_internal_ip_only(
        server: ServerProcess, lab: netlab.Lab) -> None:
    primary, other = lab.node_address(2), lab.node_address(1)
    register_node(server, primary)
    async with running(server, lab, node_name=NODE, nodeport_addresses=("primary",)) as proxy:
        assert proxy.config.nodeport_addresses == (f"{primary}/32",)
        apply(server, web_service("prim", type="LoadBalancer", externalTrafficPolicy="Local"),
              slice_of(lab, "prim", (1, True, NODE)))
        await settle(proxy)
        port = node_port(server, "prim")
        assert lab.answers(f"http://{primary}:{port}/", 3, netns=lab.outside) == ["ep1"] * 3
        for address in (other, "10.251.0.1"):  # the node's other addresses
            ok, error, _ = lab.get(f"http://{address}:{port}/", netns=lab.outside)
            assert not ok and "refused" in error, (address, error)
        health = int(server.kubectl("get", "service", "prim", "-o", "jsonpath={.spec.healthCheckNodePort}").stdout)
        ok, body, _ = await asyncio.to_thread(lab.get, f"http://{primary}:{health}/", lab.outside)
        assert ok and json.loads(body)["localEndpoints"] == 1, body
        for address in (other, "10.251.0.1"):  # kube-proxy listens on the node-port addresses only
            ok, error, _ = await asyncio.to_thread(lab.get, f"http://{address}:{health}/", lab.outside)
            assert not ok and "refused" in error, (address, error)
    server.kubectl("delete", "service", "prim")


@kernel
async def test_health_checks_listen_on_the_node_port_ranges(server: ServerProcess, lab: netlab.Lab) -> None:
    async with running(server, lab, node_name=NODE, nodeport_addresses=("10.251.0.0/24",)) as proxy:
        apply(server, web_service("ranged", type="LoadBalancer", externalTrafficPolicy="Local"),
              slice_of(lab, "ranged", (2, True, NODE)))
        await settle(proxy)
        health = int(server.kubectl("get", "service", "ranged", "-o",
                                    "jsonpath={.spec.healthCheckNodePort}").stdout)
        ok, body, _ = await asyncio.to_thread(lab.get, f"http://10.251.0.1:{health}/", lab.outside)
        assert ok and json.loads(body)["service"]["name"] == "ranged", body
        ok, error, _ = await asyncio.to_thread(lab.get, f"http://{lab.node_address(1)}:{health}/", lab.outside)
        assert not ok and "refused" in error, error
    server.kubectl("delete", "service", "ranged")


async def test_primary_without_a_node_falls_back_to_loopback(server: ServerProcess) -> None:
    from pilothouse.client.rest import APIClient
    from pilothouse.components.proxy.nodeaddresses import resolve_primary

    client = APIClient(server.url)
    try:
        config = await resolve_primary(client, ProxyConfig(node_name="never-registered",
                                                           nodeport_addresses=("primary",)), timeout=0.5)
    finally:
        await client.close()
    assert config.nodeport_addresses == ("127.0.0.1/32",)  # kube-proxy's fallback: no NodePort answers
