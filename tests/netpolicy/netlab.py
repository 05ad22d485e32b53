"""A network-namespace lab for the policy's kernel tests and benchmark, the proxy's lab
(tests/proxy/netlab.py: a ``node`` namespace, an ``outside`` host at 10.251.0.2 routed through it)
with its endpoints replaced by "pods" on a bridge (br0, 10.252.0.1/24): namespaces joined by veth
pairs at 10.252.0.<i+1>, each serving ``busybox httpd`` answering its own name on ports 8080 and 8081.
Pod-to-pod traffic is bridged, as on the agent's bridge; traffic from ``outside`` is routed.
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.proxy import netlab as proxy_netlab
from tests.proxy.netlab import _CLIENT, BUSYBOX, _sh
from tests.proxy.netlab import usable as usable

__all__ = ["OUTSIDE", "PORTS", "Lab", "usable"]

PORTS = (8080, 8081)
OUTSIDE = "10.251.0.2"


class Lab(proxy_netlab.Lab):
    @classmethod
    def create(cls, count: int) -> Lab:
        lab = super().create(count)
        assert isinstance(lab, Lab)
        lab._serve(lab.outside, "outside")
        return lab

    def add_endpoint(self, index: int, tag: str) -> None:
        """Pod ``index``: on the bridge, not routed like the proxy's endpoints."""
        node = ["ip", "-n", self.node]
        if index == 1:
            _sh(*node, "link", "add", "br0", "type", "bridge")
            _sh(*node, "addr", "add", "10.252.0.1/24", "dev", "br0")
            _sh(*node, "link", "set", "br0", "up")
        name = f"pnp{index}-{tag}"
        _sh("ip", "netns", "add", name)
        self.endpoints.append(name)
        _sh(*node, "link", "add", f"veth{index}", "type", "veth", "peer", "name", "eth0", "netns", name)
        _sh(*node, "link", "set", f"veth{index}", "master", "br0", "up")
        for command in (["link", "set", "lo", "up"], ["addr", "add", f"{self.address(index)}/24", "dev", "eth0"],
                        ["link", "set", "eth0", "up"], ["route", "add", "default", "via", "10.252.0.1"]):
            _sh("ip", "-n", name, *command)
        self._serve(name, f"pod{index}")

    def _serve(self, netns: str, answer: str) -> None:
        for port in PORTS:
            www = self.root / f"{answer}-{port}"
            www.mkdir()
            (www / "index.html").write_text(f"{answer}:{port}")
            self.servers.append(subprocess.Popen(
                ["ip", "netns", "exec", netns, BUSYBOX, "httpd", "-f", "-p", f"0.0.0.0:{port}", "-h", str(www)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def address(self, index: int) -> str:
        """Pod ``index``'s address (1-based)."""
        return f"10.252.0.{index + 1}"

    def pod_netns(self, index: int) -> str:
        return self.endpoints[index - 1]

    def reach(self, source: str, address: str, port: int, timeout: float = 0.7) -> bool:
        """Whether an HTTP GET from namespace ``source`` to ``address:port`` is answered (a dropped
        SYN times out)."""
        result = subprocess.run(["ip", "netns", "exec", source, sys.executable, "-c", _CLIENT,
                                 f"http://{address}:{port}/", "1", str(timeout)],
                                capture_output=True, text=True, timeout=timeout + 20)
        if result.returncode != 0:
            raise RuntimeError(result.stderr)
        return bool(json.loads(result.stdout)[0][0])
