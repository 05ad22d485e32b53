"""Kind rules of ResourceQuota and LimitRange (pkg/apis/core/validation: ValidateResourceQuota,
ValidateLimitRange): the objects the ResourceQuota and LimitRanger admission plugins read, so a
quota naming a resource nothing counts, a negative limit or a default above the max is refused
when written rather than misbehaving at every pod create.
"""

from __future__ import annotations

from typing import Any

from pilothouse.machinery.errors import FieldError
from pilothouse.machinery.kinds.quantity import format_quantity, parse_quantity, quantity_format
from pilothouse.machinery.kinds.types import Object
from pilothouse.machinery.kinds.vcommon import GoValue, duplicate, forbidden, invalid, required

__all__ = ["validate_limit_range", "validate_resource_quota"]

_COMPUTE = ("cpu", "memory", "ephemeral-storage")
# helper.IsStandardQuotaResourceName (names without a "/"; hugepages- ones too).
_STANDARD_QUOTA = frozenset([
    *_COMPUTE, *(f"requests.{r}" for r in _COMPUTE), *(f"limits.{r}" for r in _COMPUTE), "requests.storage",
    "pods", "services", "replicationcontrollers", "resourcequotas", "secrets", "persistentvolumeclaims",
    "configmaps", "services.nodeports", "services.loadbalancers",
])
_INTEGER = frozenset(["pods", "services", "replicationcontrollers", "resourcequotas", "secrets", "configmaps",
                      "persistentvolumeclaims", "services.nodeports", "services.loadbalancers"])
_SCOPES = ("BestEffort", "CrossNamespacePodAffinity", "NotBestEffort", "NotTerminating", "PriorityClass",
           "Terminating")
_LIMIT_TYPES = ("Container", "PersistentVolumeClaim", "Pod")


def _text(value: Any) -> str:
    number = parse_quantity(value)
    return format_quantity(number, quantity_format(value)) if number is not None else str(value)


def _is_integer_name(name: str) -> bool:
    """helper.IsIntegerResourceName: object counts, and extended resources (any name with a "/"
    outside kubernetes.io, count/<resource> included)."""
    return name in _INTEGER or ("/" in name and not name.startswith(("kubernetes.io/", "requests.")))


def _quantity_errors(name: str, value: Any, path: str) -> list[FieldError]:
    amount = parse_quantity(value)
    if amount is None:
        return []  # the schema check reports what is not a quantity at all
    if amount < 0:
        return [invalid(path, _text(value), "must be greater than or equal to 0")]
    if _is_integer_name(name) and amount.denominator != 1:
        return [invalid(path, _text(value), "must be an integer")]
    return []


