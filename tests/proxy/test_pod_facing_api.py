"""The ``kubernetes`` Service's endpoint under ``pilothouse up``'s defaults (a loopback bind): the API
server also serves on the pod bridge's gateway, bound before the agent creates the bridge, and
advertises it, but only with authentication and RBAC on (see pilothouse/cli/podfacing.py)."""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl
import urllib.request
from pathlib import Path

import pytest

from pilothouse.apiserver.authchain import AuthOptions
from pilothouse.apiserver.serve import ServerConfig, freebind_socket, start_server
from pilothouse.cli.podfacing import pod_facing_address
from pilothouse.client.kubeconfig import load_kubeconfig
from pilothouse.client.rest import APIClient, resource
from tests.conftest import free_port

#: TEST-NET-1: never an address of this machine
ABSENT = "192.0.2.123"


def test_which_address() -> None:
    secure = {"secure": True, "authorization_modes": "Node,RBAC"}
    assert pod_facing_address("127.0.0.1", "10.244.0.0/16", **secure) == "10.244.0.1"
    assert pod_facing_address("127.0.0.1", "10.42.3.0/24", **secure) == "10.42.3.1"
    # pods reach the bind address already, or the operator chose the endpoint
    assert pod_facing_address("10.0.0.5", "10.244.0.0/16", **secure) is None
    assert pod_facing_address("0.0.0.0", "10.244.0.0/16", **secure) is None
    assert pod_facing_address("127.0.0.1", "10.244.0.0/16", advertise_address="10.0.0.5", **secure) is None
    # an open API server is never offered to pods: everyone on the bridge would be admin
    assert pod_facing_address("127.0.0.1", "10.244.0.0/16", secure=False, authorization_modes="Node,RBAC") is None
    for modes in ("AlwaysAllow", "", "RBAC,AlwaysAllow"):
        assert pod_facing_address("127.0.0.1", "10.244.0.0/16", secure=True, authorization_modes=modes) is None
    # a range the node gets later (auto), or nothing to take a gateway from
    assert pod_facing_address("127.0.0.1", "auto", **secure) is None
    assert pod_facing_address("127.0.0.1", "fd00::/64", **secure) is None


def test_an_absent_address_binds_only_with_freebind() -> None:
    with socket.socket() as plain, pytest.raises(OSError) as refused:
        plain.bind((ABSENT, 0))
    assert refused.value.errno == errno.EADDRNOTAVAIL
    freebind_socket(ABSENT, 0).close()


def _get(url: str, ca: bytes) -> int:
    context = ssl.create_default_context(cadata=ca.decode())
    context.check_hostname = False  # 127.0.0.2 is no name of the certificate; the CA is what is checked
    with urllib.request.urlopen(url, context=context, timeout=5) as response:
        return int(response.status)


async def test_served_and_advertised_on_the_extra_address(tmp_path: Path) -> None:
    config = ServerConfig(tmp_path / "server", port=free_port(), secure=True,
                          auth=AuthOptions(authorization_mode="Node,RBAC"))
    address = pod_facing_address(config.bind_address, "127.0.0.0/24", secure=True,
                                 authorization_modes=config.auth.authorization_mode)
    # 127.0.0.1 plays the gateway here (the loopback range stands in for the bridge that is not there)
    assert address == "127.0.0.1"
    config.advertise_address = "10.244.0.1"
    config.extra_bind_addresses = ("127.0.0.2", ABSENT)
    running = await start_server(config)
    try:
        assert running.pki is not None
        ca = running.pki.ca_bundle()
        # the same server, over HTTPS, on the extra address (anonymous: /readyz is public info)
        assert await asyncio.to_thread(_get, f"https://127.0.0.2:{running.port}/readyz", ca) == 200
        async with APIClient(load_kubeconfig(config.kubeconfig_path)) as admin:
            endpoints = await admin.get(resource("", "v1", "endpoints"), "kubernetes", "default")
        assert [a["ip"] for a in endpoints["subsets"][0]["addresses"]] == ["10.244.0.1"]
        assert endpoints["subsets"][0]["ports"][0]["port"] == running.port
    finally:
        await running.stop()
