"""``--pod-cidr auto``: the agent's pod range is the one node IPAM gave its Node.

kubelet without ``--pod-cidr`` takes ``spec.podCIDR`` from its Node once the controller manager's
range allocator (``--allocate-node-cidrs``) has set it; pilothouse keeps a fixed default range (one
host needs no IPAM) and asks for this behaviour by name, so that an agent never waits for an
allocator that is not running.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from pilothouse.client import errors
from pilothouse.client.rest import APIClient, resource

__all__ = ["AUTO", "DEFAULT_CLUSTER_CIDR", "wait_for_pod_cidr"]

log = logging.getLogger("pilothouse.agent.podrange")

AUTO = "auto"
#: the controller manager's default --cluster-cidr
DEFAULT_CLUSTER_CIDR = "10.244.0.0/16"
NODES = resource("", "v1", "nodes")


def _ipv4_range(node: dict[str, Any]) -> str:
    spec = node.get("spec") or {}
    cidrs = spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else [])
    return next((cidr for cidr in cidrs if ":" not in cidr), "")


async def wait_for_pod_cidr(client: APIClient, node: dict[str, Any], poll: float = 1.0) -> str:
    """The Node's IPv4 pod range, polled until node IPAM sets it (``spec.podCIDR`` is set once)."""
    name = node["metadata"]["name"]
    warned = False
    while not (cidr := _ipv4_range(node)):
        if not warned:
            log.info("node %s: waiting for a pod range (spec.podCIDR) from node IPAM", name)
            warned = True
        await asyncio.sleep(poll)
        try:
            node = await client.get(NODES, name)
        except (errors.APIError, errors.ConnectionFailed) as error:
            log.info("node %s: %s; still waiting for its pod range", name, error)
    log.info("node %s: pod range %s", name, cidr)
    return cidr
