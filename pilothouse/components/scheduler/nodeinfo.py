"""What the scheduler knows about one pod and one node, precomputed once per object version.

A pod's requests, host ports, tolerations, node and pod affinity terms are parsed when the informer
delivers the pod (:class:`PodInfo`), never during a scheduling cycle; a node's allocatable, taints,
labels and the sum of its pods' requests are kept up to date incrementally (:class:`NodeInfo`), the
way kube-scheduler's ``framework.NodeInfo`` is. Plugins then only compare integers and dicts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pilothouse.components.scheduler.quantity import milli_value, value
from pilothouse.machinery.meta import Object
from pilothouse.machinery.selectors import LabelSelector, Requirement, selector_from_object

__all__ = [
    "DEFAULT_MEMORY_REQUEST",
    "DEFAULT_MILLI_CPU_REQUEST",
    "AffinityTerm",
    "NodeInfo",
    "NodeSelector",
    "PodInfo",
    "Taint",
    "Toleration",
    "pod_requests",
]


#: What the scheduler assumes a container without requests uses, for spreading scores only.
DEFAULT_MILLI_CPU_REQUEST = 100
DEFAULT_MEMORY_REQUEST = 200 * 1024 * 1024

_NOT_READY = "node.kubernetes.io/not-ready"
_UNREACHABLE = "node.kubernetes.io/unreachable"


@dataclass(frozen=True, slots=True)
class Taint:
    key: str
    value: str
    effect: str


@dataclass(frozen=True, slots=True)
class Toleration:
    key: str
    operator: str
    value: str
    effect: str

    def tolerates(self, taint: Taint) -> bool:
        """``v1.Toleration.ToleratesTaint``."""
        if self.effect and self.effect != taint.effect:
            return False
        if self.key and self.key != taint.key:
            return False
        if self.operator == "Exists":
            return True
        return self.operator in ("", "Equal") and self.value == taint.value


def tolerations_of(spec: Mapping[str, Any]) -> tuple[Toleration, ...]:
    return tuple(Toleration(t.get("key") or "", t.get("operator") or "Equal", t.get("value") or "",
                            t.get("effect") or "") for t in spec.get("tolerations") or ())


class NodeSelector:
    """A ``v1.NodeSelector``: terms ORed, each term's expressions and fields ANDed."""

    __slots__ = ("terms",)

    def __init__(self, terms: list[tuple[tuple[Requirement, ...], tuple[Requirement, ...]]]) -> None:
        self.terms = terms

    @classmethod
    def from_terms(cls, terms: list[Object]) -> NodeSelector:
        compiled = []
        for term in terms or ():
            expressions = tuple(_node_requirement(e) for e in term.get("matchExpressions") or ())
            fields = tuple(_node_requirement(e) for e in term.get("matchFields") or ())
            compiled.append((expressions, fields))
        return cls(compiled)

    def matches(self, node: NodeInfo) -> bool:
        for expressions, fields in self.terms:
            if not expressions and not fields:
                continue  # an empty term matches no objects
            labels = node.labels
            if not all(r.matches(labels) for r in expressions):
                continue
            if fields and not all(r.matches({"metadata.name": node.name}) for r in fields):
                continue
            return True
        return False


_NODE_OPERATORS = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!", "Gt": "gt",
                   "Lt": "lt"}


def _node_requirement(expression: Mapping[str, Any]) -> Requirement:
    operator = _NODE_OPERATORS.get(expression.get("operator", ""), "invalid")
    return Requirement(expression.get("key", ""), operator, tuple(str(v) for v in expression.get("values") or ()))


