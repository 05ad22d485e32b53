"""The pod routes' plan and node IPAM's range set as pure functions (no kernel, no server)."""

from __future__ import annotations

from typing import Any

import pytest

from pilothouse.components.controllers.nodeipam import CIDRSet
from pilothouse.components.podnetwork.plan import Peer, Route, peers_of, plan, vtep_mac


def _node(name: str, cidr: str | None, address: str | None) -> dict[str, Any]:
    node: dict[str, Any] = {"metadata": {"name": name}, "spec": {}, "status": {}}
    if cidr:
        node["spec"] = {"podCIDR": cidr, "podCIDRs": [cidr]}
    if address:
        node["status"]["addresses"] = [{"type": "Hostname", "address": name},
                                       {"type": "InternalIP", "address": address}]
    return node


A = Peer("a", "10.244.1.0/24", "192.168.1.1")
B = Peer("b", "10.244.2.0/24", "192.168.1.2")
C = Peer("c", "10.244.3.0/24", "172.16.0.3")


def test_peers_need_a_range_and_an_internal_ip() -> None:
    nodes = [_node("b", "10.244.2.0/24", "192.168.1.2"), _node("x", None, "192.168.1.9"),
             _node("y", "10.244.9.0/24", None), _node("a", "10.244.1.0/24", "192.168.1.1")]
    assert peers_of(nodes) == [A, B]


def test_auto_routes_direct_on_the_subnet_and_vxlan_beyond() -> None:
    result = plan(A, [A, B, C], lambda address: address.startswith("192.168.1."))
    assert result.routes == {Route("10.244.2.0/24", "192.168.1.2"),
                             Route("10.244.3.0/24", "10.244.3.0", "pilothouse.1")}
    assert result.neighbours == {("10.244.3.0", vtep_mac("172.16.0.3"))}
    assert result.fdb == {(vtep_mac("172.16.0.3"), "172.16.0.3")}
    assert result.vxlan_address == "10.244.1.0/32" and result.vxlan_mac == "0e:50:c0:a8:01:01"


def test_vxlan_backend_overlays_every_peer_and_direct_only_reaches_the_subnet() -> None:
    overlay = plan(A, [B, C], lambda _: True, backend="vxlan")
    assert {route.dev for route in overlay.routes} == {"pilothouse.1"} and len(overlay.fdb) == 2
    direct = plan(A, [B, C], lambda address: address == B.address, backend="direct")
    assert direct.routes == {Route("10.244.2.0/24", "192.168.1.2")} and not direct.vxlan_address


def test_no_overlay_without_far_peers_and_never_a_route_over_our_own_range() -> None:
    clash = Peer("stale", "10.244.1.0/25", "192.168.1.7")
    result = plan(A, [B, clash], lambda _: True)
    assert result.routes == {Route("10.244.2.0/24", "192.168.1.2")}
    assert not result.vxlan_address and not result.neighbours
    with pytest.raises(ValueError):
        plan(A, [B], lambda _: True, backend="host-gw")


def test_cidr_set_round_robin_and_coverage() -> None:
    ranges = CIDRSet("10.244.0.0/16", 24)
    assert ranges.size == 256
    assert ranges.next_free(set()) == "10.244.0.0/24"
    # a wider range held by hand covers several subnets; round robin goes on after the last one given
    assert ranges.next_free({"10.244.2.0/23"}) == "10.244.1.0/24"
    assert ranges.next_free({"10.244.2.0/23"}) == "10.244.4.0/24"
    assert ranges.next_free({"10.0.0.0/8"}) is None
    with pytest.raises(ValueError):
        CIDRSet("10.244.0.0/16", 12)
    with pytest.raises(ValueError):
        CIDRSet("10.0.0.0/8", 28)  # 2^20 ranges: more than upstream allows
