"""LimitRanger (plugin/pkg/admission/limitranger): a namespace's LimitRanges default a new pod's
container requests and limits (mutating), then bound them (validating); they also bound what a
PersistentVolumeClaim requests.

Defaults come from each ``Container`` limit's ``default`` (limits) and ``defaultRequest``
(requests) and are recorded in the ``kubernetes.io/limit-ranger`` annotation; bounds are ``min``,
``max`` and ``maxLimitRequestRatio`` per ``Container`` and per ``Pod`` (summed), with Kubernetes'
messages, all problems of one LimitRange reported together.
"""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction
from typing import Any

from pilothouse.machinery.admission import Refusal
from pilothouse.machinery.kinds.quantity import format_quantity, parse_quantity, quantity_format
from pilothouse.machinery.kinds.types import Object
from pilothouse.machinery.quota import pod_resources

__all__ = ["ANNOTATION", "default_pod", "validate_claim", "validate_pod"]

Resources = dict[str, Any]

ANNOTATION = "kubernetes.io/limit-ranger"


def _containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*(spec.get("containers") or ()), *(spec.get("initContainers") or ())]


def _defaults(limit_range: Object) -> tuple[Resources, Resources]:
    """defaultContainerResourceRequirements: (requests, limits)."""
    requests: Resources = {}
    limits: Resources = {}
    for item in (limit_range.get("spec") or {}).get("limits") or ():
        if item.get("type") == "Container":
            requests.update(item.get("defaultRequest") or {})
            limits.update(item.get("default") or {})
    return requests, limits


def _merge(container: dict[str, Any], defaults: Resources, kind: str) -> list[str]:
    if not defaults:
        return []
    resources = container.setdefault("resources", {})
    current = resources.get(kind) or {}
    added = sorted(name for name in defaults if name not in current)
    if added:
        resources[kind] = {**current, **{name: defaults[name] for name in added}}
    return added


def default_pod(pod: Object, limit_ranges: Iterable[Object]) -> None:
    """PodMutateLimitFunc for each LimitRange (mergePodResourceRequirements)."""
    spec = pod.get("spec") or {}
    for limit_range in limit_ranges:
        requests, limits = _defaults(limit_range)
        notes: list[str] = []
        for container in _containers(spec):
            which = f"{_which(spec, container)} {container.get('name', '')}"
            set_requests = _merge(container, requests, "requests")
            set_limits = _merge(container, limits, "limits")
            if set_requests:
                notes.append(f"{', '.join(set_requests)} request for {which}")
            if set_limits:
                notes.append(f"{', '.join(set_limits)} limit for {which}")
        if notes:
            annotations = pod.setdefault("metadata", {}).setdefault("annotations", {})
            annotations[ANNOTATION] = "LimitRanger plugin set: " + "; ".join(notes)


def _which(spec: dict[str, Any], container: dict[str, Any]) -> str:
    return "init container" if any(c is container for c in spec.get("initContainers") or ()) else "container"


def _text(value: Any) -> str:
    """A quantity as Quantity.String() prints it."""
    number = parse_quantity(value)
    return format_quantity(number, quantity_format(value)) if number is not None else str(value)


def _min(kind: str, name: str, bound: Any, requests: Resources, limits: Resources) -> str:
    floor = parse_quantity(bound) or Fraction(0)
    if name not in requests:
        return f"minimum {name} usage per {kind} is {_text(bound)}.  No request is specified"
    if (parse_quantity(requests[name]) or 0) < floor:
        return f"minimum {name} usage per {kind} is {_text(bound)}, but request is {_text(requests[name])}"
    if name in limits and (parse_quantity(limits[name]) or 0) < floor:
        return f"minimum {name} usage per {kind} is {_text(bound)}, but limit is {_text(limits[name])}"
    return ""


