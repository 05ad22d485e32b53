"""Resource quota accounting: what an object uses, and whether a quota admits it.

Shared by the ResourceQuota admission plugin (charging a create against ``status.used``) and the
resource quota controller (recounting ``status.used`` from the cluster), so that both count the
same way. Mirrors pkg/quota/v1/evaluator/core (pods, services, persistent volume claims), the
generic ``count/<resource>.<group>`` object-count evaluator, and the admission check of
plugin/pkg/admission/resourcequota (``CheckRequest``), with Kubernetes' messages.

Usage lists are ``{resource name: quantity text}``, as a quota's ``status.used`` stores them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from pilothouse.machinery.admission import Refusal
from pilothouse.machinery.kinds.quantity import add_quantities, format_quantity, parse_quantity, quantity_format
from pilothouse.machinery.kinds.types import Object

__all__ = [
    "ResourceList",
    "calculate_usage",
    "charge",
    "evaluated_resources",
    "matching_resources",
    "object_usage",
    "pod_resources",
    "quota_matches",
]

ResourceList = dict[str, str]

_COMPUTE = ("cpu", "memory", "ephemeral-storage")
_POD_RESOURCES = frozenset(
    ["count/pods", "pods", *_COMPUTE, *(f"requests.{r}" for r in _COMPUTE), *(f"limits.{r}" for r in _COMPUTE)])
# What every container must request when a quota limits it (podEvaluator's validationSet).
_VALIDATION_SET = frozenset(["cpu", "memory", "requests.cpu", "requests.memory", "limits.cpu", "limits.memory"])
# Object counts Kubernetes also names without the count/ prefix.
_LEGACY_COUNTS = {"configmaps", "secrets", "replicationcontrollers", "resourcequotas", "services",
                  "persistentvolumeclaims"}
_STORAGE_CLASS_SUFFIX = ".storageclass.storage.k8s.io/"


# -- usage of one object -----------------------------------------------------------------------

def _add(total: ResourceList, name: str, value: Any) -> None:
    total[name] = add_quantities(total[name], value) if name in total else str(value)


def _max(a: ResourceList, b: ResourceList) -> ResourceList:
    out = dict(a)
    for name, value in b.items():
        if name not in out or (parse_quantity(value) or 0) > (parse_quantity(out[name]) or 0):
            out[name] = value
    return out


def pod_resources(spec: dict[str, Any], kind: str, overhead: bool = True) -> ResourceList:
    """resourcehelper.PodRequests/PodLimits: containers summed, sidecars included, the largest
    init container if it needs more, plus the pod overhead (on limits only where one is set;
    LimitRanger leaves it out)."""
    total: ResourceList = {}
    for container in spec.get("containers") or ():
        for name, value in ((container.get("resources") or {}).get(kind) or {}).items():
            _add(total, name, value)
    sidecars: ResourceList = {}
    init_peak: ResourceList = {}
    for container in spec.get("initContainers") or ():
        wanted = dict((container.get("resources") or {}).get(kind) or {})
        if container.get("restartPolicy") == "Always":
            for name, value in wanted.items():
                _add(sidecars, name, value)
            wanted = dict(sidecars)
        else:
            for name, value in sidecars.items():
                _add(wanted, name, value)
        init_peak = _max(init_peak, wanted)
    for name, value in sidecars.items():
        _add(total, name, value)
    total = _max(total, init_peak)
    for name, value in (spec.get("overhead") or {}).items() if overhead else ():
        if kind == "requests" or name in total:  # no limit stays no limit
            _add(total, name, value)
    return total


def _is_extended(name: str) -> bool:
    return "/" in name and not name.startswith("kubernetes.io/") and not name.startswith("requests.")


def _compute_usage(requests: ResourceList, limits: ResourceList) -> ResourceList:
    """podComputeUsageHelper."""
    usage: ResourceList = {"pods": "1"}
    for name in _COMPUTE:
        if name in requests:
            usage[name] = usage[f"requests.{name}"] = requests[name]
        if name in limits:
            usage[f"limits.{name}"] = limits[name]
    for name, value in requests.items():
        if name.startswith("hugepages-"):
            usage[name] = usage[f"requests.{name}"] = value
        elif _is_extended(name):
            usage[f"requests.{name}"] = value
    return usage


def _pod_is_live(pod: Object) -> bool:
    """QuotaV1Pod: terminal pods (and pods past their deletion grace) no longer use compute."""
    if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return False
    return not ((pod.get("metadata") or {}).get("deletionTimestamp")
                and (pod.get("metadata") or {}).get("deletionGracePeriodSeconds") == 0)


def _pod_usage(pod: Object) -> ResourceList:
    usage: ResourceList = {"count/pods": "1"}
    if _pod_is_live(pod):
        spec = pod.get("spec") or {}
        usage.update(_compute_usage(pod_resources(spec, "requests"), pod_resources(spec, "limits")))
    return usage


def _service_usage(service: Object) -> ResourceList:
    spec = service.get("spec") or {}
    usage: ResourceList = {"count/services": "1", "services": "1"}
    kind = spec.get("type") or "ClusterIP"
    ports = spec.get("ports") or []
    if kind == "NodePort":
        usage["services.nodeports"] = str(len(ports))
    elif kind == "LoadBalancer":
        usage["services.loadbalancers"] = "1"
        if spec.get("allocateLoadBalancerNodePorts") is False:
            usage["services.nodeports"] = str(sum(1 for port in ports if port.get("nodePort")))
        else:
            usage["services.nodeports"] = str(len(ports))
    return usage


def _pvc_usage(claim: Object) -> ResourceList:
    spec = claim.get("spec") or {}
    usage: ResourceList = {"count/persistentvolumeclaims": "1", "persistentvolumeclaims": "1"}
    storage_class = spec.get("storageClassName") or ""
    if storage_class:
        usage[f"{storage_class}{_STORAGE_CLASS_SUFFIX}persistentvolumeclaims"] = "1"
    requested = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
    allocated = ((claim.get("status") or {}).get("allocatedResources") or {}).get("storage")
    if allocated is not None and (requested is None or
                                  (parse_quantity(allocated) or 0) > (parse_quantity(requested) or 0)):
        requested = allocated
    if requested is not None:
        usage["requests.storage"] = str(requested)
        if storage_class:
            usage[f"{storage_class}{_STORAGE_CLASS_SUFFIX}requests.storage"] = str(requested)
    return usage


def _count_name(group: str, resource: str) -> str:
    return f"count/{resource}.{group}" if group else f"count/{resource}"


def object_usage(group: str, resource: str, obj: Object) -> ResourceList:
    """What ``obj`` of ``resource`` (plural) in ``group`` counts against a quota."""
    if not group and resource == "pods":
        return _pod_usage(obj)
    if not group and resource == "services":
        return _service_usage(obj)
    if not group and resource == "persistentvolumeclaims":
        return _pvc_usage(obj)
    usage = {_count_name(group, resource): "1"}
    if not group and resource in _LEGACY_COUNTS:
        usage[resource] = "1"
    return usage


def matching_resources(group: str, resource: str, names: Iterable[str]) -> list[str]:
    """Which of a quota's resource ``names`` an object of this resource can use (MatchingResources)."""
    matched: list[str] = []
    for name in names:
        if not group and resource == "pods":
            ok = name in _POD_RESOURCES or name.startswith(("hugepages-", "requests.hugepages-")) or (
                name.startswith("requests.") and _is_extended(name[len("requests."):]))
        elif not group and resource == "services":
            ok = name in ("count/services", "services", "services.nodeports", "services.loadbalancers")
        elif not group and resource == "persistentvolumeclaims":
            ok = name in ("count/persistentvolumeclaims", "persistentvolumeclaims", "requests.storage") or (
                _STORAGE_CLASS_SUFFIX in name and name.endswith(("/persistentvolumeclaims", "/requests.storage")))
        else:
            ok = name == _count_name(group, resource) or (not group and name == resource and name in _LEGACY_COUNTS)
        if ok:
            matched.append(name)
    return sorted(matched)


