"""Network-namespace "hosts" for the pod network tests, and "pods" on them.

A ``router`` namespace holds a bridge (10.253.0.253/24, the "switch" of hosts A and B) and a second
link to host C's subnet (10.253.3.0/24): A and B share a subnet (direct routes), C is one hop away
(VXLAN). The root namespace joins the bridge as 10.253.0.254 (the API server listens there) with a
route to C's subnet through the router; it forwards nothing. Each pod is a namespace of its own
joined to its host by a veth pair (the host end holds the range's first address, as the agent's
bridge does). Nothing reaches the machine's own network.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from dataclasses import dataclass, field

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


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, capture_output=True, text=True, timeout=60)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {result.stderr.strip()}")
    return result


def enter(netns: str) -> list[str]:
    """The prefix that runs a command in ``netns`` (nsenter keeps /sys and the cgroup mounts)."""
    return ["nsenter", f"--net=/var/run/netns/{netns}"]


@dataclass
class HostLab:
    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    namespaces: list[str] = field(default_factory=list)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    #: host name -> its address
    hosts: dict[str, str] = field(default_factory=dict)
    #: pod name -> (netns, address)
    pods: dict[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def router(self) -> str:
        return f"phr-{self.tag}"

    def _netns(self, name: str) -> str:
        sh("ip", "netns", "add", name)
        self.namespaces.append(name)
        sh("ip", "-n", name, "link", "set", "lo", "up")
        return name

    def create(self) -> HostLab:
        try:
            router = self._netns(self.router)
            sh(*enter(router), "sysctl", "-qw", "net.ipv4.ip_forward=1")
            for command in (["link", "add", "br0", "type", "bridge"],
                            ["addr", "add", f"{ROUTER_ADDRESS}/24", "dev", "br0"], ["link", "set", "br0", "up"]):
                sh("ip", "-n", router, *command)
            sh("ip", "link", "add", f"phl-{self.tag}", "type", "veth", "peer", "name", "root0", "netns", router)
            sh("ip", "-n", router, "link", "set", "root0", "master", "br0", "up")
            sh("ip", "addr", "add", f"{ROOT_ADDRESS}/24", "dev", f"phl-{self.tag}")
            sh("ip", "link", "set", f"phl-{self.tag}", "up")
            sh("ip", "route", "add", FAR_SUBNET, "via", ROUTER_ADDRESS)
        except BaseException:
            self.destroy()
            raise
        return self

    def add_host(self, name: str, address: str, *, far: bool = False) -> str:
        """A host on the router's bridge, or (``far``) on its own subnet behind the router."""
        netns = self._netns(f"{name}-{self.tag}")
        sh(*enter(netns), "sysctl", "-qw", "net.ipv4.ip_forward=1")
        sh("ip", "-n", self.router, "link", "add", f"to{name}", "type", "veth", "peer", "name", "eth0", "netns", netns)
        if far:
            sh("ip", "-n", self.router, "addr", "add", "10.253.3.1/24", "dev", f"to{name}")
            sh("ip", "-n", self.router, "link", "set", f"to{name}", "up")
            gateway = "10.253.3.1"
        else:
            sh("ip", "-n", self.router, "link", "set", f"to{name}", "master", "br0", "up")
            gateway = ROUTER_ADDRESS
        for command in (["addr", "add", f"{address}/24", "dev", "eth0"], ["link", "set", "eth0", "up"],
                        ["route", "add", "default", "via", gateway]):
            sh("ip", "-n", netns, *command)
        self.hosts[name] = address
        return netns

    def host_netns(self, name: str) -> str:
        return f"{name}-{self.tag}"

    def add_pod(self, host: str, name: str, pod_cidr: str) -> str:
        """A pod on ``host`` with the second address of ``pod_cidr`` (a /24), serving :data:`ECHO` on 7000."""
        prefix = pod_cidr.rsplit(".", 1)[0]
        netns = self._netns(f"{name}-{self.tag}")
        host_netns = self.host_netns(host)
        sh("ip", "-n", host_netns, "link", "add", f"v{name}", "type", "veth", "peer", "name", "eth0", "netns", netns)
        sh("ip", "-n", host_netns, "addr", "add", f"{prefix}.1/24", "dev", f"v{name}")
        sh("ip", "-n", host_netns, "link", "set", f"v{name}", "up")
        for command in (["addr", "add", f"{prefix}.2/24", "dev", "eth0"], ["link", "set", "eth0", "up"],
                        ["route", "add", "default", "via", f"{prefix}.1"]):
            sh("ip", "-n", netns, *command)
        self.pods[name] = (netns, f"{prefix}.2")
        self.processes.append(subprocess.Popen([*enter(netns), sys.executable, "-c", ECHO, "7000"],
                                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        return netns

    def ask(self, client_pod: str, server_pod: str, timeout: float = 2) -> str:
        """What ``server_pod``'s echo says ``client_pod``'s address is (or ``error: ...``)."""
        netns, _ = self.pods[client_pod]
        address = self.pods[server_pod][1]
        return sh(*enter(netns), sys.executable, "-c", ASK, address, "7000", str(timeout)).stdout.strip()

    def start(self, host: str, *argv: str) -> subprocess.Popen[bytes]:
        """``argv`` run in ``host``'s namespace for as long as the lab."""
        process = subprocess.Popen([*enter(self.host_netns(host)), *argv])
        self.processes.append(process)
        return process

    def destroy(self) -> None:
        for process in self.processes:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        sh("ip", "route", "del", FAR_SUBNET, "via", ROUTER_ADDRESS, check=False)
        sh("ip", "link", "del", f"phl-{self.tag}", check=False)
        for name in reversed(self.namespaces):
            sh("ip", "netns", "del", name, check=False)
