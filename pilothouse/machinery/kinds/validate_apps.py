"""Kind rules of the apps/v1 workloads (pkg/apis/apps/validation/validation.go).

The rules users meet most: a selector is required, must not be empty and must match the template's
labels; replicas are non-negative; the pod template must restart Always; and in apps/v1 the
selector can never change (``field is immutable``). StatefulSets also forbid most spec changes.
"""

from __future__ import annotations

import re
from typing import Any

from pilothouse.machinery.errors import FieldError
from pilothouse.machinery.kinds.types import Object
from pilothouse.machinery.kinds.validate_pod import validate_controller_template, validate_pod_template
from pilothouse.machinery.kinds.vcommon import (
    GoValue,
    forbidden,
    go_labels,
    go_selector,
    invalid,
    label_selector_matches,
    nonnegative,
    not_supported,
    required,
    validate_label_selector,
)

__all__ = [
    "validate_daemonset",
    "validate_daemonset_update",
    "validate_deployment",
    "validate_deployment_update",
    "validate_replicaset",
    "validate_replicaset_update",
    "validate_selector_and_template",
    "validate_statefulset",
    "validate_statefulset_update",
]

_PERCENT = re.compile(r"^[0-9]+%$")
_PERCENT_MSG = ("a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  "
                "or '93%', regex used for validation is '[0-9]+%')")


def _spec(obj: Object) -> dict[str, Any]:
    return obj.get("spec") or {}


def _template_labels(spec: dict[str, Any]) -> dict[str, str] | None:
    return ((spec.get("template") or {}).get("metadata") or {}).get("labels")


def validate_selector_and_template(spec: dict[str, Any], kind_name: str, path: str = "spec",
                                   restart_always: bool = True) -> list[FieldError]:
    """Selector present, non-empty, matching the template; the template's own pod rules."""
    errors: list[FieldError] = []
    selector = spec.get("selector")
    if selector is None:
        errors.append(required(f"{path}.selector"))
    else:
        errors += validate_label_selector(selector, f"{path}.selector")
        if not selector.get("matchLabels") and not selector.get("matchExpressions"):
            errors.append(invalid(f"{path}.selector", go_selector(selector),
                                  f"empty selector is invalid for {kind_name}"))
        elif not label_selector_matches(selector, _template_labels(spec)):
            errors.append(invalid(f"{path}.template.metadata.labels", go_labels(_template_labels(spec)),
                                  "`selector` does not match template `labels`"))
    template = spec.get("template")
    if restart_always:
        errors += validate_controller_template(template, f"{path}.template", "ReplicaSet")
    else:
        errors += validate_pod_template(template, f"{path}.template")
    return errors


def _int_or_percent(value: Any, path: str) -> list[FieldError]:
    """ValidatePositiveIntOrPercent."""
    if isinstance(value, str):
        if not _PERCENT.match(value):
            return [invalid(path, value, _PERCENT_MSG)]
        return []
    return nonnegative(value, path)


def _int_or_percent_value(value: Any) -> int:
    if isinstance(value, str):
        return int(value[:-1]) if _PERCENT.match(value) else -1
    return value if isinstance(value, int) else -1


def _not_more_than_100_percent(value: Any, path: str) -> list[FieldError]:
    if isinstance(value, str) and _PERCENT.match(value) and int(value[:-1]) > 100:
        return [invalid(path, value, "must not be greater than 100%")]
    return []


def _common_counts(spec: dict[str, Any]) -> list[FieldError]:
    errors = nonnegative(spec.get("replicas"), "spec.replicas")
    errors += nonnegative(spec.get("minReadySeconds"), "spec.minReadySeconds")
    errors += nonnegative(spec.get("revisionHistoryLimit"), "spec.revisionHistoryLimit")
    return errors