class AffinityTerm:
    """A compiled ``PodAffinityTerm``: which pods (namespaces + selector) in which topology."""

    __slots__ = ("namespace_selector", "namespaces", "selector", "topology_key", "weight")

    def __init__(self, owner_namespace: str, term: Mapping[str, Any], weight: int = 0,
                 owner_labels: Mapping[str, str] | None = None) -> None:
        selector = selector_from_object(term.get("labelSelector"))
        # matchLabelKeys / mismatchLabelKeys (1.31+ beta): merged into the selector from the owner's labels.
        extra = [Requirement(k, "in", (owner_labels[k],)) for k in term.get("matchLabelKeys") or ()
                 if owner_labels and k in owner_labels]
        extra += [Requirement(k, "notin", (owner_labels[k],)) for k in term.get("mismatchLabelKeys") or ()
                  if owner_labels and k in owner_labels]
        if extra and not selector.nothing:
            selector = LabelSelector(selector.requirements + tuple(extra))
        self.selector: LabelSelector = selector
        namespaces = term.get("namespaces") or []
        ns_selector = term.get("namespaceSelector")
        if not namespaces and ns_selector is None:
            namespaces = [owner_namespace]
        self.namespaces = frozenset(namespaces)
        self.namespace_selector: LabelSelector | None = (
            selector_from_object(ns_selector) if ns_selector is not None else None)
        self.topology_key: str = term.get("topologyKey") or ""
        self.weight = weight

    def matches(self, pod: PodInfo, namespace_labels: Mapping[str, Mapping[str, str]] | None = None) -> bool:
        if pod.namespace not in self.namespaces:
            if self.namespace_selector is None:
                return False
            labels = (namespace_labels or {}).get(pod.namespace, {})
            if not self.namespace_selector.matches(labels):
                return False
        return self.selector.matches(pod.labels)


def _add_list(target: dict[str, int], resources: Mapping[str, Any] | None) -> None:
    for name, quantity in (resources or {}).items():
        target[name] = target.get(name, 0) + (milli_value(quantity) if name == "cpu" else value(quantity))


def _container_requests(container: Mapping[str, Any]) -> dict[str, int]:
    resources = container.get("resources") or {}
    requests = dict(resources.get("requests") or {})
    # The API server defaults requests from limits; accept pods that skipped defaulting too.
    for name, quantity in (resources.get("limits") or {}).items():
        requests.setdefault(name, quantity)
    out: dict[str, int] = {}
    _add_list(out, requests)
    return out


def _max_into(target: dict[str, int], other: Mapping[str, int]) -> None:
    for name, amount in other.items():
        if amount > target.get(name, 0):
            target[name] = amount


def pod_requests(spec: Mapping[str, Any], non_zero: bool = False) -> dict[str, int]:
    """``resourcehelper.PodRequests``: containers + sidecars, max with each init container, + overhead.

    With ``non_zero``, a container without a cpu/memory request counts the scheduler defaults
    (100m, 200Mi), as kube-scheduler does for spreading scores.
    """
    def requests_of(container: Mapping[str, Any]) -> dict[str, int]:
        req = _container_requests(container)
        if non_zero:
            req.setdefault("cpu", DEFAULT_MILLI_CPU_REQUEST)
            req.setdefault("memory", DEFAULT_MEMORY_REQUEST)
        return req

    total: dict[str, int] = {}
    for container in spec.get("containers") or ():
        for name, amount in requests_of(container).items():
            total[name] = total.get(name, 0) + amount
    sidecars: dict[str, int] = {}
    init_max: dict[str, int] = {}
    for container in spec.get("initContainers") or ():
        req = requests_of(container)
        if container.get("restartPolicy") == "Always":
            for name, amount in req.items():
                sidecars[name] = sidecars.get(name, 0) + amount
                total[name] = total.get(name, 0) + amount
        else:
            # A regular init container runs alongside the sidecars started before it.
            _max_into(init_max, {n: a + sidecars.get(n, 0) for n, a in req.items()})
    _max_into(total, init_max)
    overhead = spec.get("overhead")
    if overhead:
        _add_list(total, overhead)
    return total


def _host_ports(spec: Mapping[str, Any]) -> tuple[tuple[str, str, int], ...]:
    ports = []
    containers = list(spec.get("containers") or ()) + list(spec.get("initContainers") or ())
    for container in containers:
        for port in container.get("ports") or ():
            host_port = port.get("hostPort")
            if host_port:
                ports.append((port.get("hostIP") or "0.0.0.0", port.get("protocol") or "TCP", int(host_port)))
    return tuple(ports)


