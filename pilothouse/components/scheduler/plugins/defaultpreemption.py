"""DefaultPreemption: the PostFilter that makes room for a pod by evicting lower-priority ones.

kube-scheduler 1.32's ``plugins/defaultpreemption`` with ``framework/preemption``'s Evaluator: when a pod
fits nowhere, (1) check it may preempt (``preemptionPolicy: Never``, or victims it already chose still
terminating on its nominated node, say no); (2) on the nodes a Filter rejected for a *resolvable* reason,
dry-run: take away every lower-priority pod, check the pod fits, then give back as many as still
leave room, most important first (PodDisruptionBudget-violating ones before the others), from a random
offset until enough candidates are found; (3) pick one node by upstream's criteria (fewest PDB
violations, lowest highest-victim priority, lowest priority sum, fewest victims, latest start of the
most important victims). This module only decides: the scheduler writes the nomination, the victims'
``DisruptionTarget`` condition, their deletion and the ``Preempted`` events (it owns the client).

Known difference: the dry run does not re-run PreFilter extensions (AddPod/RemovePod), so topology
spread and inter-pod affinity counts still include the victims, and pods nominated to a node are not
counted against it; both only make preemption more conservative here.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pilothouse.components.scheduler.framework import (
    Code,
    CycleState,
    FitsOnNode,
    Handle,
    Plugin,
    PostFilterResult,
    Status,
    fit_error_message,
)
from pilothouse.components.scheduler.metrics import PREEMPTION_ATTEMPTS, PREEMPTION_VICTIMS
from pilothouse.components.scheduler.nodeinfo import NodeInfo, PodInfo
from pilothouse.machinery import meta
from pilothouse.machinery.meta import Object
from pilothouse.machinery.selectors import selector_from_object

__all__ = ["NO_PREEMPTION_VICTIMS", "PREEMPTION_NOT_HELPFUL", "Candidate", "DefaultPreemption",
           "terminating_by_preemption"]

PREEMPTION_NOT_HELPFUL = "Preemption is not helpful for scheduling"
NO_PREEMPTION_VICTIMS = "No preemption victims found for incoming pod"
#: ``v1.PodReasonPreemptionByScheduler``, the DisruptionTarget reason the scheduler writes on victims.
PREEMPTION_BY_SCHEDULER = "PreemptionByScheduler"
_INT32_SHIFT = 2 ** 31  # upstream adds MaxInt32+1 to each priority so negative ones sum sensibly



@dataclass(frozen=True, slots=True)
class Candidate:
    node: str
    victims: tuple[PodInfo, ...]
    pdb_violations: int


def terminating_by_preemption(pod: PodInfo) -> bool:
    """``podTerminatingByPreemption``: being deleted, with the scheduler's DisruptionTarget condition."""
    if not pod.deleting:
        return False
    return any(c.get("type") == "DisruptionTarget" and c.get("reason") == PREEMPTION_BY_SCHEDULER
               for c in (pod.pod.get("status") or {}).get("conditions") or ())


def _start_time(pod: PodInfo) -> float:
    """``util.GetPodStartTime``: status.startTime, or now for a pod not started yet."""
    started = meta.parse_time((pod.pod.get("status") or {}).get("startTime"))
    return (started or datetime.now(UTC)).timestamp()


def _importance(pod: PodInfo) -> tuple[int, float]:
    """Sort key, most important first (``util.MoreImportantPod``): higher priority, then started earlier."""
    return -pod.priority, _start_time(pod)


def split_by_budget(pods: Sequence[PodInfo], budgets: Sequence[Object]) -> tuple[list[PodInfo], list[PodInfo]]:
    """``filterPodsWithPDBViolation``: (violating, non-violating), each keeping ``pods``' order.

    A budget allows ``status.disruptionsAllowed`` evictions of the pods its selector matches in its
    namespace (a nil or empty selector matches nothing; pods already in ``disruptedPods`` are not
    counted again); every pod taken past that allowance violates it.
    """
    allowed = [int((b.get("status") or {}).get("disruptionsAllowed") or 0) for b in budgets]
    selectors = [selector_from_object((b.get("spec") or {}).get("selector") or None) for b in budgets]
    violating: list[PodInfo] = []
    non_violating: list[PodInfo] = []
    for pod in pods:
        violated = False
        if pod.labels:
            for i, budget in enumerate(budgets):
                metadata, status = budget.get("metadata") or {}, budget.get("status") or {}
                selector = selectors[i]
                if metadata.get("namespace") != pod.namespace or selector.nothing or not selector.requirements:
                    continue
                if not selector.matches(pod.labels) or pod.name in (status.get("disruptedPods") or {}):
                    continue
                allowed[i] -= 1
                if allowed[i] < 0:
                    violated = True
        (violating if violated else non_violating).append(pod)
    return violating, non_violating


def pick_one_node(candidates: Sequence[Candidate]) -> Candidate:
    """``pickOneNodeForPreemption``: the first candidate best by upstream's ordered criteria."""
    def key(candidate: Candidate) -> tuple[float, ...]:
        victims = candidate.victims
        if not victims:
            return (-1,)  # a node that needs no victims at all (they left meanwhile) wins at once
        highest = victims[0].priority
        earliest = min(_start_time(p) for p in victims if p.priority == highest)
        return (candidate.pdb_violations, highest, sum(p.priority + _INT32_SHIFT for p in victims),
                len(victims), -earliest)
    return min(candidates, key=key)


