"""NetworkPolicy enforcement against a real API server and a real kernel: a PolicyController
(informers over HTTP) programs nftables in a network namespace that plays the node, whose "pods"
are namespaces on a bridge (netlab.py), serving ``busybox httpd`` on two ports; Pods, Namespaces
and NetworkPolicies are written with the real kubectl. Traffic is real TCP between the namespaces.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from pilothouse.client.rest import APIClient
from pilothouse.components.netkernel.nft import Nft
from pilothouse.components.netpolicy.controller import PolicyController
from pilothouse.components.netpolicy.rules import FAMILY, full_commands
from tests.conftest import ServerProcess
from tests.netpolicy import netlab
from tests.netpolicy.builders import namespace, pod, policy
from tests.proxy.test_kernel import apply

pytestmark = pytest.mark.skipif(bool(netlab.usable()), reason=netlab.usable() or "")

NODE = "node-a"
WEB, ALT = netlab.PORTS
#: (namespace, name, labels) of lab pods 1..5
PODS = (("np-a", "web", {"app": "web"}), ("np-a", "client", {"app": "client"}),
        ("np-b", "client", {"app": "client"}), ("np-a", "other", {"app": "other"}),
        ("np-b", "sink", {"app": "sink"}))


@pytest.fixture(scope="module")
def lab() -> Iterator[netlab.Lab]:
    lab = netlab.Lab.create(len(PODS))
    try:
        yield lab
    finally:
        lab.destroy()


@pytest.fixture
async def controller(server: ServerProcess, lab: netlab.Lab) -> AsyncIterator[PolicyController]:
    apply(server, namespace("np-a"), namespace("np-b", {"team": "x"}))
    # ServiceAccount admission wants each namespace's "default" account, which the controller
    # manager creates a moment after the namespace
    deadline = time.monotonic() + 15
    while any(server.kubectl("get", "serviceaccount", "default", "-n", ns, check=False).returncode
              for ns in ("np-a", "np-b")):
        assert time.monotonic() < deadline, "no default ServiceAccount"
        await asyncio.sleep(0.1)
    for index, (ns, name, labels) in enumerate(PODS, start=1):
        body = pod(ns, name, lab.address(index), labels, node=NODE)
        status = body.pop("status")
        apply(server, body)
        # the agent would report the address; here the test does, through the status subresource
        server.kubectl("patch", "pod", name, "-n", ns, "--subresource=status", "--type=merge",
                       "-p", json.dumps({"status": {**status, "podIPs": [{"ip": status["podIP"]}]}}))
    client = APIClient(server.url)
    control = PolicyController(client, NODE, netns=lab.node)
    await control.start()
    await asyncio.wait_for(control.synced.wait(), 10)
    yield control
    await control.stop()
    await control.cleanup()
    await client.close()


async def settle(control: PolicyController, since: float) -> None:
    await asyncio.sleep(0.3)  # informer events arrive within milliseconds
    await control.wait_applied(since)


def reach(lab: netlab.Lab, source: int | str, target: int | str, port: int = WEB) -> bool:
    source_ns = lab.node if source == "node" else lab.outside if source == "outside" else lab.pod_netns(int(source))
    address = netlab.OUTSIDE if target == "outside" else lab.address(int(target))
    return lab.reach(source_ns, address, port)


async def test_default_deny_then_allow_rules_open_exactly_what_they_name(
        server: ServerProcess, lab: netlab.Lab, controller: PolicyController) -> None:
    assert reach(lab, 2, 1) and reach(lab, 3, 1, ALT)  # no policy: nothing isolated

    since = time.monotonic()
    apply(server, policy("np-a", "deny"))
    await settle(controller, since)
    assert not reach(lab, 2, 1)  # same bridge, same namespace: bridged traffic is filtered
    assert not reach(lab, 3, 1)  # from another namespace
    assert not reach(lab, "outside", 1)  # routed in from beyond the node
    assert reach(lab, "node", 1)  # the node itself (kubelet probes) always reaches its pods
    assert reach(lab, 1, 3) and reach(lab, 1, "outside")  # egress not isolated; replies pass

    since = time.monotonic()
    apply(server, policy("np-a", "web", {"matchLabels": {"app": "web"}}, ingress=[
        {"from": [{"podSelector": {"matchLabels": {"app": "client"}}}], "ports": [{"port": WEB, "protocol": "TCP"}]},
        {"from": [{"namespaceSelector": {"matchLabels": {"team": "x"}},
                   "podSelector": {"matchLabels": {"app": "client"}}}],
         "ports": [{"port": ALT, "protocol": "TCP"}]}]))
    await settle(controller, since)
    assert reach(lab, 2, 1, WEB)  # a client of the namespace, on the port named
    assert not reach(lab, 2, 1, ALT)  # ...and on no other
    assert not reach(lab, 4, 1, WEB)  # a pod the selector does not name
    assert reach(lab, 3, 1, ALT) and not reach(lab, 3, 1, WEB)  # the other namespace's client: its rule's port
    assert not reach(lab, 1, 2)  # web's own ingress rules open nothing towards client

    since = time.monotonic()
    apply(server, policy("np-b", "client-out", {"matchLabels": {"app": "client"}}, types=["Egress"], egress=[
        {"to": [{"ipBlock": {"cidr": "10.252.0.0/24", "except": [f"{lab.address(1)}/32"]}}]}]))
    await settle(controller, since)
    assert reach(lab, 3, 5)  # inside the block
    assert not reach(lab, 3, 1, ALT)  # the exception, although web's ingress allows it
    assert not reach(lab, 3, "outside")  # outside the block
    assert reach(lab, 5, 3)  # np-b/client's ingress is not isolated: replies to others pass its egress check

    since = time.monotonic()
    server.kubectl("label", "namespace", "np-b", "team-")
    await settle(controller, since)  # a namespace's labels changing takes its pods out of the rule
    assert not reach(lab, 3, 1, ALT)

    # what the incremental syncs left equals a fresh full write of the same ruleset
    nft = Nft(lab.node)
    incremental = await nft.list_table(FAMILY, controller.table)
    assert controller._applied is not None
    await nft.apply(full_commands(controller._applied, controller.table))
    assert _without_handles(await nft.list_table(FAMILY, controller.table)) == _without_handles(incremental)

    since = time.monotonic()
    server.kubectl("delete", "networkpolicy", "--all", "-n", "np-a")
    server.kubectl("delete", "networkpolicy", "--all", "-n", "np-b")
    await settle(controller, since)
    assert reach(lab, 2, 1, ALT) and reach(lab, 3, "outside")
    assert controller.stats.failures == 0


def _without_handles(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for item in items:
        (kind, body), = item.items()
        out.append({kind: {k: v for k, v in body.items() if k != "handle"}})
    return sorted(out, key=lambda x: json.dumps(x, sort_keys=True))
