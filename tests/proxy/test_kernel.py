"""The proxy against a real API server and a real kernel: a Proxier (informers over HTTP) programs
nftables in a network namespace that plays the node, and ``busybox wget`` sends real traffic to
``busybox httpd`` endpoints in namespaces of their own (see netlab.py). Services and their
EndpointSlices are written with the real kubectl, as a person writes a Service without a selector.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from pilothouse.client.rest import APIClient
from pilothouse.components.netkernel.conntrack import delete_entries
from pilothouse.components.netkernel.nft import Nft
from pilothouse.components.proxy.proxier import Proxier
from pilothouse.components.proxy.rules import FAMILY, ProxyConfig, compute
from pilothouse.components.proxy.sync import plan
from tests.conftest import ServerProcess
from tests.proxy import netlab
from tests.proxy.builders import endpoint, endpoint_slice, service

pytestmark = pytest.mark.skipif(bool(netlab.usable()), reason=netlab.usable() or "")

NODE = "node-a"
PORT = netlab.ENDPOINT_PORT


@pytest.fixture(scope="module")
def lab() -> Iterator[netlab.Lab]:
    with netlab.Lab.serving(3) as lab:
        yield lab


@pytest.fixture
async def proxier(server: ServerProcess, lab: netlab.Lab) -> AsyncIterator[Proxier]:
    config = ProxyConfig(node_name=NODE, cluster_cidr=netlab.POD_RANGE, service_cidrs=("10.96.0.0/12",))
    client = APIClient(server.url)
    proxy = Proxier(client, config, netns=lab.node)
    await proxy.start()
    await asyncio.wait_for(proxy.synced.wait(), 10)
    yield proxy
    await proxy.stop()
    await proxy.cleanup()
    await client.close()


def apply(server: ServerProcess, *objects: dict[str, Any]) -> None:
    server.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)}))


def cluster_ip(server: ServerProcess, name: str) -> str:
    return str(server.kubectl("get", "service", name, "-o", "jsonpath={.spec.clusterIP}").stdout)


def node_port(server: ServerProcess, name: str) -> int:
    return int(server.kubectl("get", "service", name, "-o", "jsonpath={.spec.ports[0].nodePort}").stdout)


async def settle(proxy: Proxier) -> None:
    """Until the proxy has synced what the server holds now (informer events arrive within ms)."""
    await asyncio.sleep(0.3)
    await proxy.wait_applied(time.monotonic() - 0.3 if proxy.stats.last_applied else 0.0)


def web_service(name: str, **spec: Any) -> dict[str, Any]:
    svc = service(name, "", ("http", 80, "TCP"), **spec)
    del svc["spec"]["clusterIP"], svc["spec"]["clusterIPs"], svc["metadata"]["resourceVersion"]
    return svc


def slice_of(lab: netlab.Lab, name: str, *members: tuple[int, bool, str]) -> dict[str, Any]:
    return endpoint_slice(name, [endpoint(lab.address(i), node=node, ready=ready) for i, ready, node in members],
                          ("http", PORT, "TCP"))


async def test_cluster_ip_spreads_over_ready_endpoints_and_follows_changes(
        server: ServerProcess, lab: netlab.Lab, proxier: Proxier) -> None:
    apply(server, web_service("web"), slice_of(lab, "web", (1, True, NODE), (2, True, "node-b"), (3, False, NODE)))
    await settle(proxier)
    url = f"http://{cluster_ip(server, 'web')}/"
    assert set(lab.answers(url, 30)) == {"ep1", "ep2"}  # random over both ready endpoints, never the unready one

    apply(server, slice_of(lab, "web", (2, True, "node-b"), (3, True, NODE)))
    await settle(proxier)
    assert proxier.stats.last_changed == 1  # only this Service's rules were rewritten
    assert set(lab.answers(url, 30)) == {"ep2", "ep3"}
    # an endpoint reaching the Service that may pick itself (hairpin) gets its answers: masqueraded
    assert set(lab.answers(url, 20, netns=lab.endpoints[2])) == {"ep2", "ep3"}


async def test_rejections(server: ServerProcess, lab: netlab.Lab, proxier: Proxier) -> None:
    apply(server, web_service("empty"), web_service("one"), slice_of(lab, "one", (1, True, NODE)))
    await settle(proxier)
    empty, one = cluster_ip(server, "empty"), cluster_ip(server, "one")
    for url in (f"http://{empty}/",  # a Service without endpoints
                f"http://{one}:81/",  # a port the Service does not have
                "http://10.111.254.254/"):  # an address of the service range that no Service holds
        ok, error, seconds = lab.get(url)
        # rejected on the node, at once: not sent down the default route to time out
        assert not ok and "refused" in error and seconds < 1.5, (url, error, seconds)
    assert lab.get(f"http://{one}/")[1] == "ep1"


async def test_node_port_on_every_node_address(server: ServerProcess, lab: netlab.Lab, proxier: Proxier) -> None:
    apply(server, web_service("np", type="NodePort"), slice_of(lab, "np", (1, True, NODE), (2, True, "node-b")))
    await settle(proxier)
    port = node_port(server, "np")
    client = lab.outside
    for address in (lab.node_address(1), lab.node_address(2), lab.node_address(3)):
        assert set(lab.answers(f"http://{address}:{port}/", 16, netns=client)) == {"ep1", "ep2"}


async def test_external_traffic_policy_local_keeps_traffic_on_the_node(
        server: ServerProcess, lab: netlab.Lab, proxier: Proxier) -> None:
    apply(server, web_service("local", type="NodePort", externalTrafficPolicy="Local"),
          slice_of(lab, "local", (1, True, NODE), (2, True, "node-b")))
    await settle(proxier)
    port = node_port(server, "local")
    # a client outside the cluster reaches only this node's endpoint
    assert set(lab.answers(f"http://{lab.node_address(3)}:{port}/", 12, netns=lab.outside)) == {"ep1"}
    # pods are not subject to the policy (as if they went out to a load balancer and back)
    assert set(lab.answers(f"http://{lab.node_address(3)}:{port}/", 16, netns=lab.endpoints[2])) == {"ep1", "ep2"}


async def test_session_affinity_keeps_a_client_on_one_endpoint(
        server: ServerProcess, lab: netlab.Lab, proxier: Proxier) -> None:
    apply(server, web_service("sticky", sessionAffinity="ClientIP"),
          slice_of(lab, "sticky", (1, True, NODE), (2, True, NODE), (3, True, NODE)))
    await settle(proxier)
    answers = lab.answers(f"http://{cluster_ip(server, 'sticky')}/", 15)
    assert len(set(answers)) == 1 and answers[0].startswith("ep"), answers


def _contents(items: list[dict[str, Any]]) -> tuple[dict[str, list[Any]], dict[str, Any]]:
    """(chain → its rules in order, set or map name → its definition and sorted elements) of a
    listed table, without handles and table names."""
    chains: dict[str, list[Any]] = {}
    named: dict[str, Any] = {}
    for item in items:
        ((kind, body),) = item.items()
        if kind == "chain":
            chains.setdefault(body["name"], [])
        elif kind == "rule":
            chains.setdefault(body["chain"], []).append(body["expr"])
        elif kind in ("set", "map"):
            body = {k: v for k, v in body.items() if k not in ("handle", "table")}
            body["elem"] = sorted(json.dumps(e, sort_keys=True) for e in body.get("elem", []))
            named[body["name"]] = body
    return chains, named


async def test_incremental_syncs_leave_what_a_full_sync_writes(lab: netlab.Lab) -> None:
    """Many small steps (endpoints coming and going, Services added and removed, policies flipped)
    applied incrementally end with the table a fresh full sync writes."""
    nft = Nft(lab.node)
    incremental, fresh = (ProxyConfig(node_name=NODE, table=t, cluster_cidr=netlab.POD_RANGE)
                          for t in ("inc", "full"))
    dns = ("dns", 53, "UDP")
    services = {f"s{i}": service(f"s{i}", f"10.96.2.{i}", ("http", 80, "TCP"), dns, type="NodePort",
                                 node_ports=(30100 + i,)) for i in range(6)}
    slices = {n: endpoint_slice(n, [endpoint("10.250.1.2"), endpoint("10.250.2.2", node="node-b")],
                                ("http", PORT, "TCP"), ("dns", 53, "UDP")) for n in services}
    applied = None
    steps: list[Any] = [
        lambda: slices["s1"]["endpoints"].pop(),
        lambda: services.pop("s2"),
        lambda: services["s3"]["spec"].update(sessionAffinity="ClientIP"),
        lambda: services["s4"]["spec"].update(externalTrafficPolicy="Local"),
        lambda: slices["s5"]["endpoints"].clear(),
        lambda: services.__setitem__("s9", service("s9", "10.96.2.9", ("http", 80, "TCP"))),
        lambda: slices["s5"]["endpoints"].append(endpoint("10.250.3.2")),
        lambda: services["s3"]["spec"].update(sessionAffinity="None"),
    ]
    try:
        for step in [lambda: None, *steps]:
            step()
            desired = compute(services.values(), slices.values(), incremental)
            await nft.apply(plan(incremental, applied, desired).commands)
            applied = desired
        await nft.apply(plan(fresh, None, compute(services.values(), slices.values(), fresh)).commands)
        inc_chains, inc_named = _contents(await nft.list_table(FAMILY, "inc"))
        full_chains, full_named = _contents(await nft.list_table(FAMILY, "full"))
        # what no Service uses any more is flushed, and deleted by a later sync (see sync.py)
        stale = inc_chains.keys() - full_chains.keys()
        assert stale and all(not inc_chains[name] for name in stale)
        assert {name: inc_chains[name] for name in full_chains} == full_chains
        stale_sets = inc_named.keys() - full_named.keys()
        assert stale_sets and all(name.startswith("affinity-") for name in stale_sets)  # s3 dropped affinity
        assert {name: inc_named[name] for name in full_named} == full_named
    finally:
        await nft.delete_table(FAMILY, "inc")
        await nft.delete_table(FAMILY, "full")


_UDP_SERVER = """
import socket, sys
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("0.0.0.0", 5353))
while True:
    data, peer = sock.recvfrom(512)
    sock.sendto(sys.argv[1].encode(), peer)
