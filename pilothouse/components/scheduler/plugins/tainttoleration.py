"""TaintToleration: NoSchedule/NoExecute taints filter, PreferNoSchedule taints lower the score.

Node readiness is enforced here too: a node whose Ready condition is not True carries the
``node.kubernetes.io/not-ready`` (or ``unreachable``) NoSchedule taint that the node lifecycle
controller would add (see ``nodeinfo._node_ready_taint``), tolerable like any other taint.
"""

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
    record_rejections,
)
from pilothouse.components.scheduler.nodeinfo import NodeInfo, PodInfo, Toleration

__all__ = ["TaintToleration"]

_FILTER_EFFECTS = ("NoSchedule", "NoExecute")


class TaintToleration(Plugin):
    name = "TaintToleration"

    def events_to_register(self) -> Iterable[ClusterEvent]:
        return [ClusterEvent(EventResource.NODE,
                             ActionType.ADD | ActionType.UPDATE_NODE_TAINT | ActionType.UPDATE_NODE_CONDITION)]

    def filter_nodes(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo],
                     statuses: dict[str, Status]) -> list[NodeInfo]:
        check = self.filter
        kept = [n for n in nodes if not n.taints or check(state, pod, n) is None]
        return record_rejections(check, state, pod, nodes, kept, statuses)

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        if not node.taints:
            return None
        tolerations = pod.tolerations
        for taint in node.taints:
            if taint.effect not in _FILTER_EFFECTS:
                continue
            if not any(t.tolerates(taint) for t in tolerations):
                return Status.unschedulable(f"node(s) had untolerated taint {{{taint.key}: {taint.value}}}",
                                            plugin=self.name, resolvable=False)
        return None

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> Status | None:
        if not any(t.effect == "PreferNoSchedule" for n in nodes for t in n.taints):
            return SKIP
        state.data["PreScore" + self.name] = [t for t in pod.tolerations
                                               if t.effect in ("", "PreferNoSchedule")]
        return None

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        tolerations: list[Toleration] = state.data["PreScore" + self.name]
        return sum(1 for taint in node.taints if taint.effect == "PreferNoSchedule"
                   and not any(t.tolerates(taint) for t in tolerations))

    def normalize(self, state: CycleState, pod: PodInfo, scores: list[int]) -> None:
        default_normalize(scores, reverse=True)
