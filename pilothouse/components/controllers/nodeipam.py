"""Node IPAM: each Node gets a pod range of its own, kube-controller-manager's range allocator.

As ``pkg/controller/nodeipam/ipam/range_allocator.go`` (``--allocate-node-cidrs``, ``--cluster-cidr``,
``--node-cidr-mask-size``): a Node without ``spec.podCIDR`` gets the next free ``/<mask>`` subnet of the
cluster range, patched as ``spec.podCIDR`` and ``spec.podCIDRs``; a range is never given twice and
returns to the pool when its Node is deleted. When the pool is empty the Node gets a
``CIDRNotAvailable`` event (``RecordNodeStatusChange``) and is retried.

The occupied set is level-triggered: it is the ranges of the Nodes in the informer's cache plus the
ones this process patched and has not yet seen come back (a second sync must not hand out the same
range before the watch delivers the first patch). A restarted controller therefore rebuilds it from
the Nodes, as upstream's ``occupyCIDRs`` at start-up does, and a deleted Node's range is free as soon
as the Node leaves the cache. One worker: allocation is a read-modify-write of that set.
"""

from __future__ import annotations

import ipaddress

from pilothouse.client.informer import EventHandler
from pilothouse.client.rest import resource
from pilothouse.components.controllers.base import Controller, ControllerContext
from pilothouse.machinery.meta import Object

__all__ = ["CIDRSet", "NodeIPAMController", "node_pod_cidrs"]


NODES = resource("", "v1", "nodes")
#: upstream's cidrset refuses more than 2^16 node ranges (``ErrCIDRSetSubNetTooBig``)
_MAX_SUBNET_BITS = 16
#: how soon a Node that found the pool full is tried again (a deletion retries it at once)
_FULL_RETRY = 10.0


def node_pod_cidrs(node: Object) -> list[str]:
    spec = node.get("spec") or {}
    return list(spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else []))


class CIDRSet:
    """The ``/mask`` subnets of ``cluster`` (upstream's cidrset): :meth:`next_free` hands them out
    round-robin from after the last one given, so a range just released is not reused at once."""

    def __init__(self, cluster: str, mask_size: int) -> None:
        self.cluster = ipaddress.ip_network(cluster)
        if not self.cluster.prefixlen <= mask_size <= self.cluster.max_prefixlen:
            raise ValueError(f"--node-cidr-mask-size {mask_size} does not fit --cluster-cidr {cluster}")
        if mask_size - self.cluster.prefixlen > _MAX_SUBNET_BITS:
            raise ValueError(f"--node-cidr-mask-size {mask_size} makes more than 2^{_MAX_SUBNET_BITS} "
                             f"ranges of {cluster}")
        self.mask_size = mask_size
        self.size = 1 << (mask_size - self.cluster.prefixlen)
        self._step = 1 << (self.cluster.max_prefixlen - mask_size)
        self._next = 0

    def subnet(self, index: int) -> str:
        base = int(self.cluster.network_address) + index * self._step
        return f"{ipaddress.ip_address(base)}/{self.mask_size}"

    def indices(self, cidr: str) -> range:
        """The subnets ``cidr`` covers or lies in (none when it is outside the cluster range)."""
        try:
            network = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            return range(0)
        if network.version != self.cluster.version or not network.overlaps(self.cluster):
            return range(0)
        offset = int(network.network_address) - int(self.cluster.network_address)
        first = max(offset, 0) // self._step
        return range(first, min(self.size, first + max(1, network.num_addresses // self._step)))

    def next_free(self, occupied: set[str]) -> str | None:
        taken = {index for cidr in occupied for index in self.indices(cidr)}
        for step in range(self.size):
            index = (self._next + step) % self.size
            if index not in taken:
                self._next = (index + 1) % self.size
                return self.subnet(index)
        return None


class NodeIPAMController(Controller):
    name = "nodeipam"
    workers = 1

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        options = ctx.options
        #: upstream runs the allocator only with --allocate-node-cidrs (off by default, as there)
        self.enabled = bool(options.get("allocate_node_cidrs", False))
        self.cidrs = CIDRSet(str(options.get("cluster_cidr") or "10.244.0.0/16"),
                             int(options.get("node_cidr_mask_size") or 24))
        #: node name -> the range this process patched onto it and has not seen in the cache yet
        self._pending: dict[str, str] = {}
        self.nodes = ctx.informers.informer(NODES)
        if self.enabled:
            self.nodes.add_handler(EventHandler.on_object(self.enqueue, self._on_delete))

    def _on_delete(self, node: Object) -> None:
        # its range is free now: the Nodes that found the pool full may take it
        for other in self.nodes.list():
            if not node_pod_cidrs(other):
                self.enqueue(other)

    async def sync(self, key: str) -> None:
        node = self.nodes.get(key)
        if node is None:
            self._pending.pop(key, None)
            return
        if node_pod_cidrs(node):
            self._pending.pop(key, None)
            return
        if key in self._pending:  # patched; the watch has not brought it back yet
            return
        occupied = {cidr for other in self.nodes.list() for cidr in node_pod_cidrs(other)}
        occupied |= set(self._pending.values())
        cidr = self.cidrs.next_free(occupied)
        if cidr is None:
            self.recorder.event(node, "Normal", "CIDRNotAvailable", f"Node {key} status is now: CIDRNotAvailable")
            self.log.warning("no pod range left in %s for node %s", self.cidrs.cluster, key)
            self.queue.add_after(key, _FULL_RETRY)
            return
        self._pending[key] = cidr
        try:
            await self.client.patch(NODES, key, {"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}})
        except BaseException:
            self._pending.pop(key, None)
            raise
        self.log.info("node %s: pod range %s", key, cidr)
