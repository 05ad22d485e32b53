"""One scheduling profile at run time: PreFilter, Filter (sampled), PreScore, Score, select host.

This is kube-scheduler's ``frameworkImpl`` + ``schedulePod``: plugins whose PreFilter/PreScore says
Skip are left out for this pod; filtering starts at a rotating offset and stops once
``percentageOfNodesToScore`` (adaptive: 50% - nodes/125, at least 5% and at least 100 nodes) feasible
nodes were found; each Filter stops at the first plugin that rejects a node. When nothing fits, the
per-node statuses become the "0/N nodes are available: ..." message.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pilothouse.components.scheduler.framework import (
    BatchFilterPlugin,
    BatchScorePlugin,
    ClusterEvent,
    Code,
    CycleState,
    Diagnosis,
    FilterPlugin,
    Handle,
    NormalizeScorePlugin,
    Plugin,
    PostFilterPlugin,
    PreFilterPlugin,
    PreScorePlugin,
    ScorePlugin,
    Status,
    fit_error_message,
)
from pilothouse.components.scheduler.nodeinfo import NodeInfo, PodInfo
from pilothouse.components.scheduler.plugins import DEFAULT_FILTERS, DEFAULT_POST_FILTERS, DEFAULT_SCORES, REGISTRY

__all__ = ["Framework", "ScheduleResult", "fit_error_message", "num_feasible_nodes_to_find"]

MIN_FEASIBLE_NODES_TO_FIND = 100
MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND = 5
BASE_PERCENTAGE_OF_NODES_TO_SCORE = 50


def num_feasible_nodes_to_find(num_all_nodes: int, percentage: int = 0) -> int:
    """``numFeasibleNodesToFind``: how many feasible nodes are enough to stop filtering."""
    if num_all_nodes < MIN_FEASIBLE_NODES_TO_FIND:
        return num_all_nodes
    if percentage <= 0:
        percentage = BASE_PERCENTAGE_OF_NODES_TO_SCORE - num_all_nodes // 125
        percentage = max(percentage, MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND)
    if percentage >= 100:
        return num_all_nodes
    return max(num_all_nodes * percentage // 100, MIN_FEASIBLE_NODES_TO_FIND)


BatchFilter = Callable[[CycleState, PodInfo, list[NodeInfo], dict[str, Status]], list[NodeInfo]]


def _batch_filter(plugin: FilterPlugin) -> BatchFilter:
    """A plugin's ``filter_nodes`` if it has one, else its per-node ``filter`` in a loop."""
    if isinstance(plugin, BatchFilterPlugin):
        return plugin.filter_nodes
    check = plugin.filter
    name = plugin.name

    def run(state: CycleState, pod: PodInfo, nodes: list[NodeInfo], statuses: dict[str, Status]) -> list[NodeInfo]:
        out = []
        for node in nodes:
            status = check(state, pod, node)
            if status is None:
                out.append(node)
            else:
                status.plugin = status.plugin or name
                statuses[node.name] = status
        return out

    return run


@dataclass
class ScheduleResult:
    node: str | None
    evaluated: int = 0
    feasible: int = 0
    diagnosis: Diagnosis | None = None
    message: str = ""
    #: From a PostFilter (preemption): the node to write as ``status.nominatedNodeName`` ("" clears
    #: it, None leaves it), and the pods to evict to make room there.
    nominated_node: str | None = None
    victims: tuple[PodInfo, ...] = ()


@dataclass(frozen=True)
class _ScoreSteps:
    """One Score plugin's optional steps, looked up once instead of per scheduling cycle."""

    plugin: ScorePlugin
    weight: int
    pre_score: Callable[[CycleState, PodInfo, list[NodeInfo]], Status | None] | None
    batch: Callable[[CycleState, PodInfo, list[NodeInfo]], list[int]] | None
    normalize: Callable[[CycleState, PodInfo, list[int]], None] | None

    @classmethod
    def of(cls, plugin: ScorePlugin, weight: int) -> _ScoreSteps:
        return cls(plugin, weight,
                   plugin.pre_score if isinstance(plugin, PreScorePlugin) else None,
                   plugin.score_nodes if isinstance(plugin, BatchScorePlugin) else None,
                   plugin.normalize if isinstance(plugin, NormalizeScorePlugin) else None)


