"""Network-namespace "hosts" for the pod network tests, and "pods" on them.

A ``router`` namespace holds a bridge (10.253.0.253/24, the "switch" of hosts A and B) and a second
link to host C's subnet (10.253.3.0/24): A and B share a subnet (direct routes), C is one hop away
(VXLAN). The root namespace joins the bridge as 10.253.0.254 (the API server listens there) with a
route to C's subnet through the router; it forwards nothing. Each pod is a namespace of its own
joined to its host by a veth pair (the host end holds the range's first address, as the agent's
bridge does). Built on the shared lab, tests/netlab.py. Nothing reaches the machine's own network.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field

from tests.netlab import NetnsLab, enter, sh

__all__ = ["ECHO", "FAR_SUBNET", "ROOT_ADDRESS", "HostLab", "enter", "sh"]

ROOT_ADDRESS = "10.253.0.254"
ROUTER_ADDRESS = "10.253.0.253"
FAR_SUBNET = "10.253.3.0/24"
#: echoes the peer's address of every TCP connection, then closes it
ECHO = """
import socket, sys
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("0.0.0.0", int(sys.argv[1])))
server.listen(16)
while True:
    conn, peer = server.accept()
    conn.sendall(peer[0].encode())
    conn.close()
"""
ASK = """
import socket, sys
try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])) as conn:
        print(conn.recv(100).decode())
except OSError as error:
    print("error:", error)
"""


@dataclass
class HostLab(NetnsLab):
    #: host name -> its address
    hosts: dict[str, str] = field(default_factory=dict)
    #: pod name -> (netns, address)
    pods: dict[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def router(self) -> str:
        return f"phr-{self.tag}"

    def create(self) -> HostLab:
        try:
            router = self.netns(self.router, forwarding=True)
            self.bridge(router, "br0", f"{ROUTER_ADDRESS}/24")
            sh("ip", "link", "add", f"phl-{self.tag}", "type", "veth", "peer", "name", "root0", "netns", router)
            self.root_leftovers.append(["link", "del", f"phl-{self.tag}"])
            sh("ip", "-n", router, "link", "set", "root0", "master", "br0", "up")
            sh("ip", "addr", "add", f"{ROOT_ADDRESS}/24", "dev", f"phl-{self.tag}")
            sh("ip", "link", "set", f"phl-{self.tag}", "up")
            sh("ip", "route", "add", FAR_SUBNET, "via", ROUTER_ADDRESS)
            self.root_leftovers.insert(0, ["route", "del", FAR_SUBNET, "via", ROUTER_ADDRESS])
        except BaseException:
            self.destroy()
            raise
        return self

    def add_host(self, name: str, address: str, *, far: bool = False) -> str:
        """A host on the router's bridge, or (``far``) on its own subnet behind the router."""
        netns = self.netns(f"{name}-{self.tag}", forwarding=True)
        if far:
            self.link(self.router, f"to{name}", netns, f"{address}/24", outer_address="10.253.3.1/24",
                      gateway="10.253.3.1")
        else:
            self.link(self.router, f"to{name}", netns, f"{address}/24", bridge="br0", gateway=ROUTER_ADDRESS)
        self.hosts[name] = address
        return netns

    def host_netns(self, name: str) -> str:
        return f"{name}-{self.tag}"

    def add_pod(self, host: str, name: str, pod_cidr: str) -> str:
        """A pod on ``host`` with the second address of ``pod_cidr`` (a /24), serving :data:`ECHO` on 7000."""
        prefix = pod_cidr.rsplit(".", 1)[0]
        netns = self.netns(f"{name}-{self.tag}")
        self.link(self.host_netns(host), f"v{name}", netns, f"{prefix}.2/24", outer_address=f"{prefix}.1/24",
                  gateway=f"{prefix}.1")
        self.pods[name] = (netns, f"{prefix}.2")
        self.spawn(netns, sys.executable, "-c", ECHO, "7000")
        return netns

    def ask(self, client_pod: str, server_pod: str, timeout: float = 2) -> str:
        """What ``server_pod``'s echo says ``client_pod``'s address is (or ``error: ...``)."""
        netns, _ = self.pods[client_pod]
        address = self.pods[server_pod][1]
        return sh(*enter(netns), sys.executable, "-c", ASK, address, "7000", str(timeout)).stdout.strip()

    def start(self, host: str, *argv: str) -> subprocess.Popen[bytes]:
        """``argv`` run in ``host``'s namespace for as long as the lab (its output shown)."""
        return self.spawn(self.host_netns(host), *argv, quiet=False)
