"""What the kernel of one host should hold to reach the other Nodes' pods: a pure function of the Nodes.

For every other Node with a ``spec.podCIDR`` and an ``InternalIP``:

- **direct** (the Node's address is on a subnet of this host, ``ip route get`` finds no gateway):
  ``podCIDR via InternalIP``: no encapsulation, as flannel's ``DirectRouting`` or host-gw backends;
- **vxlan** otherwise: as flannel's vxlan backend, one VXLAN device per host (VNI 1) whose address is
  the network address of this host's own range (``/32``), and per peer a route ``podCIDR via
  <peer's range network address> dev <vxlan> onlink``, a permanent neighbour entry mapping that address
  to the peer's VTEP MAC, and a forwarding-database entry sending that MAC to the peer's InternalIP.

The VTEP MAC is derived from the InternalIP (:func:`vtep_mac`) instead of being published in a Node
annotation as flannel does: every host computes every peer's MAC alone, and the agent never writes
its Node for it (the Node authorizer would have to let it, and a restart would change it).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pilothouse.machinery.meta import Object

__all__ = ["BACKENDS", "Peer", "Plan", "Route", "peers_of", "plan", "vtep_mac"]


#: auto: direct where the peer is on a shared subnet, VXLAN elsewhere; vxlan: always; direct: only
#: on-link peers (the others are left unreachable, as flannel's host-gw backend would fail)
BACKENDS = ("auto", "vxlan", "direct")


@dataclass(frozen=True)
class Peer:
    name: str
    pod_cidr: str
    address: str


@dataclass(frozen=True, order=True)
class Route:
    dst: str
    via: str
    #: "" for a direct route (the kernel picks the device); the VXLAN device's name otherwise
    dev: str = ""


@dataclass(frozen=True)
class Plan:
    routes: frozenset[Route]
    #: (address, MAC) permanent neighbours on the VXLAN device
    neighbours: frozenset[tuple[str, str]]
    #: (MAC, underlay address) forwarding entries on the VXLAN device
    fdb: frozenset[tuple[str, str]]
    #: the VXLAN device's own address (``<own range network>/32``), "" when no peer needs the overlay
    vxlan_address: str = ""
    #: the VXLAN device's MAC
    vxlan_mac: str = ""


def vtep_mac(address: str) -> str:
    """A locally administered unicast MAC (``0e:50:`` + the four bytes of the IPv4 address)."""
    return "0e:50:" + ":".join(f"{byte:02x}" for byte in ipaddress.IPv4Address(address).packed)


def _internal_ip(node: Object) -> str:
    for entry in (node.get("status") or {}).get("addresses") or ():
        if entry.get("type") == "InternalIP" and ":" not in str(entry.get("address", "")):
            return str(entry["address"])
    return ""


def peers_of(nodes: Iterable[Object]) -> list[Peer]:
    """The Nodes with an IPv4 pod range and InternalIP, sorted by name."""
    out = []
    for node in nodes:
        spec = node.get("spec") or {}
        cidrs = spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else [])
        cidr = next((c for c in cidrs if ":" not in c), "")
        address = _internal_ip(node)
        if cidr and address:
            out.append(Peer(node["metadata"]["name"], cidr, address))
    return sorted(out, key=lambda peer: peer.name)


def plan(own: Peer, peers: Iterable[Peer], on_link: Callable[[str], bool], *, backend: str = "auto",
         device: str = "pilothouse.1") -> Plan:
    """``own``'s routes to ``peers`` (``own`` itself and peers overlapping its range are skipped)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend {backend!r}: choose from {BACKENDS}")
    own_range = ipaddress.ip_network(own.pod_cidr, strict=False)
    routes: set[Route] = set()
    neighbours: set[tuple[str, str]] = set()
    fdb: set[tuple[str, str]] = set()
    for peer in peers:
        if peer.name == own.name or peer.address == own.address:
            continue
        network = ipaddress.ip_network(peer.pod_cidr, strict=False)
        if network.overlaps(own_range):
            continue  # a misconfiguration (a stale range): never route our own pods away
        direct = backend == "direct" or (backend == "auto" and on_link(peer.address))
        if direct:
            if on_link(peer.address):
                routes.add(Route(str(network), peer.address))
            continue
        vtep = str(network.network_address)
        mac = vtep_mac(peer.address)
        routes.add(Route(str(network), vtep, device))
        neighbours.add((vtep, mac))
        fdb.add((mac, peer.address))
    overlay = bool(neighbours)
    return Plan(frozenset(routes), frozenset(neighbours), frozenset(fdb),
                f"{own_range.network_address}/32" if overlay else "", vtep_mac(own.address) if overlay else "")
