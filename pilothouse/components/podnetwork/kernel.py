"""Reads and programs one host's kernel for a :class:`~.plan.Plan`: the VXLAN device, its forwarding
and neighbour entries, and the routes to the other Nodes' ranges, each diffed against what is there.

The routes are added with their own routing protocol number (:data:`PROTO`), so a sync finds the ones
it made (a Node deleted while the agent was down included) and never touches anybody else's.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from pilothouse.components.netkernel.iproute import IPRouteError, batch, show
from pilothouse.components.podnetwork.plan import Plan, Route

__all__ = ["PROTO", "VXLAN_PORT", "Kernel", "overlay_mtu"]

log = logging.getLogger("pilothouse.podnetwork")

#: rtnetlink protocol of our routes (values above 4 are free for routing daemons; bird uses 12, 186-188
#: are taken by other daemons in rt_protos): ours are ``proto 199``
PROTO = "199"
#: the Linux kernel's own VXLAN port (flannel's default too; IANA's 4789 is often Open vSwitch's)
VXLAN_PORT = 8472
#: a VXLAN header with outer Ethernet, IPv4 and UDP headers
_OVERHEAD = 50


async def overlay_mtu(local: str) -> int:
    """The MTU inside the overlay: that of the device holding ``local`` (this host's InternalIP) less
    the VXLAN encapsulation (flannel gives its pods the same, so no packet needs fragmenting)."""
    for link in await show("ip", "addr", "show"):
        if any(entry.get("local") == local for entry in link.get("addr_info") or ()):
            return int(link.get("mtu", 1500)) - _OVERHEAD
    return 1500 - _OVERHEAD


class Kernel:
    def __init__(self, device: str = "pilothouse.1", vni: int = 1, port: int = VXLAN_PORT) -> None:
        self.device = device
        self.vni = vni
        self.port = port

    async def on_link(self, address: str) -> bool:
        """Whether ``address`` is reached without a gateway (a shared subnet)."""
        try:
            answer = await show("ip", "route", "get", address)
        except IPRouteError:
            return False
        return bool(answer) and "gateway" not in answer[0] and answer[0].get("dev") != self.device

    async def apply(self, plan: Plan, local: str) -> None:
        """Make the kernel hold ``plan``; ``local`` is this host's InternalIP (the VXLAN source)."""
        with contextlib.suppress(OSError):  # a host that forwards already, or a read-only /proc
            Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")
        exists = await self._exists()
        if plan.vxlan_address:
            await self._ensure_device(plan, local, exists)
            await self._sync_fdb(plan)
            await self._sync_neighbours(plan)
        await self._sync_routes(plan)
        if not plan.vxlan_address and exists:
            await batch("ip", [f"link del {self.device}"])

    async def _exists(self) -> bool:
        # not /sys/class/net: /sys is the namespace's that mounted it, and a host that is a network
        # namespace entered with nsenter (the tests', topology's) still sees the root namespace's there
        try:
            return bool(await show("ip", "link", "show", "dev", self.device))
        except IPRouteError:
            return False

    async def _ensure_device(self, plan: Plan, local: str, exists: bool) -> None:
        if exists:
            details = await show("ip", "-d", "link", "show", self.device)
            info = (details[0].get("linkinfo") or {}).get("info_data") or {} if details else {}
            if info.get("local") != local or details[0].get("address") != plan.vxlan_mac:
                await batch("ip", [f"link del {self.device}"])  # the host's address changed
                exists = False
        lines = [] if exists else [
            f"link add {self.device} address {plan.vxlan_mac} mtu {await overlay_mtu(local)} "
            f"type vxlan id {self.vni} local {local} dstport {self.port} nolearning"]
        await batch("ip", [*lines, f"addr replace {plan.vxlan_address} dev {self.device}",
                           f"link set {self.device} up"])


    async def _sync_fdb(self, plan: Plan) -> None:
        current = {(str(entry.get("mac")), str(entry.get("dst"))) for entry in
                   await show("bridge", "fdb", "show", "dev", self.device) if entry.get("dst")}
        await batch("bridge", [f"fdb del {mac} dev {self.device} dst {dst}" for mac, dst in current - plan.fdb]
                    + [f"fdb replace {mac} dev {self.device} dst {dst} self permanent"
                       for mac, dst in plan.fdb - current])

    async def _sync_neighbours(self, plan: Plan) -> None:
        current = {(str(entry.get("dst")), str(entry.get("lladdr"))) for entry in
                   await show("ip", "neigh", "show", "dev", self.device, "nud", "permanent")}
        await batch("ip", [f"neigh del {ip} dev {self.device}" for ip, _ in current - plan.neighbours]
                    + [f"neigh replace {ip} lladdr {mac} dev {self.device} nud permanent"
                       for ip, mac in plan.neighbours - current])

    async def _sync_routes(self, plan: Plan) -> None:
        current: set[Route] = set()
        for entry in await show("ip", "route", "show", "proto", PROTO):
            dev = str(entry.get("dev", ""))
            current.add(Route(str(entry.get("dst")), str(entry.get("gateway", "")),
                              dev if dev == self.device else ""))
        stale = current - plan.routes
        await batch("ip", [f"route del {route.dst} proto {PROTO}" for route in sorted(stale)
                           if route.dst not in {wanted.dst for wanted in plan.routes}])
        await batch("ip", [f"route replace {route.dst} via {route.via}"
                           + (f" dev {route.dev} onlink" if route.dev else "") + f" proto {PROTO}"
                           for route in sorted(plan.routes - current)])
        if stale or plan.routes - current:
            log.info("pod routes: %d, %d removed", len(plan.routes), len(stale))