def evaluated_resources(names: Iterable[str]) -> set[tuple[str, str]]:
    """(group, plural) of every resource whose objects a quota with these ``names`` counts."""
    found: set[tuple[str, str]] = set()
    for name in names:
        if name.startswith("count/"):
            plural, _, group = name[len("count/"):].partition(".")
            found.add((group, plural))
        elif name in _LEGACY_COUNTS:
            found.add(("", name))
        elif name.startswith("services."):
            found.add(("", "services"))
        elif name == "requests.storage" or _STORAGE_CLASS_SUFFIX in name:
            found.add(("", "persistentvolumeclaims"))
        elif matching_resources("", "pods", [name]):
            found.add(("", "pods"))
    return found


# -- scopes ------------------------------------------------------------------------------------

def _pod_scope_matches(pod: Object, scope: str, operator: str = "Exists", values: Iterable[str] = ()) -> bool:
    spec = pod.get("spec") or {}
    if scope == "Terminating":
        return spec.get("activeDeadlineSeconds") is not None
    if scope == "NotTerminating":
        return spec.get("activeDeadlineSeconds") is None
    best_effort = not any((c.get("resources") or {}).get(kind)
                          for c in [*(spec.get("containers") or ()), *(spec.get("initContainers") or ())]
                          for kind in ("requests", "limits"))
    if scope == "BestEffort":
        return best_effort
    if scope == "NotBestEffort":
        return not best_effort
    if scope == "PriorityClass":
        name = spec.get("priorityClassName") or ""
        return {"Exists": bool(name), "DoesNotExist": not name,
                "In": name in set(values), "NotIn": name not in set(values)}.get(operator, False)
    if scope == "CrossNamespacePodAffinity":
        affinity = spec.get("affinity") or {}
        terms = [term for kind in ("podAffinity", "podAntiAffinity")
                 for rule in ("requiredDuringSchedulingIgnoredDuringExecution",
                              "preferredDuringSchedulingIgnoredDuringExecution")
                 for term in (affinity.get(kind) or {}).get(rule) or ()]
        return any((t.get("podAffinityTerm") or t).get("namespaces") or
                   (t.get("podAffinityTerm") or t).get("namespaceSelector") is not None for t in terms)
    return False