def _resource_list_errors(resources: dict[str, Any], path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    for name, value in sorted(resources.items()):
        key_path = f"{path}[{name}]"
        if "/" not in name and name not in _STANDARD_QUOTA and not name.startswith(
                ("hugepages-", "requests.hugepages-")):
            errors.append(invalid(key_path, name, "must be a standard resource for quota"))
        errors += _quantity_errors(name, value, key_path)
    return errors


_POD_COMPUTE = frozenset(["pods", "cpu", "memory", "limits.cpu", "limits.memory", "requests.cpu", "requests.memory"])


def _scope_errors(spec: dict[str, Any]) -> list[FieldError]:
    """validateResourceQuotaScopes and the scope selector's scope names."""
    scopes = list(spec.get("scopes") or ())
    shown = GoValue(scopes, "[]core.ResourceQuotaScope{" + ", ".join(f'"{s}"' for s in scopes) + "}")
    errors: list[FieldError] = []
    for scope in scopes:
        if scope not in _SCOPES:
            errors.append(invalid("spec.scopes", shown, "unsupported scope"))
        # helper.IsResourceQuotaScopeValidForResource: scopes select pods, so they fit pod resources only.
        fits = {"pods"} if scope in ("BestEffort", "NotBestEffort") else _POD_COMPUTE
        errors += [invalid("spec.scopes", shown, "unsupported scope applied to resource")
                   for name in sorted(spec.get("hard") or {}) if name in _STANDARD_QUOTA and name not in fits]
    for a, b in (("BestEffort", "NotBestEffort"), ("Terminating", "NotTerminating")):
        if a in scopes and b in scopes:
            errors.append(invalid("spec.scopes", shown, "conflicting scopes"))
    for expression in (spec.get("scopeSelector") or {}).get("matchExpressions") or ():
        if expression.get("scopeName") not in _SCOPES:
            errors.append(invalid("spec.scopeSelector.scopeName", expression.get("scopeName"), "unsupported scope"))
    return errors


def validate_resource_quota(rq: Object) -> list[FieldError]:
    spec = rq.get("spec") or {}
    status = rq.get("status") or {}
    return (_resource_list_errors(spec.get("hard") or {}, "spec.hard") + _scope_errors(spec)
            + _resource_list_errors(status.get("hard") or {}, "status.hard")
            + _resource_list_errors(status.get("used") or {}, "status.used"))


# (smaller, larger, the field the error names, whose value it shows, message): the order rules
# between one resource's min, defaultRequest, default and max, in Kubernetes' order.
_ORDER = (
    ("min", "max", "min", "min", "min value {min} is greater than max value {max}"),
    ("min", "defaultRequest", "defaultRequest", "defaultRequest",
     "min value {min} is greater than default request value {defaultRequest}"),
    ("defaultRequest", "max", "defaultRequest", "defaultRequest",
     "default request value {defaultRequest} is greater than max value {max}"),
    ("defaultRequest", "default", "defaultRequest", "defaultRequest",
     "default request value {defaultRequest} is greater than default limit value {default}"),
    ("min", "default", "default", "min", "min value {min} is greater than default value {default}"),
    ("default", "max", "default", "max", "default value {default} is greater than max value {max}"),
)


def _bound_errors(path: str, name: str, bounds: dict[str, dict[str, Any]]) -> list[FieldError]:
    amounts = {kind: parse_quantity(values[name]) for kind, values in bounds.items() if name in values}
    shown = {kind: _text(values[name]) for kind, values in bounds.items() if name in values}
    errors = [invalid(f"{path}.{field}[{name}]", shown[value], message.format(**shown))
              for smaller, larger, field, value, message in _ORDER
              if smaller in amounts and larger in amounts
              and (amounts[smaller] or 0) > (amounts[larger] or 0)]
    ratio, low, high = amounts.get("maxLimitRequestRatio"), amounts.get("min"), amounts.get("max")
    if ratio is not None and ratio < 1:
        errors.append(invalid(f"{path}.maxLimitRequestRatio[{name}]", shown["maxLimitRequestRatio"],
                              f"ratio {shown['maxLimitRequestRatio']} is less than 1"))
    if ratio is not None and low and high is not None and ratio > high / low:
        errors.append(invalid(f"{path}.maxLimitRequestRatio[{name}]", shown["maxLimitRequestRatio"],
                              f"ratio {shown['maxLimitRequestRatio']} is greater than max/min = {float(high / low):f}"))
    return errors


def validate_limit_range(lr: Object) -> list[FieldError]:
    errors: list[FieldError] = []
    seen: set[str] = set()
    for i, item in enumerate((lr.get("spec") or {}).get("limits") or ()):
        path = f"spec.limits[{i}]"
        kind = item.get("type") or ""
        if kind not in _LIMIT_TYPES and "/" not in kind:
            errors.append(invalid(f"{path}.type", kind, "must be a standard limit type or fully qualified"))
        if kind in seen:
            errors.append(duplicate(f"{path}.type", kind))
        seen.add(kind)
        if kind == "Pod":
            for field in ("default", "defaultRequest"):
                if item.get(field):
                    errors.append(forbidden(f"{path}.{field}", "may not be specified when `type` is 'Pod'"))
        if kind == "PersistentVolumeClaim" and "storage" not in (item.get("min") or {}) \
                and "storage" not in (item.get("max") or {}):
            errors.append(required(f"{path}.limits", "either minimum or maximum storage value is required, but "
                                   "neither was provided"))
        bounds = {field: dict(item.get(field) or {}) for field in
                  ("min", "max", "default", "defaultRequest", "maxLimitRequestRatio")}
        for name in sorted({name for values in bounds.values() for name in values}):
            errors += _bound_errors(path, name, bounds)
    return errors
