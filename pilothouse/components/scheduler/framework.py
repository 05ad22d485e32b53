"""The scheduling framework's vocabulary: statuses, cycle state, cluster events, plugin interfaces.

Mirrors kube-scheduler's ``pkg/scheduler/framework``: every policy is a small plugin that implements
some extension points (PreFilter, Filter, PreScore, Score, NormalizeScore) and reports outcomes as a
:class:`Status` with a :class:`Code` rather than raising, so the cycle can aggregate per-node reasons
into the "0/N nodes are available: ..." message. Plugins never build API clients: they get a
:class:`Handle` (the node-info snapshot, namespace labels) from the framework.

For speed, a Filter returns ``None`` for success (no Status object per feasible node) and a Score
plugin is called once per node; PreFilter/PreScore may return ``Code.SKIP`` so that a plugin with
nothing to do for this pod is not called at all for any node.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from pilothouse.components.scheduler.nodeinfo import NodeInfo, PodInfo

__all__ = [
    "MAX_NODE_SCORE",
    "ActionType",
    "BatchFilterPlugin",
    "BatchScorePlugin",
    "ClusterEvent",
    "Code",
    "CycleState",
    "EventResource",
    "FilterPlugin",
    "FitsOnNode",
    "Handle",
    "NormalizeScorePlugin",
    "Plugin",
    "PostFilterPlugin",
    "PostFilterResult",
    "PreFilterPlugin",
    "PreScorePlugin",
    "ScorePlugin",
    "Status",
    "default_normalize",
    "fit_error_message",
    "reason_histogram",
    "record_rejections",
]

MAX_NODE_SCORE = 100


class Code(enum.IntEnum):
    SUCCESS = 0
    ERROR = 1
    #: The pod does not fit, but preempting pods might help.
    UNSCHEDULABLE = 2
    #: The pod does not fit and preemption cannot help (node labels, taints, ...).
    UNSCHEDULABLE_AND_UNRESOLVABLE = 3
    WAIT = 4
    SKIP = 5


@dataclass(slots=True)
class Status:
    code: Code = Code.SUCCESS
    reasons: tuple[str, ...] = ()
    plugin: str = ""

    @classmethod
    def unschedulable(cls, *reasons: str, plugin: str = "", resolvable: bool = True) -> Status:
        code = Code.UNSCHEDULABLE if resolvable else Code.UNSCHEDULABLE_AND_UNRESOLVABLE
        return cls(code, reasons, plugin)

    @property
    def message(self) -> str:
        return ", ".join(self.reasons)

    def is_success(self) -> bool:
        return self.code == Code.SUCCESS

    def is_skip(self) -> bool:
        return self.code == Code.SKIP

    def is_rejected(self) -> bool:
        return self.code in (Code.UNSCHEDULABLE, Code.UNSCHEDULABLE_AND_UNRESOLVABLE)


SKIP = Status(Code.SKIP)


class CycleState:
    """Per-pod, per-cycle scratch space where PreFilter/PreScore leave data for Filter/Score."""

    __slots__ = ("data", "skip_filter", "skip_score")

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.skip_filter: set[str] = set()
        self.skip_score: set[str] = set()

    def read(self, key: str) -> Any:
        return self.data[key]

    def write(self, key: str, value: Any) -> None:
        self.data[key] = value


class EventResource(enum.Enum):
    NODE = "Node"
    #: Pods bound to a node (what kube-scheduler calls ``Pod``/``AssignedPod``).
    ASSIGNED_POD = "AssignedPod"
    NAMESPACE = "Namespace"
    #: Synthetic: every kind of change (used for the periodic flush and for unknown failures).
    WILDCARD = "*"


class ActionType(enum.IntFlag):
    ADD = 1
    DELETE = 2
    UPDATE_NODE_ALLOCATABLE = 4
    UPDATE_NODE_LABEL = 8
    UPDATE_NODE_TAINT = 16  # spec.taints and spec.unschedulable, as in kube-scheduler
    UPDATE_NODE_CONDITION = 32
    UPDATE_NODE_ANNOTATION = 64
    UPDATE_POD_LABEL = 128
    UPDATE_POD_SCALE_DOWN = 256
    UPDATE_POD_OTHER = 512
    UPDATE = (UPDATE_NODE_ALLOCATABLE | UPDATE_NODE_LABEL | UPDATE_NODE_TAINT | UPDATE_NODE_CONDITION
              | UPDATE_NODE_ANNOTATION | UPDATE_POD_LABEL | UPDATE_POD_SCALE_DOWN | UPDATE_POD_OTHER)
    ALL = ADD | DELETE | UPDATE


@dataclass(frozen=True, slots=True)
class ClusterEvent:
    resource: EventResource
    action: ActionType
    label: str = ""

    def matches(self, incoming: ClusterEvent) -> bool:
        """Whether ``incoming`` (a concrete event) is covered by this registration."""
        if self.resource is EventResource.WILDCARD or incoming.resource is EventResource.WILDCARD:
            return True
        return self.resource is incoming.resource and bool(self.action & incoming.action)


class Handle(Protocol):
    """What the framework gives plugins: read access to the cluster as the scheduler sees it."""

    def node_infos(self) -> list[NodeInfo]: ...

    def node_info(self, name: str) -> NodeInfo | None: ...

    def have_pods_with_affinity(self) -> list[NodeInfo]: ...

    def have_pods_with_required_anti_affinity(self) -> list[NodeInfo]: ...

    def namespace_labels(self, namespace: str) -> Mapping[str, str]: ...

    def image_node_count(self, image: str) -> int: ...

    def disruption_budgets(self) -> list[dict[str, Any]]: ...


class Plugin:
    """Base of every plugin: a name and the cluster events that may make a rejected pod fit."""

    name = ""

    def __init__(self, handle: Handle, args: Mapping[str, Any] | None = None) -> None:
        self.handle = handle
        self.args = dict(args or {})

    def events_to_register(self) -> Iterable[ClusterEvent]:
        return ()


@runtime_checkable
class PreFilterPlugin(Protocol):
    name: str

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status | None: ...


@runtime_checkable
class FilterPlugin(Protocol):
    name: str

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None: ...


@runtime_checkable
class BatchFilterPlugin(Protocol):
    """Optional fast path of a Filter plugin: prune a list of nodes in one call.

    Must keep the nodes that ``filter`` accepts, in order, and record a Status for each rejected
    node in ``statuses`` (node name -> Status), exactly as calling ``filter`` per node would.
    """

    name: str

    def filter_nodes(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo],
                     statuses: dict[str, Status]) -> list[NodeInfo]: ...


@runtime_checkable
class PreScorePlugin(Protocol):
    name: str

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> Status | None: ...


@runtime_checkable
class ScorePlugin(Protocol):
    name: str

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int: ...


@runtime_checkable
class BatchScorePlugin(Protocol):
    """Optional fast path of a Score plugin: the scores of many nodes in one call."""

    name: str

    def score_nodes(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> list[int]: ...


@runtime_checkable
class NormalizeScorePlugin(Protocol):
    """Optional step of a Score plugin (kube-scheduler's ScoreExtensions.NormalizeScore)."""

    name: str

    def normalize(self, state: CycleState, pod: PodInfo, scores: list[int]) -> None: ...


def default_normalize(scores: list[int], reverse: bool = False) -> None:
    """kube-scheduler's ``DefaultNormalizeScore``: scale to 0..100 by the maximum, optionally reversed."""
    highest = max(scores, default=0)
    if highest == 0:
        if reverse:
            scores[:] = [MAX_NODE_SCORE] * len(scores)
        return
    for i, score in enumerate(scores):
        score = MAX_NODE_SCORE * score // highest
        scores[i] = MAX_NODE_SCORE - score if reverse else score


def record_rejections(check: Callable[[CycleState, PodInfo, NodeInfo], Status | None], state: CycleState,
                      pod: PodInfo, nodes: list[NodeInfo], kept: list[NodeInfo],
                      statuses: dict[str, Status]) -> list[NodeInfo]:
    """For batch filters: the per-node Status of every node a fast comprehension dropped."""
    if len(kept) != len(nodes):
        kept_ids = {id(n) for n in kept}
        for node in nodes:
            if id(node) not in kept_ids:
                status = check(state, pod, node)
                if status is not None:
                    statuses[node.name] = status
    return kept


#: Whether the pod being scheduled passes this profile's filters on a node (None) or why not: the
#: cycle's own filters with its PreFilter state, for PostFilter plugins' what-if node copies.
FitsOnNode = Callable[["NodeInfo"], Status | None]


@dataclass(frozen=True, slots=True)
class PostFilterResult:
    """What a PostFilter decided: the node to nominate ("" clears a nomination) and pods to evict."""

    nominated_node: str = ""
    victims: tuple[PodInfo, ...] = ()


@runtime_checkable
class PostFilterPlugin(Protocol):
    """Runs when no node fits (kube-scheduler's PostFilter, e.g. preemption)."""

    name: str

    def post_filter(self, state: CycleState, pod: PodInfo, statuses: Mapping[str, Status],
                    fits: FitsOnNode) -> tuple[PostFilterResult | None, Status]: ...


def reason_histogram(statuses: Mapping[str, Status] | list[Status]) -> str:
    """"3 Insufficient cpu, 1 node(s) had untolerated taint ..." as kube-scheduler counts reasons."""
    reasons: dict[str, int] = {}
    for status in statuses.values() if isinstance(statuses, Mapping) else statuses:
        for reason in status.reasons:
            reasons[reason] = reasons.get(reason, 0) + 1
    return ", ".join(sorted(f"{n} {reason}" for reason, n in reasons.items()))


def fit_error_message(num_nodes: int, diagnosis: Diagnosis | Mapping[str, Status]) -> str:
    """``FitError.Error()`` of kube-scheduler 1.32 (from a diagnosis, or bare per-node statuses)."""
    message = f"0/{num_nodes} nodes are available:"
    if not isinstance(diagnosis, Diagnosis):
        return f"{message} {reason_histogram(diagnosis)}."
    if diagnosis.pre_filter_msg:
        message += f" {diagnosis.pre_filter_msg}."
    else:
        histogram = reason_histogram(diagnosis.node_statuses)
        if histogram:
            message += f" {histogram}."
    if diagnosis.post_filter_msg:
        message += f" {diagnosis.post_filter_msg}"
    return message


PluginFactory = Callable[[Handle, Mapping[str, Any]], Plugin]


@dataclass
class Diagnosis:
    """Why a pod fits nowhere: per-node statuses and the plugins that rejected it."""

    node_statuses: dict[str, Status] = field(default_factory=dict)
    unschedulable_plugins: set[str] = field(default_factory=set)
    pre_filter_msg: str = ""
    post_filter_msg: str = ""
