"""The service proxy (kube-proxy's nftables mode): :mod:`.model` reads Services and EndpointSlices,
:mod:`.rules` computes the ruleset as a pure function, :mod:`.sync` turns one ruleset into the next
with as few commands as it can, :mod:`.proxier` runs it against the cluster and the kernel."""

from __future__ import annotations

import logging
import os

from pilothouse.client.events import SeriesRecorder
from pilothouse.client.kubeconfig import ClientConfig
from pilothouse.client.rest import APIClient
from pilothouse.components.netkernel.nft import Nft
from pilothouse.components.proxy.proxier import Proxier
from pilothouse.components.proxy.rules import ProxyConfig

__all__ = ["Proxier", "ProxyConfig", "proxy_usable", "start_proxy"]

log = logging.getLogger("pilothouse.proxy")


def proxy_usable() -> bool:
    """Root with ``nft`` at hand. Only nftables is programmed (kube-proxy's newest mode): Debian,
    the platform pilothouse installs on, has shipped it as the default firewall since 10, and its
    iptables is iptables-nft over the same kernel tables."""
    return os.geteuid() == 0 and Nft.available()


async def start_proxy(target: ClientConfig, config: ProxyConfig, *, token: str | None = None) -> Proxier | None:
    """A running proxy for this node, or None (with a warning) where the kernel cannot be programmed."""
    if not proxy_usable():
        log.warning("not root or no nft: Services are not proxied on this node")
        return None
    client = APIClient(target, user_agent=f"pilothouse-proxy/{config.node_name}", token=token)
    proxier = Proxier(client, config)
    await proxier.start()
    await _record_start(client, config.node_name)
    return proxier


async def _record_start(client: APIClient, node_name: str) -> None:
    """kube-proxy's one event: ``Starting`` on its node (events.k8s.io, action ``StartKubeProxy``,
    no note), through the kubelet-style node reference whose uid is the node's name."""
    recorder = SeriesRecorder(client, "kube-proxy")
    recorder.event({"kind": "Node", "name": node_name, "uid": node_name}, "Normal", "Starting", "",
                   action="StartKubeProxy")
    await recorder.flush()
    await recorder.close()
