"""InterPodAffinity: required and preferred pod affinity/anti-affinity by topology key.

PreFilter counts, per (topologyKey, value), the existing pods the incoming pod's terms match and
the existing pods whose anti-affinity terms match the incoming pod; Filter then only looks up the
node's label values. A pod without affinity terms, in a cluster without pods with required
anti-affinity, skips the plugin entirely.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
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

__all__ = [
    "ERR_REASON_AFFINITY",
    "ERR_REASON_ANTI_AFFINITY",
    "ERR_REASON_EXISTING_ANTI_AFFINITY",
    "InterPodAffinity",
]

ERR_REASON_EXISTING_ANTI_AFFINITY = "node(s) didn't satisfy existing pods anti-affinity rules"
ERR_REASON_AFFINITY = "node(s) didn't match pod affinity rules"
ERR_REASON_ANTI_AFFINITY = "node(s) didn't match pod anti-affinity rules"

Counts = dict[tuple[str, str], int]


class InterPodAffinity(Plugin):
    name = "InterPodAffinity"

    def __init__(self, handle: Any, args: Mapping[str, Any] | None = None) -> None:
        super().__init__(handle, args)
        self.hard_pod_affinity_weight = int(self.args.get("hardPodAffinityWeight", 1))

    def events_to_register(self) -> Iterable[ClusterEvent]:
        return [ClusterEvent(EventResource.ASSIGNED_POD,
                             ActionType.ADD | ActionType.UPDATE_POD_LABEL | ActionType.DELETE),
                ClusterEvent(EventResource.NODE, ActionType.ADD | ActionType.UPDATE_NODE_LABEL),
                ClusterEvent(EventResource.NAMESPACE, ActionType.ADD | ActionType.UPDATE)]

    def _ns_labels(self) -> Mapping[str, Mapping[str, str]]:
        getter = getattr(self.handle, "all_namespace_labels", None)
        return getter() if getter is not None else {}

    # ------------------------------------------------------------ filter

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status | None:
        anti_nodes = self.handle.have_pods_with_required_anti_affinity()
        if not pod.required_affinity and not pod.required_anti_affinity and not anti_nodes:
            return SKIP
        ns_labels = self._ns_labels()
        existing_anti: Counts = {}
        for info in anti_nodes:
            for existing in info.pods_with_required_anti_affinity.values():
                if existing.key == pod.key:
                    continue
                for term in existing.required_anti_affinity:
                    value = info.labels.get(term.topology_key)
                    if value is not None and term.matches(pod, ns_labels):
                        pair = (term.topology_key, value)
                        existing_anti[pair] = existing_anti.get(pair, 0) + 1
        affinity: Counts = {}
        anti: Counts = {}
        if pod.required_affinity or pod.required_anti_affinity:
            for info in self.handle.node_infos():
                labels = info.labels
                for existing in info.pods.values():
                    if existing.key == pod.key:
                        continue
                    if pod.required_affinity and all(t.matches(existing, ns_labels) for t in pod.required_affinity):
                        for term in pod.required_affinity:
                            value = labels.get(term.topology_key)
                            if value is not None:
                                pair = (term.topology_key, value)
                                affinity[pair] = affinity.get(pair, 0) + 1
                    for term in pod.required_anti_affinity:
                        value = labels.get(term.topology_key)
                        if value is not None and term.matches(existing, ns_labels):
                            pair = (term.topology_key, value)
                            anti[pair] = anti.get(pair, 0) + 1
        state.data[self.name] = (existing_anti, affinity, anti,
                                 all(t.matches(pod, ns_labels) for t in pod.required_affinity))
        return None

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        existing_anti, affinity, anti, matches_self = state.data[self.name]
        labels = node.labels
        if pod.required_affinity:
            pods_exist = True
            for term in pod.required_affinity:
                value = labels.get(term.topology_key)
                if value is None or affinity.get((term.topology_key, value), 0) <= 0:
                    pods_exist = False
                    break
            # The first pod of a group that selects itself may go anywhere the keys exist.
            first_of_group = (not affinity and matches_self
                              and all(t.topology_key in labels for t in pod.required_affinity))
            if not pods_exist and not first_of_group:
                return Status.unschedulable(ERR_REASON_AFFINITY, plugin=self.name, resolvable=False)
        for term in pod.required_anti_affinity:
            value = labels.get(term.topology_key)
            if value is not None and anti.get((term.topology_key, value), 0) > 0:
                return Status.unschedulable(ERR_REASON_ANTI_AFFINITY, plugin=self.name)
        if existing_anti:
            for pair in labels.items():
                if existing_anti.get(pair, 0) > 0:
                    return Status.unschedulable(ERR_REASON_EXISTING_ANTI_AFFINITY, plugin=self.name)
        return None

    # ------------------------------------------------------------- score

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> Status | None:
        has_preferred = bool(pod.preferred_affinity or pod.preferred_anti_affinity)
        candidates = self.handle.node_infos() if has_preferred else self.handle.have_pods_with_affinity()
        if not candidates:
            return SKIP
        ns_labels = self._ns_labels()
        scores: dict[str, dict[str, int]] = {}

        def add(key: str, labels: Mapping[str, str], weight: int) -> None:
            value = labels.get(key)
            if value is not None and weight:
                per_key = scores.setdefault(key, {})
                per_key[value] = per_key.get(value, 0) + weight

        for info in candidates:
            labels = info.labels
            existing_pods = info.pods.values() if has_preferred else info.pods_with_affinity.values()
            for existing in existing_pods:
                if existing.key == pod.key:
                    continue
                for term in pod.preferred_affinity:
                    if term.matches(existing, ns_labels):
                        add(term.topology_key, labels, term.weight)
                for term in pod.preferred_anti_affinity:
                    if term.matches(existing, ns_labels):
                        add(term.topology_key, labels, -term.weight)
                if self.hard_pod_affinity_weight > 0:
                    for term in existing.required_affinity:
                        if term.matches(pod, ns_labels):
                            add(term.topology_key, labels, self.hard_pod_affinity_weight)
                for term in existing.preferred_affinity:
                    if term.matches(pod, ns_labels):
                        add(term.topology_key, labels, term.weight)
                for term in existing.preferred_anti_affinity:
                    if term.matches(pod, ns_labels):
                        add(term.topology_key, labels, -term.weight)
        if not scores:
            return SKIP
        state.data["PreScore" + self.name] = scores
        return None

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        scores: dict[str, dict[str, int]] = state.data["PreScore" + self.name]
        total = 0
        for key, per_value in scores.items():
            value = node.labels.get(key)
            if value is not None:
                total += per_value.get(value, 0)
        return total

    def normalize(self, state: CycleState, pod: PodInfo, scores: list[int]) -> None:
        if not scores:
            return
        low, high = min(scores), max(scores)
        spread = high - low
        for i, score in enumerate(scores):
            scores[i] = int(MAX_NODE_SCORE * ((score - low) / spread)) if spread > 0 else 0