def _immutable_selector(new: Object, old: Object) -> list[FieldError]:
    new_selector = _spec(new).get("selector")
    if new_selector != _spec(old).get("selector"):
        return [invalid("spec.selector", go_selector(new_selector), "field is immutable")]
    return []


# -- Deployment --------------------------------------------------------------------------------

def _deployment_strategy(strategy: dict[str, Any]) -> list[FieldError]:
    errors: list[FieldError] = []
    kind = strategy.get("type")
    rolling = strategy.get("rollingUpdate")
    if kind == "Recreate":
        if rolling is not None:
            errors.append(forbidden("spec.strategy.rollingUpdate",
                                    "may not be specified when strategy `type` is 'Recreate'"))
    elif kind == "RollingUpdate":
        if rolling is None:
            errors.append(required("spec.strategy.rollingUpdate", "this should be defaulted and never be nil"))
        else:
            path = "spec.strategy.rollingUpdate"
            unavailable = rolling.get("maxUnavailable")
            surge = rolling.get("maxSurge")
            errors += _int_or_percent(unavailable, f"{path}.maxUnavailable")
            errors += _int_or_percent(surge, f"{path}.maxSurge")
            if _int_or_percent_value(unavailable) == 0 and _int_or_percent_value(surge) == 0:
                errors.append(invalid(f"{path}.maxUnavailable", unavailable, "may not be 0 when `maxSurge` is 0"))
            errors += _not_more_than_100_percent(unavailable, f"{path}.maxUnavailable")
    else:
        errors.append(not_supported("spec.strategy", GoValue(strategy, f"apps.DeploymentStrategy{{Type:\"{kind}\"}}"),
                                    ("Recreate", "RollingUpdate")))
    return errors


def validate_deployment(deployment: Object) -> list[FieldError]:
    spec = _spec(deployment)
    errors = _common_counts(spec)
    errors += validate_selector_and_template(spec, "deployment")
    errors += _deployment_strategy(spec.get("strategy") or {})
    deadline = spec.get("progressDeadlineSeconds")
    if deadline is not None:
        errors += nonnegative(deadline, "spec.progressDeadlineSeconds")
        if isinstance(deadline, int) and deadline <= (spec.get("minReadySeconds") or 0):
            errors.append(invalid("spec.progressDeadlineSeconds", deadline, "must be greater than minReadySeconds"))
    return errors


def validate_deployment_update(new: Object, old: Object) -> list[FieldError]:
    return _immutable_selector(new, old)


# -- ReplicaSet --------------------------------------------------------------------------------

def validate_replicaset(replicaset: Object) -> list[FieldError]:
    spec = _spec(replicaset)
    # Kubernetes' ReplicaSet message really does say "deployment".
    return _common_counts(spec) + validate_selector_and_template(spec, "deployment")


def validate_replicaset_update(new: Object, old: Object) -> list[FieldError]:
    return _immutable_selector(new, old)


# -- StatefulSet -------------------------------------------------------------------------------

def validate_statefulset(statefulset: Object) -> list[FieldError]:
    spec = _spec(statefulset)
    errors = _common_counts(spec)
    policy = spec.get("podManagementPolicy", "")
    if policy not in ("OrderedReady", "Parallel"):
        errors.append(invalid("spec.podManagementPolicy", policy, "must be 'OrderedReady' or 'Parallel'"))
    strategy = spec.get("updateStrategy") or {}
    kind = strategy.get("type")
    if kind == "OnDelete":
        if strategy.get("rollingUpdate") is not None:
            errors.append(invalid("spec.updateStrategy.rollingUpdate",
                                  GoValue(strategy["rollingUpdate"], "apps.RollingUpdateStatefulSetStrategy{...}"),
                                  "only allowed for updateStrategy 'RollingUpdate'"))
    elif kind == "RollingUpdate":
        rolling = strategy.get("rollingUpdate") or {}
        errors += nonnegative(rolling.get("partition"), "spec.updateStrategy.rollingUpdate.partition")
    else:
        shown = GoValue(strategy, f'apps.StatefulSetUpdateStrategy{{Type:"{kind or ""}"}}')
        errors.append(invalid("spec.updateStrategy", shown, "must be 'RollingUpdate' or 'OnDelete'"))
    retention = spec.get("persistentVolumeClaimRetentionPolicy") or {}
    for key in ("whenDeleted", "whenScaled"):
        value = retention.get(key)
        if value is not None and value not in ("Retain", "Delete"):
            errors.append(not_supported(f"spec.persistentVolumeClaimRetentionPolicy.{key}", value,
                                        ("Retain", "Delete")))
    ordinals = spec.get("ordinals") or {}
    errors += nonnegative(ordinals.get("start"), "spec.ordinals.start")
    errors += [e if "activeDeadlineSeconds" not in e.field else
               forbidden(e.field, "activeDeadlineSeconds in StatefulSet is not Supported")
               for e in validate_selector_and_template(spec, "statefulset")]
    return errors


