"""What PodSecurity admission decides (k8s.io/pod-security-admission ``admission/admission.go``),
as pure functions the API server's plugin feeds: which objects carry a pod spec, when a pod
update is worth evaluating, the verdict and warnings for one pod, and the warnings a namespace's
new enforce level earns from the pods already in it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pilothouse.machinery.meta import Object
from pilothouse.machinery.podsecurity.policy import LevelVersion, Policy, aggregate, compare_levels, evaluate

__all__ = ["IGNORED_POD_SUBRESOURCES", "POD_SPEC_RESOURCES", "Verdict", "enforce_tightened", "evaluate_pod",
           "existing_pods_warnings", "pod_spec_of", "significant_pod_update"]


#: (group, plural) -> the path to the pod template, () for the pod itself.
POD_SPEC_RESOURCES: dict[tuple[str, str], tuple[str, ...]] = {
    ("", "pods"): (),
    ("", "replicationcontrollers"): ("spec", "template"),
    ("", "podtemplates"): ("template",),
    ("apps", "replicasets"): ("spec", "template"),
    ("apps", "deployments"): ("spec", "template"),
    ("apps", "statefulsets"): ("spec", "template"),
    ("apps", "daemonsets"): ("spec", "template"),
    ("batch", "jobs"): ("spec", "template"),
    ("batch", "cronjobs"): ("spec", "jobTemplate", "spec", "template"),
}

#: Pod subresources that cannot change the pod spec (any other one is evaluated: fail safe).
IGNORED_POD_SUBRESOURCES = frozenset({"exec", "attach", "binding", "eviction", "log", "portforward", "proxy",
                                      "status"})

_MAX_PODS_TO_CHECK = 3000


def pod_spec_of(group: str, plural: str, obj: Object) -> tuple[Object, Object] | None:
    """(metadata, spec) of a pod or of a controller's pod template; None when it has none."""
    path = POD_SPEC_RESOURCES.get((group, plural))
    if path is None:
        return None
    node: Any = obj
    for step in path:
        node = node.get(step) if isinstance(node, dict) else None
    if not isinstance(node, dict):
        return None
    return node.get("metadata") or {}, node.get("spec") or {}


def significant_pod_update(new: Object, old: Object) -> bool:
    """isSignificantPodUpdate: only a container image (or a new ephemeral container) can change
    what a running pod is allowed to do, so other updates are not evaluated."""
    spec, old_spec = new.get("spec") or {}, old.get("spec") or {}
    for field_name in ("containers", "initContainers"):
        containers, old_containers = spec.get(field_name) or [], old_spec.get(field_name) or []
        if len(containers) != len(old_containers):
            return True
        if any(c.get("image") != o.get("image") for c, o in zip(containers, old_containers, strict=True)):
            return True
    old_ephemeral = {c.get("name"): c for c in old_spec.get("ephemeralContainers") or []}
    return any(c.get("name") not in old_ephemeral or c.get("image") != old_ephemeral[c.get("name")].get("image")
               for c in spec.get("ephemeralContainers") or [])


@dataclass
class Verdict:
    #: The refusal (after ``<kind> "<name>" is forbidden: ``), or "" when allowed.
    refusal: str = ""
    warnings: list[str] = field(default_factory=list)
    #: The audit level's finding, for the audit event's ``pod-security.kubernetes.io/audit-violations``.
    audit: str = ""


def evaluate_pod(policy: Policy, metadata: Object, spec: Object, enforce: bool) -> Verdict:
    """EvaluatePod: enforce (pods only), audit, then warn unless refused; each level and version
    evaluated once however many modes share it."""
    verdict = Verdict()
    cached: dict[LevelVersion, str] = {}

    def detail(level: LevelVersion) -> str:
        if level not in cached:
            cached[level] = aggregate(evaluate(level, metadata, spec))[1]
        return cached[level]

    if enforce and (found := detail(policy.enforce)):
        verdict.refusal = f'violates PodSecurity "{policy.enforce}": {found}'
    if policy.audit.level != "privileged" and (found := detail(policy.audit)):
        verdict.audit = f'would violate PodSecurity "{policy.audit}": {found}'
    if not verdict.refusal and (found := detail(policy.warn)):
        verdict.warnings.append(f'would violate PodSecurity "{policy.warn}": {found}')
    return verdict


def enforce_tightened(new: Policy, old: Policy) -> bool:
    """Whether a namespace update must dry-run its pods against the new enforce level."""
    if new.enforce == old.enforce or new.enforce.level == "privileged":
        return False
    return not (new.enforce.version == old.enforce.version
                and compare_levels(new.enforce.level, old.enforce.level) < 1)


def _controller_uid(pod: Object) -> str | None:
    for ref in pod["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref.get("uid"))
    return None


def _prioritized(pods: list[Object]) -> list[Object]:
    """One pod per controller first, the other replicas after (prioritizePods)."""
    first, duplicates, seen = [], [], set()
    for pod in pods:
        uid = _controller_uid(pod)
        if uid is not None and uid in seen:
            duplicates.append(pod)
            continue
        if uid is not None:
            seen.add(uid)
        first.append(pod)
    return first + duplicates


def existing_pods_warnings(namespace: str, enforce: LevelVersion, pods: list[Object]) -> list[str]:
    """EvaluatePodsInNamespace: one warning line per distinct violation, named by the lexically
    first pod with it and counting the others."""
    ordered = _prioritized(pods)
    checked = ordered[:_MAX_PODS_TO_CHECK]
    first_pod: dict[str, str] = {}
    counts: dict[str, int] = {}
    for pod in checked:
        reason, _ = aggregate(evaluate(enforce, pod["metadata"], pod.get("spec")))
        if not reason:
            continue
        name = pod["metadata"]["name"]
        if reason not in first_pod or name < first_pod[reason]:
            first_pod[reason] = name
        counts[reason] = counts.get(reason, 0) + 1
    warnings = []
    if len(checked) < len(ordered):
        warnings.append(f"new PodSecurity enforce level only checked against the first {len(checked)} of "
                        f"{len(ordered)} existing pods")
    if counts:
        warnings.append(f'existing pods in namespace "{namespace}" violate the new PodSecurity enforce level '
                        f'"{enforce}"')
    decorated = []
    for reason, count in counts.items():
        others = "" if count == 1 else " (and 1 other pod)" if count == 2 else f" (and {count - 1} other pods)"
        decorated.append(f"{first_pod[reason]}{others}: {reason}")
    return warnings + sorted(decorated)
