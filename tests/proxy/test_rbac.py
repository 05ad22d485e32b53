"""The proxy under RBAC: with the identity Kubernetes gives kube-proxy (``system:kube-proxy``, bound to
``system:node-proxier``), over HTTPS with a client certificate from ``pilothouse kubeconfig``, it lists
and watches what it needs and programs its node."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pilothouse.client.kubeconfig import client_config
from pilothouse.client.rest import APIClient
from pilothouse.components.proxy.proxier import Proxier
from pilothouse.components.proxy.rules import ProxyConfig
from tests.conftest import ServerProcess, start_server_process
from tests.proxy import netlab

pytestmark = pytest.mark.skipif(bool(netlab.usable()), reason=netlab.usable() or "")


@pytest.fixture(scope="module")
def secure_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_server_process(tmp_path_factory.mktemp("secure"), secure=True,
                                  extra=("--authorization-mode", "Node,RBAC"))
    yield server
    server.stop()


def kubeconfig_for(server: ServerProcess, user: str, path: Path) -> Path:
    result = subprocess.run([sys.executable, "-m", "pilothouse", "kubeconfig", "--data-dir", str(server.data_dir),
                             "--user", user], capture_output=True, text=True, check=True)
    path.write_text(result.stdout)
    return path


async def test_proxy_as_system_kube_proxy(secure_server: ServerProcess, tmp_path: Path) -> None:
    lab = netlab.Lab.create(0)
    client = APIClient(client_config(None, str(kubeconfig_for(secure_server, "system:kube-proxy",
                                                              tmp_path / "proxy.conf"))))
    proxy = Proxier(client, ProxyConfig(node_name="n1"), netns=lab.node)
    try:
        await proxy.start()
        await asyncio.wait_for(proxy.synced.wait(), 15)
        table = subprocess.run(["ip", "netns", "exec", lab.node, "nft", "list", "map", "ip", "pilothouse",
                                "no-endpoint-services"], capture_output=True, text=True, check=True).stdout
        # the kubernetes Service (its server listens on loopback only: no endpoints) is rejected
        assert "10.96.0.1 . tcp . 443 : goto reject-chain" in table
    finally:
        await proxy.stop()
        await client.close()
        lab.destroy()


async def test_someone_else_cannot_list_endpointslices(secure_server: ServerProcess, tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    """The check above means something: an identity without the role gets 403, never syncs, and the
    proxy says why."""
    client = APIClient(client_config(None, str(kubeconfig_for(secure_server, "nobody", tmp_path / "n.conf"))))
    proxy = Proxier(client, ProxyConfig(node_name="n1"), netns="none-needed", sync_warning_after=0.5)
    try:
        await proxy.start()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(proxy.synced.wait(), 2)
        assert any("cannot list endpointslices" in r.message and "403" in r.message for r in caplog.records)
    finally:
        await proxy.stop()
        await client.close()
