"""Network-namespace labs for the proxy's kernel tests and benchmark.

A ``node`` namespace (forwarding on, a default route into a veth nobody answers on, so that traffic
nobody captures would leave by it), ``endpoints`` namespaces each joined to the node by a veth pair
(10.250.<i>.2 in the endpoint, 10.250.<i>.1 on the node side) with ``busybox httpd`` on port 8080
answering its own name, and ``outside`` (10.251.0.2), a client outside the pods' range. Clients run
in any of them. Built on the shared lab, tests/netlab.py; nothing reaches the host's own network.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from tests.netlab import BUSYBOX, NetnsLab, enter, http_get, sh, usable

__all__ = ["BUSYBOX", "ENDPOINT_PORT", "POD_RANGE", "Lab", "Prober", "usable"]

ENDPOINT_PORT = 8080
POD_RANGE = "10.250.0.0/16"


@dataclass
class Lab(NetnsLab):
    node: str = ""
    endpoints: list[str] = field(default_factory=list)
    outside: str = ""

    @classmethod
    def create(cls, count: int) -> Lab:
        lab = cls()
        lab.node = f"phn-{lab.tag}"
        try:
            lab.netns(lab.node, forwarding=True)
            node = ["ip", "-n", lab.node]
            # the "uplink": a veth pair whose far end nobody answers on (no dummy module everywhere)
            sh(*node, "link", "add", "uplink0", "type", "veth", "peer", "name", "uplink1")
            sh(*node, "addr", "add", "10.249.0.1/24", "dev", "uplink0")
            sh(*node, "link", "set", "uplink0", "up")
            sh(*node, "link", "set", "uplink1", "up")
            sh(*node, "route", "add", "default", "via", "10.249.0.2")
            for index in range(1, count + 1):
                lab.add_endpoint(index, lab.tag)
            # a client outside the pods' range, as a host of the network would be
            lab.outside = lab.netns(f"pho-{lab.tag}")
            lab.link(lab.node, "out0", lab.outside, "10.251.0.2/24", outer_address="10.251.0.1/24",
                     gateway="10.251.0.1")
        except BaseException:
            lab.destroy()
            raise
        return lab

    @classmethod
    @contextmanager
    def serving(cls, count: int) -> Iterator[Lab]:
        """A lab of ``count`` endpoints that all answer, destroyed on exit (the kernel tests' fixture)."""
        lab = cls.create(count)
        try:
            lab.wait_serving()
            yield lab
        finally:
            lab.destroy()

    def add_endpoint(self, index: int, tag: str) -> None:
        name = self.netns(f"phe{index}-{tag}")
        self.endpoints.append(name)
        self.link(self.node, f"veth{index}", name, f"{self.address(index)}/24",
                  outer_address=f"{self.node_address(index)}/24", gateway=self.node_address(index))
        self.serve_http(name, ENDPOINT_PORT, f"ep{index}")

    def address(self, index: int) -> str:
        """Endpoint ``index``'s address (1-based)."""
        return f"10.250.{index}.2"

    def node_address(self, index: int) -> str:
        return f"10.250.{index}.1"

    def requests(self, url: str, count: int, netns: str | None = None,
                 timeout: float = 2) -> list[tuple[bool, str, float]]:
        """``count`` HTTP GETs of ``url`` from ``netns`` (default: the node), each on a new connection:
        (ok, body or error, seconds) each."""
        return http_get(netns or self.node, url, count, timeout)

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
        self.process = subprocess.Popen([*enter(netns), sys.executable, "-c", _PROBER],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)

    def get(self, url: str) -> str:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(url + "\n")
        self.process.stdin.flush()
        return self.process.stdout.readline().strip()

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(5)