class PodInfo:
    """One pod as the scheduler uses it; built once per pod version."""

    __slots__ = (
        "cpu",
        "deleting",
        "eph",
        "host_ports",
        "images",
        "key",
        "labels",
        "mem",
        "name",
        "namespace",
        "node_affinity_preferred",
        "node_affinity_required",
        "node_name",
        "node_selector",
        "nz_cpu",
        "nz_mem",
        "pod",
        "preferred_affinity",
        "preferred_anti_affinity",
        "priority",
        "required_affinity",
        "required_anti_affinity",
        "scalars",
        "scheduler_name",
        "spread_constraints",
        "tolerations",
        "uid",
    )

    def __init__(self, pod: Object) -> None:
        metadata = pod.get("metadata") or {}
        spec = pod.get("spec") or {}
        self.pod = pod
        self.namespace: str = metadata.get("namespace") or "default"
        self.name: str = metadata.get("name") or ""
        self.key = f"{self.namespace}/{self.name}"
        self.uid: str = metadata.get("uid") or ""
        self.labels: dict[str, str] = metadata.get("labels") or {}
        self.deleting = bool(metadata.get("deletionTimestamp"))
        self.node_name: str = spec.get("nodeName") or ""
        self.scheduler_name: str = spec.get("schedulerName") or "default-scheduler"
        self.priority: int = int(spec.get("priority") or 0)
        requests = pod_requests(spec)
        self.cpu = requests.pop("cpu", 0)
        self.mem = requests.pop("memory", 0)
        self.eph = requests.pop("ephemeral-storage", 0)
        requests.pop("pods", None)
        # Extended resources (vendor/name) and hugepages; native unprefixed names are ignored.
        self.scalars = {k: v for k, v in requests.items() if "/" in k or k.startswith("hugepages-")}
        non_zero = pod_requests(spec, non_zero=True)
        self.nz_cpu = non_zero.get("cpu", 0)
        self.nz_mem = non_zero.get("memory", 0)
        self.host_ports = _host_ports(spec)
        self.tolerations = tolerations_of(spec)
        self.images = tuple(c.get("image") or "" for c in spec.get("containers") or ())
        selector = spec.get("nodeSelector") or {}
        self.node_selector: dict[str, str] = selector
        affinity = spec.get("affinity") or {}
        node_affinity = affinity.get("nodeAffinity") or {}
        required = node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution")
        self.node_affinity_required: NodeSelector | None = (
            NodeSelector.from_terms(required.get("nodeSelectorTerms") or []) if required is not None else None)
        self.node_affinity_preferred: list[tuple[int, NodeSelector]] = [
            (int(p.get("weight") or 0), NodeSelector.from_terms([p.get("preference") or {}]))
            for p in node_affinity.get("preferredDuringSchedulingIgnoredDuringExecution") or ()
            if p.get("weight")]
        pod_affinity = affinity.get("podAffinity") or {}
        anti_affinity = affinity.get("podAntiAffinity") or {}
        req_key = "requiredDuringSchedulingIgnoredDuringExecution"
        pref_key = "preferredDuringSchedulingIgnoredDuringExecution"
        labels = self.labels
        self.required_affinity = [AffinityTerm(self.namespace, t, owner_labels=labels)
                                  for t in pod_affinity.get(req_key) or ()]
        self.required_anti_affinity = [AffinityTerm(self.namespace, t, owner_labels=labels)
                                       for t in anti_affinity.get(req_key) or ()]
        self.preferred_affinity = [
            AffinityTerm(self.namespace, t.get("podAffinityTerm") or {}, int(t.get("weight") or 0), labels)
            for t in pod_affinity.get(pref_key) or ()]
        self.preferred_anti_affinity = [
            AffinityTerm(self.namespace, t.get("podAffinityTerm") or {}, int(t.get("weight") or 0), labels)
            for t in anti_affinity.get(pref_key) or ()]
        self.spread_constraints: list[Object] = list(spec.get("topologySpreadConstraints") or ())

    @property
    def has_affinity(self) -> bool:
        return bool(self.required_affinity or self.required_anti_affinity or self.preferred_affinity
                    or self.preferred_anti_affinity)


def _node_ready_taint(node: Object) -> Taint | None:
    """The taint the node lifecycle controller would put on a node that is not Ready.

    The scheduler derives it itself so that it does not depend on that controller's timing:
    Ready=False -> ``not-ready``, Ready=Unknown -> ``unreachable`` (both NoSchedule), which pods can
    tolerate exactly as in Kubernetes. A node that never reported a Ready condition is not tainted,
    as in Kubernetes until the node lifecycle controller marks it Unknown after its grace period.
    """
    for condition in (node.get("status") or {}).get("conditions") or ():
        if condition.get("type") == "Ready":
            status = condition.get("status")
            if status == "True":
                return None
            return Taint(_NOT_READY if status == "False" else _UNREACHABLE, "", "NoSchedule")
    return None


