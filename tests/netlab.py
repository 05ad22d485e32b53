"""The network-namespace lab every kernel test and network benchmark builds on: namespaces that play
nodes, pods, routers and outside hosts, joined by veth pairs and bridges, with servers run inside
them, all torn down in one call. Nothing reaches the machine's own network unless a lab joins the
root namespace on purpose (the pod network's hosts reach the API server that way).

The area labs specialise it: tests/proxy/netlab.py (a node with routed endpoints and an outside
client), tests/netpolicy/netlab.py (the same node with pods on a bridge) and
tests/podnetwork/hostlab.py (hosts behind a router, with pods of their own).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["BUSYBOX", "CLIENT", "NetnsLab", "enter", "http_get", "sh", "usable"]

BUSYBOX = "/bin/busybox"
#: HTTP GETs of argv[1], argv[2] times with a timeout of argv[3] s, each on a new connection: a JSON
#: list of (ok, body or error, seconds). Python, not busybox wget, which crashes on some hosts.
CLIENT = """
import json, sys, time, urllib.request
url, count, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
out = []
for _ in range(count):
    started = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            out.append((True, response.read().decode().strip(), time.monotonic() - started))
    except Exception as error:
        out.append((False, str(getattr(error, "reason", error)), time.monotonic() - started))
print(json.dumps(out))
"""


def usable() -> str:
    """Why this host cannot run a lab, or "" when it can."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, nftables)"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"{tool} not installed"
    if not Path(BUSYBOX).exists():
        return "busybox-static not installed"
    return ""


def sh(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {result.stderr.strip()}")
    return result


def enter(netns: str) -> list[str]:
    """The prefix that runs a command in ``netns`` (nsenter keeps /sys and the cgroup mounts, which
    ``ip netns exec`` remounts)."""
    return ["nsenter", f"--net=/var/run/netns/{netns}"]


def http_get(netns: str, url: str, count: int = 1, timeout: float = 2) -> list[tuple[bool, str, float]]:
    """``count`` GETs of ``url`` from ``netns`` (see :data:`CLIENT`)."""
    result = subprocess.run([*enter(netns), sys.executable, "-c", CLIENT, url, str(count), str(timeout)],
                            capture_output=True, text=True, timeout=count * (timeout + 1) + 20)
    if result.returncode != 0:
        raise RuntimeError(result.stderr)
    return [(bool(ok), str(text), float(seconds)) for ok, text, seconds in json.loads(result.stdout)]


@dataclass
class NetnsLab:
    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    namespaces: list[str] = field(default_factory=list)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    #: scratch files (web roots)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="netlab-")))
    #: root-namespace links and routes to remove at the end: ``ip`` arguments after ``del``
    root_leftovers: list[list[str]] = field(default_factory=list)

    def netns(self, name: str, *, forwarding: bool = False) -> str:
        """A new namespace with loopback up (and IPv4 forwarding on: a node, a router)."""
        sh("ip", "netns", "add", name)
        self.namespaces.append(name)
        sh("ip", "-n", name, "link", "set", "lo", "up")
        if forwarding:
            sh(*enter(name), "sysctl", "-qw", "net.ipv4.ip_forward=1")
        return name

    def bridge(self, netns: str, name: str, address: str) -> None:
        """A bridge in ``netns`` holding ``address`` (CIDR)."""
        for command in (["link", "add", name, "type", "bridge"], ["addr", "add", address, "dev", name],
                        ["link", "set", name, "up"]):
            sh("ip", "-n", netns, *command)

    def link(self, outer: str, outer_name: str, inner: str, address: str, *, outer_address: str | None = None,
             bridge: str | None = None, gateway: str | None = None, inner_name: str = "eth0") -> None:
        """A veth pair from ``outer`` (its end ``outer_name`` holding ``outer_address`` or enslaved to
        ``bridge``) to ``inner`` (``inner_name`` holding ``address``, CIDR, with a default route via
        ``gateway``)."""
        sh("ip", "-n", outer, "link", "add", outer_name, "type", "veth", "peer", "name", inner_name, "netns", inner)
        if outer_address:
            sh("ip", "-n", outer, "addr", "add", outer_address, "dev", outer_name)
        if bridge:
            sh("ip", "-n", outer, "link", "set", outer_name, "master", bridge)
        sh("ip", "-n", outer, "link", "set", outer_name, "up")
        commands = [["addr", "add", address, "dev", inner_name], ["link", "set", inner_name, "up"]]
        if gateway:
            commands.append(["route", "add", "default", "via", gateway])
        for command in commands:
            sh("ip", "-n", inner, *command)

    def spawn(self, netns: str, *argv: str, quiet: bool = True) -> subprocess.Popen[bytes]:
        """``argv`` run in ``netns`` for as long as the lab."""
        output = subprocess.DEVNULL if quiet else None
        process = subprocess.Popen([*enter(netns), *argv], stdout=output, stderr=output)
        self.processes.append(process)
        return process

    def serve_http(self, netns: str, port: int, body: str) -> None:
        """``busybox httpd`` in ``netns`` answering ``body`` on ``port``."""
        www = self.root / f"www-{len(self.processes)}"
        www.mkdir()
        (www / "index.html").write_text(body)
        self.spawn(netns, BUSYBOX, "httpd", "-f", "-p", f"0.0.0.0:{port}", "-h", str(www))

    def destroy(self) -> None:
        for process in self.processes:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for leftover in self.root_leftovers:
            sh("ip", *leftover, check=False)
        for name in reversed(self.namespaces):
            sh("ip", "netns", "del", name, check=False)
        shutil.rmtree(self.root, ignore_errors=True)
