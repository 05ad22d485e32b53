"""NodeName: a pod that names its node (``spec.nodeName``) fits only there."""

from __future__ import annotations

from collections.abc import Iterable

from pilothouse.components.scheduler.framework import (
    SKIP,
    ActionType,
    ClusterEvent,
    CycleState,
    EventResource,
    Plugin,
    Status,
)
from pilothouse.components.scheduler.nodeinfo import NodeInfo, PodInfo

__all__ = ["ERR_REASON", "NodeName"]

ERR_REASON = "node(s) didn't match the requested node name"


class NodeName(Plugin):
    name = "NodeName"

    def events_to_register(self) -> Iterable[ClusterEvent]:
        return [ClusterEvent(EventResource.NODE, ActionType.ADD)]

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status | None:
        return None if pod.node_name else SKIP

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        if pod.node_name and pod.node_name != node.name:
            return Status.unschedulable(ERR_REASON, plugin=self.name, resolvable=False)
        return None
