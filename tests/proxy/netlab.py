"""Network-namespace labs for the proxy's kernel tests and benchmark.

A ``node`` namespace (forwarding on, a default route into a veth nobody answers on, so that traffic
nobody captures would leave by it), ``endpoints`` namespaces each joined to the node by a veth pair
(10.250.<i>.2 in the endpoint, 10.250.<i>.1 on the node side) with ``busybox httpd`` on port 8080
answering its own name, and ``outside`` (10.251.0.2), a client outside the pods' range. Clients run
in any of them through ``ip netns exec``. Nothing reaches the host's own network.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

BUSYBOX = "/bin/busybox"
ENDPOINT_PORT = 8080
POD_RANGE = "10.250.0.0/16"
_CLIENT = """
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
    """Why this host cannot run the lab, or "" when it can."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, nftables)"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"{tool} not installed"
    if not Path(BUSYBOX).exists():
        return "busybox-static not installed"
    return ""


def _sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {result.stderr.strip()}")
    return result


@dataclass
class Lab:
    node: str
    endpoints: list[str] = field(default_factory=list)
    outside: str = ""
    servers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="proxylab-")))

    @classmethod
    def create(cls, count: int) -> Lab:
        tag = secrets.token_hex(3)
        lab = cls(node=f"phn-{tag}")
        try:
            _sh("ip", "netns", "add", lab.node)
            node = ["ip", "-n", lab.node]
            _sh(*node, "link", "set", "lo", "up")
            _sh("ip", "netns", "exec", lab.node, "sysctl", "-qw", "net.ipv4.ip_forward=1")
            # the "uplink": a veth pair whose far end nobody answers on (no dummy module everywhere)
            _sh(*node, "link", "add", "uplink0", "type", "veth", "peer", "name", "uplink1")
            _sh(*node, "addr", "add", "10.249.0.1/24", "dev", "uplink0")
            _sh(*node, "link", "set", "uplink0", "up")
            _sh(*node, "link", "set", "uplink1", "up")
            _sh(*node, "route", "add", "default", "via", "10.249.0.2")
            for index in range(1, count + 1):
                lab.add_endpoint(index, tag)
            # a client outside the pods' range, as a host of the network would be
            lab.outside = f"pho-{tag}"
            _sh("ip", "netns", "add", lab.outside)
            _sh(*node, "link", "add", "out0", "type", "veth", "peer", "name", "eth0", "netns", lab.outside)
            _sh(*node, "addr", "add", "10.251.0.1/24", "dev", "out0")
            _sh(*node, "link", "set", "out0", "up")
            for command in (["link", "set", "lo", "up"], ["addr", "add", "10.251.0.2/24", "dev", "eth0"],
                            ["link", "set", "eth0", "up"], ["route", "add", "default", "via", "10.251.0.1"]):
                _sh("ip", "-n", lab.outside, *command)
        except BaseException:
            lab.destroy()
            raise
        return lab

    def add_endpoint(self, index: int, tag: str) -> None:
        name = f"phe{index}-{tag}"
        _sh("ip", "netns", "add", name)
        self.endpoints.append(name)
        _sh("ip", "-n", self.node, "link", "add", f"veth{index}", "type", "veth", "peer", "name", "eth0",
            "netns", name)
        _sh("ip", "-n", self.node, "addr", "add", f"10.250.{index}.1/24", "dev", f"veth{index}")
        _sh("ip", "-n", self.node, "link", "set", f"veth{index}", "up")
        for command in (["link", "set", "lo", "up"], ["addr", "add", f"10.250.{index}.2/24", "dev", "eth0"],
                        ["link", "set", "eth0", "up"], ["route", "add", "default", "via", f"10.250.{index}.1"]):
            _sh("ip", "-n", name, *command)
        www = self.root / f"ep{index}"
        www.mkdir()
        (www / "index.html").write_text(f"ep{index}")
        self.servers.append(subprocess.Popen(
            ["ip", "netns", "exec", name, BUSYBOX, "httpd", "-f", "-p", f"0.0.0.0:{ENDPOINT_PORT}", "-h", str(www)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def address(self, index: int) -> str:
        """Endpoint ``index``'s address (1-based)."""
        return f"10.250.{index}.2"

    def node_address(self, index: int) -> str:
        return f"10.250.{index}.1"

    def requests(self, url: str, count: int, netns: str | None = None,
                 timeout: float = 2) -> list[tuple[bool, str, float]]:
        """``count`` HTTP GETs of ``url`` from ``netns`` (default: the node), each on a new connection:
        (ok, body or error, seconds) each. One Python process per call (busybox-static's wget crashes
        on some hosts)."""
        result = subprocess.run(["ip", "netns", "exec", netns or self.node, sys.executable, "-c", _CLIENT, url,
                                 str(count), str(timeout)], capture_output=True, text=True,
                                timeout=count * (timeout + 1) + 10)
        if result.returncode != 0:
            raise RuntimeError(result.stderr)
        return [(bool(ok), str(text), float(seconds)) for ok, text, seconds in json.loads(result.stdout)]

    def get(self, url: str, netns: str | None = None, timeout: float = 2) -> tuple[bool, str, float]:
        return self.requests(url, 1, netns, timeout)[0]

    def answers(self, url: str, count: int, netns: str | None = None) -> list[str]:
        return [body if ok else f"error: {body}" for ok, body, _ in self.requests(url, count, netns)]

    def wait_serving(self, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        for index in range(1, len(self.endpoints) + 1):
            while not self.get(f"http://{self.address(index)}:{ENDPOINT_PORT}/")[0]:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"endpoint {index} does not serve")
                time.sleep(0.05)

    def destroy(self) -> None:
        for server in self.servers:
            server.terminate()
            try:
                server.wait(5)
            except subprocess.TimeoutExpired:
                server.kill()
        for name in [*self.endpoints, self.outside, self.node]:
            _sh("ip", "netns", "del", name, check=False)
        shutil.rmtree(self.root, ignore_errors=True)


_PROBER = """
import sys, urllib.request
for line in sys.stdin:
    try:
        with urllib.request.urlopen(line.strip(), timeout=1) as response:
            print(response.read().decode().strip(), flush=True)
    except Exception as error:
        print("error:", str(getattr(error, "reason", error)).replace(chr(10), " "), flush=True)
"""


class Prober:
    """One long-lived HTTP client in a namespace (no process start per request: for the benchmark)."""

    def __init__(self, netns: str) -> None:
        self.process = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-c", _PROBER],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)

    def get(self, url: str) -> str:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(url + "\n")
        self.process.stdin.flush()
        return self.process.stdout.readline().strip()

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(5)
