"""PodTopologySpread: ``topologySpreadConstraints`` (maxSkew, DoNotSchedule/ScheduleAnyway, minDomains).

Filter (DoNotSchedule): placing the pod in the node's domain must not make that domain exceed the
least-loaded eligible domain by more than maxSkew (the minimum is 0 when fewer than minDomains
domains exist). Score (ScheduleAnyway): fewer matching pods in the node's domain scores higher,
weighted by log(domains + 2), as kube-scheduler. Kubernetes' cluster-level *default* constraints
(for pods owned by Services/ReplicaSets) are not applied here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pilothouse.components.scheduler.framework import (
    MAX_NODE_SCORE,
    SKIP,
    ActionType,
    ClusterEvent,
    CycleState,
    EventResource,
    Plugin,
    Status,
)
from pilothouse.components.scheduler.nodeinfo import NodeInfo, PodInfo
from pilothouse.machinery.selectors import LabelSelector, Requirement, selector_from_object

__all__ = ["ERR_REASON_CONSTRAINTS", "ERR_REASON_NODE_LABEL", "PodTopologySpread"]

ERR_REASON_CONSTRAINTS = "node(s) didn't match pod topology spread constraints"
ERR_REASON_NODE_LABEL = ERR_REASON_CONSTRAINTS + " (missing required label)"
HOSTNAME = "kubernetes.io/hostname"


@dataclass(frozen=True, slots=True)
class Constraint:
    max_skew: int
    topology_key: str
    selector: LabelSelector
    min_domains: int
    honor_affinity: bool
    honor_taints: bool


def _constraints(pod: PodInfo, action: str) -> list[Constraint]:
    out = []
    for raw in pod.spread_constraints:
        if (raw.get("whenUnsatisfiable") or "DoNotSchedule") != action:
            continue
        selector = selector_from_object(raw.get("labelSelector"))
        keys = [Requirement(k, "in", (pod.labels[k],)) for k in raw.get("matchLabelKeys") or () if k in pod.labels]
        if keys and not selector.nothing:
            selector = LabelSelector(selector.requirements + tuple(keys))
        out.append(Constraint(int(raw.get("maxSkew") or 1), raw.get("topologyKey") or "", selector,
                              int(raw.get("minDomains") or 1),
                              (raw.get("nodeAffinityPolicy") or "Honor") == "Honor",
                              (raw.get("nodeTaintsPolicy") or "Ignore") == "Honor"))
    return out


def _count_matching(node: NodeInfo, selector: LabelSelector, namespace: str) -> int:
    return sum(1 for p in node.pods.values()
               if p.namespace == namespace and not p.deleting and selector.matches(p.labels))


def _node_eligible(pod: PodInfo, node: NodeInfo, constraint: Constraint) -> bool:
    if constraint.honor_affinity:
        for key, wanted in pod.node_selector.items():
            if node.labels.get(key) != wanted:
                return False
        if pod.node_affinity_required is not None and not pod.node_affinity_required.matches(node):
            return False
    if constraint.honor_taints:
        for taint in node.taints:
            if taint.effect in ("NoSchedule", "NoExecute") and not any(t.tolerates(taint) for t in pod.tolerations):
                return False
    return True


class PodTopologySpread(Plugin):
    name = "PodTopologySpread"

    def __init__(self, handle: Any, args: Mapping[str, Any] | None = None) -> None:
        super().__init__(handle, args)

    def events_to_register(self) -> Iterable[ClusterEvent]:
        return [ClusterEvent(EventResource.ASSIGNED_POD,
                             ActionType.ADD | ActionType.UPDATE_POD_LABEL | ActionType.DELETE),
                ClusterEvent(EventResource.NODE, ActionType.ADD | ActionType.DELETE | ActionType.UPDATE_NODE_LABEL
                             | ActionType.UPDATE_NODE_TAINT)]

    # ------------------------------------------------------------ filter

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status | None:
        if not pod.spread_constraints:
            return SKIP
        constraints = _constraints(pod, "DoNotSchedule")
        if not constraints:
            return SKIP
        counts: list[dict[str, int]] = [{} for _ in constraints]
        for node in self.handle.node_infos():
            labels = node.labels
            if not all(c.topology_key in labels for c in constraints):
                continue
            for i, c in enumerate(constraints):
                if not _node_eligible(pod, node, c):
                    continue
                value = labels[c.topology_key]
                counts[i][value] = counts[i].get(value, 0) + _count_matching(node, c.selector, pod.namespace)
        minimums = []
        for i, c in enumerate(constraints):
            domains = counts[i]
            minimums.append(0 if len(domains) < c.min_domains else min(domains.values(), default=0))
        self_match = [1 if c.selector.matches(pod.labels) else 0 for c in constraints]
        state.data[self.name] = (constraints, counts, minimums, self_match)
        return None

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        constraints, counts, minimums, self_match = state.data[self.name]
        for i, c in enumerate(constraints):
            value = node.labels.get(c.topology_key)
            if value is None:
                return Status.unschedulable(ERR_REASON_NODE_LABEL, plugin=self.name, resolvable=False)
            skew = counts[i].get(value, 0) + self_match[i] - minimums[i]
            if skew > c.max_skew:
                return Status.unschedulable(ERR_REASON_CONSTRAINTS, plugin=self.name)
        return None

    # ------------------------------------------------------------- score

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> Status | None:
        if not pod.spread_constraints:
            return SKIP
        constraints = _constraints(pod, "ScheduleAnyway")
        if not constraints:
            return SKIP
        ignored: set[str] = set()
        values: list[dict[str, int]] = [{} for _ in constraints]
        for node in nodes:
            if not all(c.topology_key in node.labels for c in constraints):
                ignored.add(node.name)
                continue
            for i, c in enumerate(constraints):
                if c.topology_key != HOSTNAME:
                    values[i].setdefault(node.labels[c.topology_key], 0)
        weights = []
        for i, c in enumerate(constraints):
            size = len(nodes) - len(ignored) if c.topology_key == HOSTNAME else len(values[i])
            weights.append(math.log(size + 2))
        for node in self.handle.node_infos():
            for i, c in enumerate(constraints):
                if c.topology_key == HOSTNAME or not _node_eligible(pod, node, c):
                    continue
                value = node.labels.get(c.topology_key)
                if value is not None and value in values[i]:
                    values[i][value] += _count_matching(node, c.selector, pod.namespace)
        state.data["PreScore" + self.name] = (constraints, values, weights, ignored)
        return None

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        constraints, values, weights, ignored = state.data["PreScore" + self.name]
        if node.name in ignored:
            return -1
        score = 0.0
        for i, c in enumerate(constraints):
            value = node.labels.get(c.topology_key)
            if value is None:
                continue
            if c.topology_key == HOSTNAME:
                count = _count_matching(node, c.selector, pod.namespace)
            else:
                count = values[i].get(value, 0)
            score += count * weights[i] + (c.max_skew - 1)
        return math.floor(score + 0.5)  # Go math.Round: halves away from zero

    def normalize(self, state: CycleState, pod: PodInfo, scores: list[int]) -> None:
        valid = [s for s in scores if s >= 0]
        if not valid:
            scores[:] = [0] * len(scores)
            return
        low, high = min(valid), max(valid)
        for i, score in enumerate(scores):
            if score < 0:
                scores[i] = 0
            elif high == 0:
                scores[i] = MAX_NODE_SCORE
            else:
                scores[i] = MAX_NODE_SCORE * (high + low - score) // high