"""
_UDP_CLIENT = """
import socket, sys
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("0.0.0.0", 40053))  # the same source port every time: the same conntrack entry
sock.settimeout(1)
sock.sendto(b"q", (sys.argv[1], 53))
try:
    print(sock.recvfrom(512)[0].decode())
except socket.timeout:
    print("timeout")
"""


async def test_removed_udp_endpoint_loses_its_conntrack_entries(lab: netlab.Lab) -> None:
    """A UDP client that keeps its source port keeps its NAT entry: after its endpoint is removed, it
    reaches the new one only because the proxy deletes the entries NATed to the old one."""
    if shutil.which("conntrack") is None:
        pytest.skip("conntrack (conntrack-tools) not installed")
    servers = [subprocess.Popen(["ip", "netns", "exec", lab.endpoints[i - 1], sys.executable, "-c", _UDP_SERVER,
                                 f"ep{i}"]) for i in (1, 2)]
    nft = Nft(lab.node)
    config = ProxyConfig(node_name=NODE, table="udp", cluster_cidr=netlab.POD_RANGE)
    svc = service("dns", "10.96.3.10", ("dns", 53, "UDP"))

    def ask() -> str:
        return subprocess.run(["ip", "netns", "exec", lab.node, sys.executable, "-c", _UDP_CLIENT, "10.96.3.10"],
                              capture_output=True, text=True, timeout=10).stdout.strip()

    try:
        first = compute([svc], [endpoint_slice("dns", [endpoint(lab.address(1))], ("dns", 5353, "UDP"))], config)
        await nft.apply(plan(config, None, first).commands)
        deadline = time.monotonic() + 5
        while (answer := ask()) != "ep1" and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert answer == "ep1"
        second = compute([svc], [endpoint_slice("dns", [endpoint(lab.address(2))], ("dns", 5353, "UDP"))], config)
        step = plan(config, first, second)
        await nft.apply(step.commands)
        assert ask() == "ep1"  # the client's entry still points at the endpoint that is gone
        assert await delete_entries(step.conntrack, lab.node) == 1
        assert ask() == "ep2"
    finally:
        for server in servers:
            server.terminate()
            server.wait(5)
        await nft.delete_table(FAMILY, "udp")
