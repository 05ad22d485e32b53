"""NodePorts: a pod's ``hostPort`` must be free on the node (0.0.0.0 conflicts with every IP)."""

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

__all__ = ["ERR_REASON", "NodePorts", "ports_conflict"]

ERR_REASON = "node(s) didn't have free ports for the requested pod ports"


def ports_conflict(used: dict[tuple[str, str, int], int], wanted: tuple[tuple[str, str, int], ...]) -> bool:
    for ip, protocol, port in wanted:
        for used_ip, used_protocol, used_port in used:
            if used_port == port and used_protocol == protocol and (
                    ip == used_ip or ip == "0.0.0.0" or used_ip == "0.0.0.0"):
                return True
    return False


class NodePorts(Plugin):
    name = "NodePorts"

    def events_to_register(self) -> Iterable[ClusterEvent]:
        return [ClusterEvent(EventResource.ASSIGNED_POD, ActionType.DELETE),
                ClusterEvent(EventResource.NODE, ActionType.ADD | ActionType.UPDATE)]

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status | None:
        return None if pod.host_ports else SKIP

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        if node.used_ports and ports_conflict(node.used_ports, pod.host_ports):
            return Status.unschedulable(ERR_REASON, plugin=self.name)
        return None