def quota_matches(quota: Object, group: str, resource: str, obj: Object) -> bool:
    """Whether a quota's scopes select ``obj``: scoped quotas only ever count pods."""
    spec = quota.get("spec") or {}
    scopes = [(scope, "Exists", ()) for scope in spec.get("scopes") or ()]
    scopes += [(req.get("scopeName", ""), req.get("operator", ""), req.get("values") or ())
               for req in (spec.get("scopeSelector") or {}).get("matchExpressions") or ()]
    if not scopes:
        return True
    if group or resource != "pods":
        return False
    return all(_pod_scope_matches(obj, *scope) for scope in scopes)


# -- the controller's recount ------------------------------------------------------------------

def calculate_usage(quota: Object, objects: dict[tuple[str, str], list[Object]]) -> ResourceList:
    """``status.used`` for ``quota`` given every object of the evaluated resources in its
    namespace; each hard resource appears, at "0" when nothing uses it."""
    hard = (quota.get("spec") or {}).get("hard") or {}
    used: ResourceList = {name: "0" for name in hard}
    for (group, resource), items in objects.items():
        names = matching_resources(group, resource, hard)
        for obj in items:
            if not names or not quota_matches(quota, group, resource, obj):
                continue
            for name, value in object_usage(group, resource, obj).items():
                if name in used:
                    used[name] = add_quantities(used[name], value)
    return used


