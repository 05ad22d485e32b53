"""NetworkPolicy enforcement on one node (k3s embeds kube-router's netpol controller; the agent runs
this one): :mod:`.model` reads the objects, :mod:`.rules` computes the nftables ruleset as a pure
function and the difference between two, :mod:`.controller` runs it against the cluster and the
kernel."""

from __future__ import annotations

import logging

from pilothouse.client.kubeconfig import ClientConfig
from pilothouse.client.rest import APIClient
from pilothouse.components.netpolicy.controller import PolicyController
from pilothouse.components.proxy import proxy_usable

__all__ = ["PolicyController", "start_network_policy"]

log = logging.getLogger("pilothouse.netpolicy")


async def start_network_policy(target: ClientConfig, node_name: str, *,
                               token: str | None = None) -> PolicyController | None:
    """A running policy controller for this node, or None (with a warning) where the kernel cannot
    be programmed (the same needs as the proxy's: root and nft)."""
    if not proxy_usable():
        log.warning("not root or no nft: NetworkPolicies are not enforced on this node")
        return None
    client = APIClient(target, user_agent=f"pilothouse-netpol/{node_name}", token=token)
    controller = PolicyController(client, node_name)
    await controller.start()
    return controller