def _max(kind: str, name: str, bound: Any, requests: Resources, limits: Resources) -> str:
    ceiling = parse_quantity(bound) or Fraction(0)
    if name not in limits:
        return f"maximum {name} usage per {kind} is {_text(bound)}.  No limit is specified"
    if (parse_quantity(limits[name]) or 0) > ceiling:
        return f"maximum {name} usage per {kind} is {_text(bound)}, but limit is {_text(limits[name])}"
    if name in requests and (parse_quantity(requests[name]) or 0) > ceiling:
        return f"maximum {name} usage per {kind} is {_text(bound)}, but request is {_text(requests[name])}"
    return ""


def _ratio(kind: str, name: str, bound: Any, requests: Resources, limits: Resources) -> str:
    request = parse_quantity(requests.get(name)) or Fraction(0)
    limit = parse_quantity(limits.get(name)) or Fraction(0)
    head = f"{name} max limit to request ratio per {kind} is {_text(bound)}"
    if not request:
        return f"{head}, but no request is specified or request is 0"
    if not limit:
        return f"{head}, but no limit is specified or limit is 0"
    observed = limit / request
    if observed > (parse_quantity(bound) or 0):
        return f"{head}, but provided ratio is {float(observed):f}"
    return ""


_CHECKS = (("min", _min), ("max", _max), ("maxLimitRequestRatio", _ratio))


def _bound(item: dict[str, Any], kind: str, requests: Resources, limits: Resources) -> list[str]:
    problems = []
    for field, check in _CHECKS:
        for name, bound in sorted((item.get(field) or {}).items()):
            problem = check(kind, name, bound, requests, limits)
            if problem:
                problems.append(problem)
    return problems


def validate_pod(pod: Object, limit_ranges: Iterable[Object]) -> None:
    """PodValidateLimitFunc for each LimitRange; the first one with problems refuses the pod."""
    spec = pod.get("spec") or {}
    for limit_range in limit_ranges:
        problems: list[str] = []
        for item in (limit_range.get("spec") or {}).get("limits") or ():
            if item.get("type") == "Container":
                for container in _containers(spec):
                    resources = container.get("resources") or {}
                    problems += _bound(item, "Container", resources.get("requests") or {},
                                       resources.get("limits") or {})
            elif item.get("type") == "Pod":
                problems += _bound(item, "Pod", pod_resources(spec, "requests", overhead=False),
                                   pod_resources(spec, "limits", overhead=False))
        _refuse(problems)


def validate_claim(claim: Object, limit_ranges: Iterable[Object]) -> None:
    """PersistentVolumeClaimValidateLimitFunc: min/max of ``PersistentVolumeClaim`` limits bound
    what the claim requests (claims are never defaulted: storage is a required request)."""
    requests = ((claim.get("spec") or {}).get("resources") or {}).get("requests") or {}
    for limit_range in limit_ranges:
        problems: list[str] = []
        for item in (limit_range.get("spec") or {}).get("limits") or ():
            if item.get("type") != "PersistentVolumeClaim":
                continue
            problems += [p for name, bound in sorted((item.get("min") or {}).items())
                         if (p := _min("PersistentVolumeClaim", name, bound, requests, {}))]
            problems += [p for name, bound in sorted((item.get("max") or {}).items())
                         if (p := _max_request("PersistentVolumeClaim", name, bound, requests))]
        _refuse(problems)


def _max_request(kind: str, name: str, bound: Any, requests: Resources) -> str:
    """maxRequestConstraint: a max against the request, for kinds that have no limits."""
    if name not in requests:
        return f"maximum {name} usage per {kind} is {_text(bound)}.  No request is specified"
    if (parse_quantity(requests[name]) or 0) > (parse_quantity(bound) or 0):
        return f"maximum {name} usage per {kind} is {_text(bound)}, but request is {_text(requests[name])}"
    return ""


def _refuse(problems: list[str]) -> None:
    """One LimitRange's problems as utilerrors.NewAggregate prints them."""
    if problems:
        raise Refusal(problems[0] if len(problems) == 1 else "[" + ", ".join(problems) + "]")
