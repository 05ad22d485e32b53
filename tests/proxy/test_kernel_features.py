"""The proxy's later features against a real API server and a real kernel (the lab of
tests/proxy/netlab.py): ``--nodeport-addresses``, ``loadBalancerSourceRanges``, health-check node
ports and the periodic full resync."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from pilothouse.client.rest import APIClient
from pilothouse.components.netkernel.nft import Nft
from pilothouse.components.proxy.proxier import Proxier
from pilothouse.components.proxy.rules import FAMILY, ProxyConfig
from tests.conftest import ServerProcess
from tests.proxy import netlab
from tests.proxy.test_kernel import NODE, apply, node_port, settle, slice_of, web_service

pytestmark = pytest.mark.skipif(bool(netlab.usable()), reason=netlab.usable() or "")

BALANCER = "203.0.113.10"


@pytest.fixture(scope="module")
def lab() -> Iterator[netlab.Lab]:
    with netlab.Lab.serving(3) as lab:
        yield lab


@asynccontextmanager
async def running(server: ServerProcess, lab: netlab.Lab, **options: Any) -> AsyncIterator[Proxier]:
    config = ProxyConfig(**{"node_name": NODE, "cluster_cidr": netlab.POD_RANGE, "table": "features", **options})
    client = APIClient(server.url)
    proxy = Proxier(client, config, netns=lab.node)
    await proxy.start()
    try:
        await asyncio.wait_for(proxy.synced.wait(), 10)
        yield proxy
    finally:
        await proxy.stop()
        await proxy.cleanup()
        await client.close()


def set_balancer(server: ServerProcess, name: str, ip: str) -> None:
    server.kubectl("patch", "service", name, "--subresource=status", "--type=merge",
                   "-p", json.dumps({"status": {"loadBalancer": {"ingress": [{"ip": ip}]}}}))


async def test_nodeport_addresses_limit_where_node_ports_answer(server: ServerProcess, lab: netlab.Lab) -> None:
    async with running(server, lab, nodeport_addresses=("10.250.1.0/24",)) as proxy:
        apply(server, web_service("npa", type="NodePort"), slice_of(lab, "npa", (1, True, NODE)))
        await settle(proxy)
        port = node_port(server, "npa")
        assert set(lab.answers(f"http://{lab.node_address(1)}:{port}/", 4, netns=lab.outside)) == {"ep1"}
        for address in (lab.node_address(2), "10.251.0.1"):  # node addresses outside the range
            ok, error, _ = lab.get(f"http://{address}:{port}/", netns=lab.outside)
            assert not ok and "refused" in error, (address, error)


async def test_load_balancer_source_ranges(server: ServerProcess, lab: netlab.Lab) -> None:
    async with running(server, lab) as proxy:
        apply(server, web_service("guarded", type="LoadBalancer", loadBalancerSourceRanges=["10.251.0.0/24"]),
              slice_of(lab, "guarded", (1, True, NODE)))
        set_balancer(server, "guarded", BALANCER)
        await settle(proxy)
        url = f"http://{BALANCER}/"
        assert lab.answers(url, 3, netns=lab.outside) == ["ep1"] * 3  # a source in the ranges
        ok, error, _ = lab.get(url, netns=lab.endpoints[1], timeout=1)  # 10.250.2.2: dropped
        assert not ok and "timed out" in error, error
        server.kubectl("patch", "service", "guarded", "--type=merge",
                       "-p", json.dumps({"spec": {"loadBalancerSourceRanges": ["10.250.2.0/24"]}}))
        await settle(proxy)
        assert lab.answers(url, 3, netns=lab.endpoints[1]) == ["ep1"] * 3
        ok, error, _ = lab.get(url, netns=lab.outside, timeout=1)
        assert not ok and "timed out" in error, error
        server.kubectl("patch", "service", "guarded", "--type=json",
                       "-p", json.dumps([{"op": "remove", "path": "/spec/loadBalancerSourceRanges"}]))
        await settle(proxy)
        assert lab.answers(url, 2, netns=lab.outside) == ["ep1"] * 2


async def test_health_check_node_port(server: ServerProcess, lab: netlab.Lab) -> None:
    async with running(server, lab) as proxy:
        apply(server, web_service("hc", type="LoadBalancer", externalTrafficPolicy="Local"),
              slice_of(lab, "hc", (1, True, NODE), (2, True, NODE), (3, True, "node-b")))
        await settle(proxy)
        port = int(server.kubectl("get", "service", "hc", "-o", "jsonpath={.spec.healthCheckNodePort}").stdout)
        assert 30000 <= port <= 32767
        # the health server runs in this event loop: the client must not block it
        ok, body, _ = await asyncio.to_thread(lab.get, f"http://10.251.0.1:{port}/", lab.outside)
        assert ok and json.loads(body) == {"service": {"namespace": "default", "name": "hc"}, "localEndpoints": 2,
                                           "serviceProxyHealthy": True}, body
        proxy.healthy = False  # as after a failed sync: kube-proxy's healthz fails every health check
        ok, error, _ = await asyncio.to_thread(lab.get, f"http://10.251.0.1:{port}/", lab.outside)
        assert not ok and "Service Unavailable" in error, error
        proxy.healthy = True
        apply(server, slice_of(lab, "hc", (3, True, "node-b")))  # no endpoint left on this node
        await settle(proxy)
        ok, error, _ = await asyncio.to_thread(lab.get, f"http://10.251.0.1:{port}/", lab.outside)
        assert not ok and "Service Unavailable" in error, error
        server.kubectl("patch", "service", "hc", "--type=merge", "-p", '{"spec":{"externalTrafficPolicy":"Cluster"}}')
        await settle(proxy)
        ok, error, _ = await asyncio.to_thread(lab.get, f"http://10.251.0.1:{port}/", lab.outside)
        assert not ok and "refused" in error, error  # the listener is closed
        assert not proxy.health.ports


async def test_periodic_full_resync_repairs_the_table(server: ServerProcess, lab: netlab.Lab) -> None:
    async with running(server, lab, sync_period=2.0) as proxy:
        apply(server, web_service("repaired", type="NodePort"), slice_of(lab, "repaired", (2, True, NODE)))
        await settle(proxy)
        url = f"http://{lab.node_address(1)}:{node_port(server, 'repaired')}/"
        assert lab.answers(url, 2, netns=lab.outside) == ["ep2"] * 2

        async def next_full_sync() -> None:
            full_syncs, started = proxy.stats.full_syncs, time.monotonic()
            deadline = started + 10
            while proxy.stats.full_syncs == full_syncs:
                assert time.monotonic() < deadline, "no full resync"
                await asyncio.sleep(0.02)
            await proxy.wait_applied(started)  # that full sync has finished

        await next_full_sync()  # just after one: the next is two seconds away
        await Nft(lab.node).delete_table(FAMILY, "features")  # behind the proxy's back
        assert (await asyncio.to_thread(lab.get, url, lab.outside, 1))[0] is False
        await next_full_sync()
        assert lab.answers(url, 2, netns=lab.outside) == ["ep2"] * 2