# -- admission ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Request:
    group: str
    resource: str
    obj: Object
    old: Object | None


def _missing_requests(containers: Iterable[dict[str, Any]], required: set[str]) -> dict[str, set[str]]:
    """enforcePodContainerConstraints: per required resource, the containers not setting it."""
    missing: dict[str, set[str]] = {}
    for container in containers:
        resources = container.get("resources") or {}
        present = set(_compute_usage(resources.get("requests") or {}, resources.get("limits") or {}))
        for name in required - present:
            missing.setdefault(name, set()).add(container.get("name", ""))
    return missing


def _constraints(request: _Request, restricted: list[str]) -> str:
    if request.group or request.resource != "pods":
        return ""
    spec = request.obj.get("spec") or {}
    missing = _missing_requests([*(spec.get("containers") or ()), *(spec.get("initContainers") or ())],
                                set(restricted) & _VALIDATION_SET)
    if not missing:
        return ""
    return "must specify " + "; ".join(f"{name} for: {','.join(sorted(missing[name]))}" for name in sorted(missing))


def _pretty(usage: ResourceList) -> str:
    return ",".join(f"{name}={usage[name]}" for name in sorted(usage))


def _delta(request: _Request) -> ResourceList:
    usage = object_usage(request.group, request.resource, request.obj)
    if request.old is not None and (request.old.get("metadata") or {}).get("resourceVersion"):
        before = object_usage(request.group, request.resource, request.old)
        for name, value in list(usage.items()):
            if name in before:
                less = (parse_quantity(value) or Fraction(0)) - (parse_quantity(before[name]) or Fraction(0))
                usage[name] = format_quantity(max(less, Fraction(0)), quantity_format(value))
    return {name: value for name, value in usage.items() if parse_quantity(value)}


def charge(quotas: list[Object], group: str, resource: str, obj: Object,
           old: Object | None = None) -> dict[str, ResourceList]:
    """CheckRequest: the new ``status.used`` of each quota this request changes (by name), or
    :class:`Refusal`. Quotas constrain only once the controller has set ``status.hard``."""
    request = _Request(group, resource, obj, old)
    interesting: list[Object] = []
    for quota in sorted(quotas, key=lambda q: q["metadata"]["name"]):
        name = quota["metadata"]["name"]
        status = quota.get("status") or {}
        restricted = matching_resources(group, resource, status.get("hard") or {})
        if not quota_matches(quota, group, resource, obj) or not restricted:
            continue
        problem = _constraints(request, restricted)
        if problem:
            raise Refusal(f"failed quota: {name}: {problem}")
        if any(r not in (status.get("used") or {}) for r in restricted):
            raise Refusal(f"status unknown for quota: {name}, resources: {','.join(restricted)}")
        interesting.append(quota)
    if not interesting:
        return {}
    delta = _delta(request)
    if not delta:
        return {}
    charged: dict[str, ResourceList] = {}
    for quota in interesting:
        status = quota.get("status") or {}
        hard, used = status.get("hard") or {}, dict(status.get("used") or {})
        requested = {name: value for name, value in delta.items() if name in hard}
        new_used = dict(used)
        for name, value in requested.items():
            new_used[name] = add_quantities(used[name], value) if name in used else value
        exceeded = sorted(name for name in requested
                          if (parse_quantity(new_used[name]) or 0) > (parse_quantity(hard[name]) or 0))
        if exceeded:
            raise Refusal(
                f"exceeded quota: {quota['metadata']['name']}, "
                f"requested: {_pretty({n: requested[n] for n in exceeded})}, "
                f"used: {_pretty({n: used[n] for n in exceeded if n in used})}, "
                f"limited: {_pretty({n: hard[n] for n in exceeded})}")
        if requested:
            charged[quota["metadata"]["name"]] = new_used
    return charged