class DefaultPreemption(Plugin):
    name = "DefaultPreemption"

    def __init__(self, handle: Handle, args: Mapping[str, Any] | None = None) -> None:
        super().__init__(handle, args)
        # DefaultPreemptionArgs' defaults
        self.min_candidate_percentage = int(self.args.get("minCandidateNodesPercentage", 10))
        self.min_candidate_absolute = int(self.args.get("minCandidateNodesAbsolute", 100))
        self._random = random.Random(self.args.get("seed"))

    def post_filter(self, state: CycleState, pod: PodInfo, statuses: Mapping[str, Status],
                    fits: FitsOnNode) -> tuple[PostFilterResult | None, Status]:
        PREEMPTION_ATTEMPTS.inc()
        result, status = self._preempt(pod, statuses, fits)
        if result is not None and result.nominated_node:
            PREEMPTION_VICTIMS.observe(len(result.victims))
        if status.reasons:
            return result, Status(status.code, ("preemption: " + status.message,), self.name)
        return result, status

    def eligible(self, pod: PodInfo, statuses: Mapping[str, Status]) -> str:
        """``PodEligibleToPreemptOthers``: "" when it may preempt, else why not."""
        spec, status = pod.pod.get("spec") or {}, pod.pod.get("status") or {}
        if spec.get("preemptionPolicy") == "Never":
            return "not eligible due to preemptionPolicy=Never."
        nominated = status.get("nominatedNodeName") or ""
        if nominated:
            seen = statuses.get(nominated)
            if seen is not None and seen.code == Code.UNSCHEDULABLE_AND_UNRESOLVABLE:
                return ""  # the nominated node cannot work any more: preempt elsewhere
            info = self.handle.node_info(nominated)
            if info is not None and any(p.priority < pod.priority and terminating_by_preemption(p)
                                        for p in info.pods.values()):
                return "not eligible due to a terminating pod on the nominated node."
        return ""

    def _preempt(self, pod: PodInfo, statuses: Mapping[str, Status],
                 fits: FitsOnNode) -> tuple[PostFilterResult | None, Status]:
        refusal = self.eligible(pod, statuses)
        if refusal:
            return None, Status.unschedulable(refusal)
        nodes = self.handle.node_infos()
        candidates, node_statuses = self.find_candidates(pod, nodes, statuses, fits)
        if not candidates:
            # No node helps: the pod's nomination (if any) is cleared, as upstream's empty nominated node.
            return PostFilterResult(""), Status.unschedulable(fit_error_message(len(nodes), node_statuses))
        best = pick_one_node(candidates)
        return PostFilterResult(best.node, best.victims), Status()

    def _num_candidates(self, num_nodes: int) -> int:
        wanted = max(num_nodes * self.min_candidate_percentage // 100, self.min_candidate_absolute)
        return min(wanted, num_nodes)

    def find_candidates(self, pod: PodInfo, nodes: Sequence[NodeInfo], statuses: Mapping[str, Status],
                        fits: FitsOnNode) -> tuple[list[Candidate], dict[str, Status]]:
        """``findCandidates`` + ``DryRunPreemption``: candidates, and each node's reason when none."""
        not_helpful = Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, (PREEMPTION_NOT_HELPFUL,))
        node_statuses: dict[str, Status] = {}
        potential: list[NodeInfo] = []
        for node in nodes:
            seen = statuses.get(node.name)
            if seen is not None and seen.code == Code.UNSCHEDULABLE:
                potential.append(node)
            else:
                node_statuses[node.name] = not_helpful
        if not potential:
            return [], node_statuses
        offset = self._random.randrange(len(potential))
        wanted = self._num_candidates(len(potential))
        budgets = self.handle.disruption_budgets()
        non_violating: list[Candidate] = []
        violating: list[Candidate] = []
        for node in potential[offset:] + potential[:offset]:
            victims, violations, rejected = self.select_victims(pod, node, budgets, fits)
            if rejected is not None:
                node_statuses[node.name] = rejected
                continue
            (violating if violations else non_violating).append(Candidate(node.name, tuple(victims), violations))
            if non_violating and len(non_violating) + len(violating) >= wanted:
                break
        return non_violating + violating, node_statuses

    def select_victims(self, pod: PodInfo, node: NodeInfo, budgets: Sequence[Object],
                       fits: FitsOnNode) -> tuple[list[PodInfo], int, Status | None]:
        """``SelectVictimsOnNode``: the fewest lower-priority pods whose removal lets ``pod`` fit."""
        assert node.node is not None  # node_infos() holds only nodes that exist
        trial = NodeInfo(node.name, node.node)
        potential: list[PodInfo] = []
        for other in node.pods.values():
            if other.priority < pod.priority:
                potential.append(other)
            else:
                trial.add_pod(other)
        if not potential:
            return [], 0, Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, (NO_PREEMPTION_VICTIMS,))
        rejected = fits(trial)
        if rejected is not None:
            return [], 0, rejected
        potential.sort(key=_importance)
        violating, non_violating = split_by_budget(potential, budgets)
        victims: list[PodInfo] = []

        def reprieve(other: PodInfo) -> bool:
            trial.add_pod(other)
            if fits(trial) is None:
                return True
            trial.remove_pod(other.key)
            victims.append(other)
            return False

        violations = sum(1 for other in violating if not reprieve(other))
        for other in non_violating:
            reprieve(other)
        if violating and non_violating:
            victims.sort(key=_importance)
        return victims, violations, None
