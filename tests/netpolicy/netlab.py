"""A network-namespace lab for the policy's kernel tests and benchmark, the proxy's lab
(tests/proxy/netlab.py: a ``node`` namespace, an ``outside`` host at 10.251.0.2 routed through it)
with its endpoints replaced by "pods" on a bridge (br0, 10.252.0.1/24): namespaces joined by veth
pairs at 10.252.0.<i+1>, each serving ``busybox httpd`` answering its own name on ports 8080 and 8081.
Pod-to-pod traffic is bridged, as on the agent's bridge; traffic from ``outside`` is routed.
"""

from __future__ import annotations

from tests.netlab import http_get
from tests.netlab import usable as usable
from tests.proxy import netlab as proxy_netlab

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
        if index == 1:
            self.bridge(self.node, "br0", "10.252.0.1/24")
        name = self.netns(f"pnp{index}-{tag}")
        self.endpoints.append(name)
        self.link(self.node, f"veth{index}", name, f"{self.address(index)}/24", bridge="br0", gateway="10.252.0.1")
        self._serve(name, f"pod{index}")

    def _serve(self, netns: str, answer: str) -> None:
        for port in PORTS:
            self.serve_http(netns, port, f"{answer}:{port}")

    def address(self, index: int) -> str:
        """Pod ``index``'s address (1-based)."""
        return f"10.252.0.{index + 1}"

    def pod_netns(self, index: int) -> str:
        return self.endpoints[index - 1]

    def reach(self, source: str, address: str, port: int, timeout: float = 0.7) -> bool:
        """Whether an HTTP GET from namespace ``source`` to ``address:port`` is answered (a dropped
        SYN times out)."""
        return http_get(source, f"http://{address}:{port}/", 1, timeout)[0][0]
