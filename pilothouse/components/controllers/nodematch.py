"""Does a pod fit a node? Taints against tolerations, nodeSelector and required node affinity.

The DaemonSet controller decides itself which nodes get a daemon pod (it runs the scheduler's
NodeName / NodeAffinity / TaintToleration predicates, ``daemon.predicates``) and the taint eviction
controller needs the same toleration matching; both share these pure functions (Kubernetes has them
in ``k8s.io/component-helpers/scheduling/corev1`` and ``pkg/apis/core/v1/helper``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from pilothouse.machinery.meta import Object

__all__ = [
    "find_untolerated_taint",
    "node_matches_affinity",
    "node_matches_selector_term",
    "toleration_tolerates_taint",
]



def toleration_tolerates_taint(toleration: Object, taint: Object) -> bool:
    """``Toleration.ToleratesTaint``: same effect (an empty effect matches all), same key (an empty
    key with ``Exists`` matches every key), and ``Exists`` or an equal value."""
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    if key and key != taint.get("key"):
        return False
    operator = toleration.get("operator") or "Equal"
    if operator == "Exists":
        return True
    if operator == "Equal":
        return bool((toleration.get("value") or "") == (taint.get("value") or ""))
    return False


def find_untolerated_taint(taints: Iterable[Object], tolerations: Iterable[Object],
                           include: Callable[[Object], bool] | None = None) -> Object | None:
    """The first taint (among those ``include`` accepts) that no toleration tolerates, or None."""
    tolerations = list(tolerations)
    for taint in taints:
        if include is not None and not include(taint):
            continue
        if not any(toleration_tolerates_taint(t, taint) for t in tolerations):
            return taint
    return None


def _requirement_matches(requirement: Object, value: str | None) -> bool:
    operator = requirement.get("operator")
    values = [str(v) for v in requirement.get("values") or ()]
    if operator == "In":
        return value is not None and value in values
    if operator == "NotIn":
        return value is None or value not in values
    if operator == "Exists":
        return value is not None
    if operator == "DoesNotExist":
        return value is None
    if operator in ("Gt", "Lt"):
        if value is None or len(values) != 1:
            return False
        try:
            have, want = int(value), int(values[0])
        except ValueError:
            return False
        return have > want if operator == "Gt" else have < want
    return False


def node_matches_selector_term(term: Object, node: Object) -> bool:
    """One ``NodeSelectorTerm``: every matchExpression (labels) and matchField (only
    ``metadata.name`` exists) holds. An empty term matches nothing."""
    expressions = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not expressions and not fields:
        return False
    labels = (node.get("metadata") or {}).get("labels") or {}
    for requirement in expressions:
        if not _requirement_matches(requirement, labels.get(requirement.get("key", ""))):
            return False
    for requirement in fields:
        if requirement.get("key") != "metadata.name":
            return False
        if not _requirement_matches(requirement, node["metadata"].get("name")):
            return False
    return True


def node_matches_affinity(pod_spec: Object, node: Object) -> bool:
    """``nodeaffinity.GetRequiredNodeAffinity(pod).Match(node)``: the nodeSelector map and the
    required node affinity terms (ORed) both accept the node."""
    labels = (node.get("metadata") or {}).get("labels") or {}
    for key, value in (pod_spec.get("nodeSelector") or {}).items():
        if labels.get(key) != value:
            return False
    required = (((pod_spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution"))
    if required is None:
        return True
    return any(node_matches_selector_term(term, node) for term in required.get("nodeSelectorTerms") or ())