_STATEFULSET_MUTABLE = ("replicas", "ordinals", "template", "updateStrategy",
                        "persistentVolumeClaimRetentionPolicy", "minReadySeconds")


def validate_statefulset_update(new: Object, old: Object) -> list[FieldError]:
    errors: list[FieldError] = []
    new_rest = {k: v for k, v in _spec(new).items() if k not in _STATEFULSET_MUTABLE}
    old_rest = {k: v for k, v in _spec(old).items() if k not in _STATEFULSET_MUTABLE}
    if new_rest != old_rest:
        errors.append(forbidden("spec", "updates to statefulset spec for fields other than 'replicas', "
                                "'ordinals', 'template', 'updateStrategy', "
                                "'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"))
    return errors


# -- DaemonSet ---------------------------------------------------------------------------------

def validate_daemonset(daemonset: Object) -> list[FieldError]:
    spec = _spec(daemonset)
    errors = nonnegative(spec.get("minReadySeconds"), "spec.minReadySeconds")
    errors += nonnegative(spec.get("revisionHistoryLimit"), "spec.revisionHistoryLimit")
    for error in validate_selector_and_template(spec, "daemonset"):
        if "activeDeadlineSeconds" in error.field:
            deadline = ((spec.get("template") or {}).get("spec") or {}).get("activeDeadlineSeconds")
            error = invalid(error.field, deadline, "activeDeadlineSeconds in DaemonSet is not Supported")
        errors.append(error)
    strategy = spec.get("updateStrategy") or {}
    kind = strategy.get("type")
    if kind == "RollingUpdate":
        rolling = strategy.get("rollingUpdate")
        if rolling is None:
            errors.append(required("spec.updateStrategy.rollingUpdate"))
        else:
            path = "spec.updateStrategy.rollingUpdate"
            unavailable = rolling.get("maxUnavailable")
            surge = rolling.get("maxSurge")
            errors += _int_or_percent(unavailable, f"{path}.maxUnavailable")
            errors += _int_or_percent(surge, f"{path}.maxSurge")
            errors += _not_more_than_100_percent(unavailable, f"{path}.maxUnavailable")
            errors += _not_more_than_100_percent(surge, f"{path}.maxSurge")
            has_unavailable = _int_or_percent_value(unavailable) != 0
            has_surge = _int_or_percent_value(surge) != 0
            if has_unavailable and has_surge:
                errors.append(invalid(f"{path}.maxSurge", surge, "may not be set when maxUnavailable is non-zero"))
            elif not has_unavailable and not has_surge:
                errors.append(required(f"{path}.maxUnavailable", "cannot be 0 when maxSurge is 0"))
    elif kind != "OnDelete":
        errors.append(not_supported("spec.updateStrategy", kind or "", ("OnDelete", "RollingUpdate")))
    return errors


def validate_daemonset_update(new: Object, old: Object) -> list[FieldError]:
    return _immutable_selector(new, old)