def _image_name(name: str) -> str:
    """``normalizedImageName``: an image without tag or digest means ``:latest``."""
    if "@" in name:
        return name
    if ":" not in name.rsplit("/", 1)[-1]:
        return name + ":latest"
    return name


class NodeInfo:
    """A node plus the aggregate of the pods bound (or assumed) to it."""

    __slots__ = (
        "alloc_cpu", "alloc_eph", "alloc_mem", "alloc_pods", "alloc_scalars", "generation", "images",
        "labels", "name", "node", "nz_cpu", "nz_mem", "pods", "pods_with_affinity",
        "pods_with_required_anti_affinity", "req_cpu", "req_eph", "req_mem", "req_scalars", "taints",
        "unschedulable", "used_ports",
    )

    def __init__(self, name: str, node: Object | None = None) -> None:
        self.name = name
        self.node: Object | None = None
        self.labels: dict[str, str] = {}
        self.unschedulable = False
        self.taints: tuple[Taint, ...] = ()
        self.alloc_cpu = self.alloc_mem = self.alloc_eph = self.alloc_pods = 0
        self.alloc_scalars: dict[str, int] = {}
        self.images: dict[str, int] = {}
        self.req_cpu = self.req_mem = self.req_eph = 0
        self.req_scalars: dict[str, int] = {}
        self.nz_cpu = self.nz_mem = 0
        self.pods: dict[str, PodInfo] = {}
        self.pods_with_affinity: dict[str, PodInfo] = {}
        self.pods_with_required_anti_affinity: dict[str, PodInfo] = {}
        self.used_ports: dict[tuple[str, str, int], int] = {}
        self.generation = 0
        if node is not None:
            self.set_node(node)

    def set_node(self, node: Object) -> None:
        metadata = node.get("metadata") or {}
        spec = node.get("spec") or {}
        status = node.get("status") or {}
        self.node = node
        self.labels = dict(metadata.get("labels") or {})
        self.unschedulable = bool(spec.get("unschedulable"))
        taints = [Taint(t.get("key") or "", t.get("value") or "", t.get("effect") or "")
                  for t in spec.get("taints") or ()]
        readiness = _node_ready_taint(node)
        if readiness is not None and not any(t.key == readiness.key and t.effect == "NoSchedule" for t in taints):
            taints.append(readiness)
        self.taints = tuple(taints)
        allocatable = status.get("allocatable") or status.get("capacity") or {}
        self.alloc_cpu = milli_value(allocatable.get("cpu", 0))
        self.alloc_mem = value(allocatable.get("memory", 0))
        self.alloc_eph = value(allocatable.get("ephemeral-storage", 0))
        self.alloc_pods = value(allocatable.get("pods", 0))
        self.alloc_scalars = {k: value(v) for k, v in allocatable.items()
                              if "/" in k or k.startswith("hugepages-")}
        self.images = {}
        for image in status.get("images") or ():
            for image_name in image.get("names") or ():
                self.images[_image_name(image_name)] = int(image.get("sizeBytes") or 0)
        self.generation += 1

    # ------------------------------------------------------------------ pods

    def add_pod(self, pod: PodInfo) -> None:
        self.pods[pod.key] = pod
        self._account(pod, 1)
        if pod.has_affinity:
            self.pods_with_affinity[pod.key] = pod
        if pod.required_anti_affinity:
            self.pods_with_required_anti_affinity[pod.key] = pod
        self.generation += 1

    def remove_pod(self, key: str) -> PodInfo | None:
        pod = self.pods.pop(key, None)
        if pod is None:
            return None
        self._account(pod, -1)
        self.pods_with_affinity.pop(key, None)
        self.pods_with_required_anti_affinity.pop(key, None)
        self.generation += 1
        return pod

    def _account(self, pod: PodInfo, sign: int) -> None:
        self.req_cpu += sign * pod.cpu
        self.req_mem += sign * pod.mem
        self.req_eph += sign * pod.eph
        self.nz_cpu += sign * pod.nz_cpu
        self.nz_mem += sign * pod.nz_mem
        for name, amount in pod.scalars.items():
            self.req_scalars[name] = self.req_scalars.get(name, 0) + sign * amount
        for port in pod.host_ports:
            count = self.used_ports.get(port, 0) + sign
            if count > 0:
                self.used_ports[port] = count
            else:
                self.used_ports.pop(port, None)
