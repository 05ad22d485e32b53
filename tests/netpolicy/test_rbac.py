"""The policy controller under RBAC: as ``system:pilothouse-network-policy`` (its bootstrap role, the
kubeconfig ``pilothouse up`` gives the agent's embedded controller), over HTTPS with a client
certificate from ``pilothouse kubeconfig``, it lists and watches what it needs and programs its node;
a node's own identity may not list namespaces, so it enforces nothing and says why."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from pilothouse.client.kubeconfig import client_config
from pilothouse.client.rest import APIClient
from pilothouse.components.netkernel.nft import Nft
from pilothouse.components.netpolicy.controller import PolicyController
from pilothouse.components.netpolicy.rules import FAMILY
from pilothouse.machinery.rbac.bootstrappolicy import NETWORK_POLICY_USER
from tests.conftest import ServerProcess
from tests.netpolicy import netlab
from tests.proxy.test_rbac import kubeconfig_for, secure_server

__all__ = ["secure_server"]  # the proxy tests' RBAC server fixture, shared

pytestmark = pytest.mark.skipif(bool(netlab.usable()), reason=netlab.usable() or "")


async def run_as(server: ServerProcess, user: str, path: Path, netns: str) -> PolicyController:
    client = APIClient(client_config(None, str(kubeconfig_for(server, user, path))))
    control = PolicyController(client, "n1", netns=netns, sync_warning_after=1.0)
    await control.start()
    return control


async def test_controller_identity_syncs_and_a_node_identity_does_not(
        secure_server: ServerProcess, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    lab = netlab.Lab.create(0)
    controls: list[PolicyController] = []
    try:
        control = await run_as(secure_server, NETWORK_POLICY_USER, tmp_path / "netpol.conf", lab.node)
        controls.append(control)
        await asyncio.wait_for(control.synced.wait(), 15)
        assert [item for item in await Nft(lab.node).list_table(FAMILY, control.table) if "map" in item]
        await control.stop()
        await control.cleanup()

        caplog.set_level(logging.WARNING, "pilothouse.netpolicy")
        node = await run_as(secure_server, "system:node:n1", tmp_path / "node.conf", lab.node)
        controls.append(node)
        await asyncio.sleep(2.5)
        assert not node.synced.is_set()
        assert "network policy cannot list namespaces" in caplog.text
    finally:
        for item in controls:
            await item.stop()
            await item.client.close()
        lab.destroy()