class Framework:
    def __init__(self, handle: Handle, *, filters: list[str] | None = None,
                 scores: Mapping[str, int] | None = None, post_filters: list[str] | None = None,
                 plugin_args: Mapping[str, Mapping[str, Any]] | None = None,
                 percentage_of_nodes_to_score: int = 0, seed: int | None = None) -> None:
        self.handle = handle
        filters = DEFAULT_FILTERS if filters is None else filters
        scores = DEFAULT_SCORES if scores is None else scores
        self.plugins: dict[str, Plugin] = {}
        post_filters = DEFAULT_POST_FILTERS if post_filters is None else post_filters
        for name in [*filters, *scores, *post_filters]:
            if name not in self.plugins:
                self.plugins[name] = REGISTRY[name](handle, (plugin_args or {}).get(name, {}))
        # Extension points by the plugin Protocols they implement (runtime-checkable), decided once.
        self.pre_filters = [p for n in filters if isinstance(p := self.plugins[n], PreFilterPlugin)]
        self.filters = [p for n in filters if isinstance(p := self.plugins[n], FilterPlugin)]
        self.scores = [(p, w) for n, w in scores.items() if isinstance(p := self.plugins[n], ScorePlugin)]
        self.post_filters = [p for n in post_filters if isinstance(p := self.plugins[n], PostFilterPlugin)]
        self._score_steps = [_ScoreSteps.of(p, w) for p, w in self.scores]
        self._batch_filters = {p.name: _batch_filter(p) for p in self.filters}
        self.percentage = percentage_of_nodes_to_score
        self.next_start_index = 0
        self._random = random.Random(seed)

    def events_by_plugin(self) -> dict[str, list[ClusterEvent]]:
        return {name: list(plugin.events_to_register()) for name, plugin in self.plugins.items()}

    # ------------------------------------------------------------- cycle

    def schedule(self, pod: PodInfo) -> ScheduleResult:
        nodes = self.handle.node_infos()
        diagnosis = Diagnosis()
        if not nodes:
            return ScheduleResult(None, diagnosis=diagnosis, message="no nodes available to schedule pods")
        state = CycleState()
        skip = state.skip_filter
        for plugin in self.pre_filters:
            status = plugin.pre_filter(state, pod)
            if status is None:
                continue
            if status.code == Code.SKIP:
                skip.add(plugin.name)
            elif status.code != Code.SUCCESS:
                status.plugin = plugin.name
                diagnosis.pre_filter_msg = status.message
                diagnosis.unschedulable_plugins.add(plugin.name)
                # every node carries the PreFilter's verdict (upstream's absent-nodes status)
                return self._failed(state, pod, diagnosis, {n.name: status for n in nodes}, [])
        filters = [self._batch_filters[p.name] for p in self.filters if p.name not in skip]
        nominated = self._nominated_node(state, pod, filters)
        if nominated is not None:
            return ScheduleResult(nominated, len(nodes), 1)
        feasible = self._find_feasible(state, pod, nodes, filters, diagnosis)
        if not feasible:
            return self._failed(state, pod, diagnosis, diagnosis.node_statuses, filters)
        if len(feasible) == 1:
            return ScheduleResult(feasible[0].name, len(nodes), 1)
        totals = self._score(state, pod, feasible)
        return ScheduleResult(self._select_host(feasible, totals), len(nodes), len(feasible))

    def _find_feasible(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo], filters: list[Any],
                       diagnosis: Diagnosis) -> list[NodeInfo]:
        """Run the filters over nodes from the rotating offset until enough are feasible.

        Nodes go through the plugins in chunks (each plugin prunes a whole chunk in one call, with a
        list comprehension where it can), the chunk being as large as the number of feasible nodes
        still wanted: when every node fits, one pass over exactly that many nodes suffices.
        """
        total = len(nodes)
        wanted = num_feasible_nodes_to_find(total, self.percentage)
        start = self.next_start_index % total
        order = nodes[start:] + nodes[:start] if start else nodes
        statuses = diagnosis.node_statuses
        feasible: list[NodeInfo] = []
        position = 0
        while position < total and len(feasible) < wanted:
            size = max(wanted - len(feasible), 32)
            survivors = order[position:position + size]
            position += len(survivors)
            for run in filters:
                survivors = run(state, pod, survivors, statuses)
                if not survivors:
                    break
            feasible.extend(survivors)
        if len(feasible) > wanted:
            del feasible[wanted:]
        diagnosis.unschedulable_plugins.update(s.plugin for s in statuses.values())
        self.next_start_index = (start + position) % total
        return feasible

    def _score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> list[int]:
        totals = [0] * len(nodes)
        for steps in self._score_steps:
            weight = steps.weight
            if steps.pre_score is not None:
                status = steps.pre_score(state, pod, nodes)
                if status is not None and status.code == Code.SKIP:
                    continue
            if steps.batch is not None:
                scores = steps.batch(state, pod, nodes)
            else:
                score = steps.plugin.score
                scores = [score(state, pod, node) for node in nodes]
            if steps.normalize is not None:
                steps.normalize(state, pod, scores)
            if weight == 1:
                totals = [a + b for a, b in zip(totals, scores, strict=True)]
            else:
                totals = [a + b * weight for a, b in zip(totals, scores, strict=True)]
        return totals

    def _select_host(self, nodes: list[NodeInfo], totals: list[int]) -> str:
        """Highest score; ties broken uniformly at random (reservoir sampling, as kube-scheduler)."""
        best = max(totals)
        ties = [i for i, t in enumerate(totals) if t == best]
        return nodes[ties[0] if len(ties) == 1 else self._random.choice(ties)].name

    @staticmethod
    def _fits(state: CycleState, pod: PodInfo, node: NodeInfo, filters: list[BatchFilter]) -> Status | None:
        """The cycle's filters on one node: None when the pod fits, else the first rejection."""
        statuses: dict[str, Status] = {}
        for run in filters:
            if not run(state, pod, [node], statuses):
                return statuses.get(node.name) or Status.unschedulable()
        return None

    def _nominated_node(self, state: CycleState, pod: PodInfo, filters: list[BatchFilter]) -> str | None:
        """``evaluateNominatedNode``: a pod that preempted tries the node it made room on first."""
        name = (pod.pod.get("status") or {}).get("nominatedNodeName")
        node = self.handle.node_info(name) if name else None
        if node is None or self._fits(state, pod, node, filters) is not None:
            return None
        return node.name

    def _failed(self, state: CycleState, pod: PodInfo, diagnosis: Diagnosis, statuses: Mapping[str, Status],
                filters: list[BatchFilter]) -> ScheduleResult:
        """No node fits: the PostFilter plugins (preemption) may nominate one and name victims."""
        num_nodes = len(self.handle.node_infos())
        result = ScheduleResult(None, num_nodes, 0, diagnosis)
        for plugin in self.post_filters:
            outcome, status = plugin.post_filter(state, pod, statuses,
                                                 lambda node: self._fits(state, pod, node, filters))
            if outcome is not None:
                result.nominated_node, result.victims = outcome.nominated_node, outcome.victims
            if status.is_success():
                break
            diagnosis.post_filter_msg = status.message
        result.message = fit_error_message(num_nodes, diagnosis)
        return result
