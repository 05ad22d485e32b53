"""NodeResourcesFit (filter + least-allocated score) and NodeResourcesBalancedAllocation.

Fit: the pod's requests (containers, sidecars, max of init containers, overhead) must fit into the
node's allocatable minus what bound and assumed pods already request, for cpu, memory,
ephemeral-storage, extended resources, and the pod count. Scores follow kube-scheduler exactly: least
allocated uses the non-zero requests (100m/200Mi for containers without), balanced allocation the
real requests and the standard deviation of the cpu/memory fractions.
"""

from __future__ import annotations

from collections.abc import Iterable

from pilothouse.components.scheduler.framework import (
    MAX_NODE_SCORE,
    SKIP,
    ActionType,
    ClusterEvent,
    CycleState,
    EventResource,
    Plugin,
    Status,
    record_rejections,
)
from pilothouse.components.scheduler.nodeinfo import NodeInfo, PodInfo

__all__ = ["BalancedAllocation", "Fit", "insufficient_resources"]


def insufficient_resources(pod: PodInfo, node: NodeInfo) -> list[str]:
    """The reasons, in kube-scheduler's order: pods, cpu, memory, ephemeral-storage, scalars."""
    reasons = []
    if len(node.pods) + 1 > node.alloc_pods:
        reasons.append("Too many pods")
    if pod.cpu and pod.cpu > node.alloc_cpu - node.req_cpu:
        reasons.append("Insufficient cpu")
    if pod.mem and pod.mem > node.alloc_mem - node.req_mem:
        reasons.append("Insufficient memory")
    if pod.eph and pod.eph > node.alloc_eph - node.req_eph:
        reasons.append("Insufficient ephemeral-storage")
    for name, amount in pod.scalars.items():
        if amount and amount > node.alloc_scalars.get(name, 0) - node.req_scalars.get(name, 0):
            reasons.append(f"Insufficient {name}")
    return reasons


def _fit_events() -> list[ClusterEvent]:
    return [ClusterEvent(EventResource.ASSIGNED_POD, ActionType.DELETE | ActionType.UPDATE_POD_SCALE_DOWN),
            ClusterEvent(EventResource.NODE, ActionType.ADD | ActionType.UPDATE_NODE_ALLOCATABLE)]


class Fit(Plugin):
    name = "NodeResourcesFit"

    def events_to_register(self) -> Iterable[ClusterEvent]:
        return _fit_events()

    def filter_nodes(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo],
                     statuses: dict[str, Status]) -> list[NodeInfo]:
        if pod.scalars:
            kept = [n for n in nodes if not insufficient_resources(pod, n)]
        else:
            cpu, mem, eph = pod.cpu, pod.mem, pod.eph
            kept = [n for n in nodes
                    if len(n.pods) < n.alloc_pods
                    and (not cpu or cpu <= n.alloc_cpu - n.req_cpu)
                    and (not mem or mem <= n.alloc_mem - n.req_mem)
                    and (not eph or eph <= n.alloc_eph - n.req_eph)]
        return record_rejections(self.filter, state, pod, nodes, kept, statuses)

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        # The common case inline (no allocation): everything fits.
        if (len(node.pods) < node.alloc_pods
                and (not pod.cpu or pod.cpu <= node.alloc_cpu - node.req_cpu)
                and (not pod.mem or pod.mem <= node.alloc_mem - node.req_mem)
                and (not pod.eph or pod.eph <= node.alloc_eph - node.req_eph)
                and not pod.scalars):
            return None
        reasons = insufficient_resources(pod, node)
        if reasons:
            return Status.unschedulable(*reasons, plugin=self.name)
        return None

    def score_nodes(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> list[int]:
        cpu, mem = pod.nz_cpu, pod.nz_mem
        return [((0 if not n.alloc_cpu or n.nz_cpu + cpu > n.alloc_cpu
                  else (n.alloc_cpu - n.nz_cpu - cpu) * MAX_NODE_SCORE // n.alloc_cpu)
                 + (0 if not n.alloc_mem or n.nz_mem + mem > n.alloc_mem
                    else (n.alloc_mem - n.nz_mem - mem) * MAX_NODE_SCORE // n.alloc_mem)) // 2
                for n in nodes]

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        """LeastAllocated over cpu and memory, weight 1 each."""
        capacity = node.alloc_cpu
        requested = node.nz_cpu + pod.nz_cpu
        cpu = 0 if capacity == 0 or requested > capacity else (capacity - requested) * MAX_NODE_SCORE // capacity
        capacity = node.alloc_mem
        requested = node.nz_mem + pod.nz_mem
        mem = 0 if capacity == 0 or requested > capacity else (capacity - requested) * MAX_NODE_SCORE // capacity
        return (cpu + mem) // 2


class BalancedAllocation(Plugin):
    name = "NodeResourcesBalancedAllocation"

    def events_to_register(self) -> Iterable[ClusterEvent]:
        return _fit_events()

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> Status | None:
        # A pod requesting nothing changes no balance (kube-scheduler skips best-effort pods).
        return None if pod.cpu or pod.mem else SKIP

    def score_nodes(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> list[int]:
        cpu, mem = pod.cpu, pod.mem
        out = []
        for n in nodes:
            if not n.alloc_cpu or not n.alloc_mem:
                out.append(0)
                continue
            fc = (n.req_cpu + cpu) / n.alloc_cpu
            fm = (n.req_mem + mem) / n.alloc_mem
            if fc > 1.0:
                fc = 1.0
            if fm > 1.0:
                fm = 1.0
            out.append(int((1 - abs(fc - fm) / 2) * MAX_NODE_SCORE))
        return out

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        if node.alloc_cpu == 0 or node.alloc_mem == 0:
            return 0
        cpu = min((node.req_cpu + pod.cpu) / node.alloc_cpu, 1.0)
        mem = min((node.req_mem + pod.mem) / node.alloc_mem, 1.0)
        # Two resources: the standard deviation is half the difference.
        std = abs(cpu - mem) / 2
        return int((1 - std) * MAX_NODE_SCORE)
