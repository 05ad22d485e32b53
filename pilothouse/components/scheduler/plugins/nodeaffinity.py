"""NodeAffinity: ``spec.nodeSelector`` and required/preferred node affinity (all operators, matchFields)."""

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
    default_normalize,
)
from pilothouse.components.scheduler.nodeinfo import NodeInfo, PodInfo

__all__ = ["ERR_REASON_POD", "NodeAffinity"]

ERR_REASON_POD = "node(s) didn't match Pod's node affinity/selector"


class NodeAffinity(Plugin):
    name = "NodeAffinity"

    def events_to_register(self) -> Iterable[ClusterEvent]:
        return [ClusterEvent(EventResource.NODE, ActionType.ADD | ActionType.UPDATE_NODE_LABEL)]

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status | None:
        if not pod.node_selector and pod.node_affinity_required is None:
            return SKIP
        return None

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        labels = node.labels
        for key, wanted in pod.node_selector.items():
            if labels.get(key) != wanted:
                return Status.unschedulable(ERR_REASON_POD, plugin=self.name, resolvable=False)
        required = pod.node_affinity_required
        if required is not None and not required.matches(node):
            return Status.unschedulable(ERR_REASON_POD, plugin=self.name, resolvable=False)
        return None

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> Status | None:
        return None if pod.node_affinity_preferred else SKIP

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        return sum(weight for weight, term in pod.node_affinity_preferred if term.matches(node))

    def normalize(self, state: CycleState, pod: PodInfo, scores: list[int]) -> None:
        default_normalize(scores)
