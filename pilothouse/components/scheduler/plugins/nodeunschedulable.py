"""NodeUnschedulable: cordoned nodes (``spec.unschedulable``) take only pods that tolerate it.

The toleration is ``node.kubernetes.io/unschedulable:NoSchedule`` (DaemonSet pods carry it).
"""

from __future__ import annotations

from collections.abc import Iterable

from pilothouse.components.scheduler.framework import (
    ActionType,
    ClusterEvent,
    CycleState,
    EventResource,
    Plugin,
    Status,
    record_rejections,
)
from pilothouse.components.scheduler.nodeinfo import NodeInfo, PodInfo, Taint

__all__ = ["ERR_REASON", "NodeUnschedulable"]

ERR_REASON = "node(s) were unschedulable"
_TAINT = Taint("node.kubernetes.io/unschedulable", "", "NoSchedule")


class NodeUnschedulable(Plugin):
    name = "NodeUnschedulable"

    def events_to_register(self) -> Iterable[ClusterEvent]:
        return [ClusterEvent(EventResource.NODE, ActionType.ADD | ActionType.UPDATE_NODE_TAINT)]

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status | None:
        state.data[self.name] = any(t.tolerates(_TAINT) for t in pod.tolerations)
        return None

    def filter_nodes(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo],
                     statuses: dict[str, Status]) -> list[NodeInfo]:
        if state.data[self.name]:
            return nodes
        kept = [n for n in nodes if not n.unschedulable]
        return record_rejections(self.filter, state, pod, nodes, kept, statuses)

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        if node.unschedulable and not state.data[self.name]:
            return Status.unschedulable(ERR_REASON, plugin=self.name, resolvable=False)
        return None
