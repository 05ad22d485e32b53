"""Which of the node's addresses serve NodePorts and health-check node ports (kube-proxy's
``--nodeport-addresses``, pkg/proxy/util/nodeport_addresses.go).

The flag holds CIDRs, or ``primary`` (kube-proxy 1.29+): the node's primary IP only, as kube-proxy
detects it from the Node object (its InternalIP, else its ExternalIP; utilnode.GetNodeHostIPs),
waiting for the node to be registered as kube-proxy does, and falling back to loopback (which
serves no NodePort) with a warning when it never is. ``primary`` is resolved once, at start, into
the ``/32`` of that address, so the rules see CIDRs only.

Health-check node ports listen on the node's addresses within those CIDRs, or on 0.0.0.0 when no
range is given (kube-proxy's newServiceHealthServer): a Service's health is then not offered on
addresses the NodePorts themselves do not answer on.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
import time

from pilothouse.client import errors
from pilothouse.client.rest import APIClient, resource
from pilothouse.components.netkernel import iproute
from pilothouse.components.proxy.rules import ProxyConfig

__all__ = ["PRIMARY", "bind_addresses", "node_primary_ip", "resolve_primary"]

log = logging.getLogger("pilothouse.proxy")

#: the ``--nodeport-addresses`` value naming the node's primary IP
PRIMARY = "primary"
NODES = resource("", "v1", "nodes")
#: kube-proxy's wait for its Node object when it must learn the node's IP from it
_NODE_WAIT, _NODE_POLL = 30.0, 0.5


async def node_primary_ip(client: APIClient, node_name: str, timeout: float = _NODE_WAIT) -> str | None:
    """The node's first IPv4 InternalIP (else ExternalIP), waiting up to ``timeout`` for it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            node = await client.get(NODES, node_name)
        except (errors.APIError, errors.ConnectionFailed):
            node = {}
        addresses = (node.get("status") or {}).get("addresses") or []
        for kind in ("InternalIP", "ExternalIP"):
            for entry in addresses:
                address = str(entry.get("address", ""))
                if entry.get("type") == kind and ":" not in address and address:
                    return address
        if time.monotonic() >= deadline:
            return None
        await asyncio.sleep(_NODE_POLL)


async def resolve_primary(client: APIClient, config: ProxyConfig, timeout: float = _NODE_WAIT) -> ProxyConfig:
    """``config`` with ``primary`` replaced by the node's primary IP as a ``/32``."""
    if PRIMARY not in config.nodeport_addresses:
        return config
    address = await node_primary_ip(client, config.node_name, timeout)
    if address is None:
        log.warning("can't determine node %s's IP (no Node object with an InternalIP or ExternalIP), assuming "
                    "loopback: NodePorts answer nowhere", config.node_name)
        address = "127.0.0.1"
    ranges = tuple(f"{address}/32" if cidr == PRIMARY else cidr for cidr in config.nodeport_addresses)
    return dataclasses.replace(config, nodeport_addresses=ranges)


async def bind_addresses(config: ProxyConfig, netns: str | None) -> list[str]:
    """Where a health-check node port listens: 0.0.0.0 without ``--nodeport-addresses``, else the
    node's addresses (in ``netns``) within them (none: the port is not served; the addresses
    unreadable: 0.0.0.0, as kube-proxy falls back)."""
    if not config.nodeport_addresses:
        return ["0.0.0.0"]
    ranges = [ipaddress.ip_network(cidr, strict=False) for cidr in config.nodeport_addresses]
    try:
        links = await iproute.show("ip", *(["-n", netns] if netns else []), "-4", "addr", "show")
    except (iproute.IPRouteError, OSError) as error:  # kube-proxy's fallback: every address
        log.error("cannot list the node's addresses (%s): health check node ports listen on all of them", error)
        return ["0.0.0.0"]
    found: list[str] = []
    for link in links:
        for info in link.get("addr_info") or []:
            if not info.get("local"):
                continue
            address = ipaddress.ip_address(str(info["local"]))
            if any(address in network for network in ranges) and str(address) not in found:
                found.append(str(address))
    return found
