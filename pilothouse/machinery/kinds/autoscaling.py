"""autoscaling: HorizontalPodAutoscaler, served as autoscaling/v2 (preferred) and autoscaling/v1.

Defaults of pkg/apis/autoscaling/v2/defaults.go (minReplicas 1, a CPU 80% utilization metric when
none is given, the scale-up/scale-down behavior rules once ``behavior`` is set) and the rules of
ValidateHorizontalPodAutoscaler users hit. The horizontal-pod-autoscaler controller
(components/controllers/hpa.py) keeps targets within min/max; with no metrics API it does no more.
"""

from __future__ import annotations

import json
from typing import Any

from pilothouse.machinery.errors import FieldError
from pilothouse.machinery.kinds import prepare as p
from pilothouse.machinery.kinds.onupdate import same_on_update
from pilothouse.machinery.kinds.types import Object, Strategy, status_strategy
from pilothouse.machinery.kinds.vcommon import invalid, required

__all__ = ["HPA_V1", "HPA_V1_STATUS", "HPA_V2", "HPA_V2_STATUS", "convert_hpa", "default_hpa_v2", "validate_hpa"]

_SCALE_UP_POLICIES = ({"type": "Pods", "value": 4, "periodSeconds": 15},
                      {"type": "Percent", "value": 100, "periodSeconds": 15})
_SCALE_DOWN_POLICIES = ({"type": "Percent", "value": 100, "periodSeconds": 15},)


def _scaling_rules(rules: dict[str, Any] | None, window: int, policies: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    """GenerateHPAScaleUpRules / GenerateHPAScaleDownRules: fill what the user left out."""
    rules = dict(rules or {})
    rules.setdefault("stabilizationWindowSeconds", window)
    rules.setdefault("selectPolicy", "Max")
    if not rules.get("policies"):
        rules["policies"] = [dict(policy) for policy in policies]
    return rules


def default_hpa_v2(hpa: Object) -> None:
    spec = hpa.setdefault("spec", {})
    spec.setdefault("minReplicas", 1)
    if not spec.get("metrics"):
        spec["metrics"] = [{"type": "Resource", "resource": {
            "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]
    behavior = spec.get("behavior")
    if behavior is not None:
        behavior["scaleUp"] = _scaling_rules(behavior.get("scaleUp"), 0, _SCALE_UP_POLICIES)
        behavior["scaleDown"] = _scaling_rules(behavior.get("scaleDown"), 300, _SCALE_DOWN_POLICIES)


def default_hpa_v1(hpa: Object) -> None:
    hpa.setdefault("spec", {}).setdefault("minReplicas", 1)


def validate_hpa(hpa: Object) -> list[FieldError]:
    spec = hpa.get("spec") or {}
    errors: list[FieldError] = []
    ref = spec.get("scaleTargetRef") or {}
    for key in ("kind", "name"):
        if not ref.get(key):
            errors.append(required(f"spec.scaleTargetRef.{key}"))
    minimum = spec.get("minReplicas")
    maximum = spec.get("maxReplicas")
    if isinstance(minimum, int) and minimum < 1:
        errors.append(invalid("spec.minReplicas", minimum, "must be greater than or equal to 1"))
    if isinstance(maximum, int):
        if maximum < 1:
            errors.append(invalid("spec.maxReplicas", maximum, "must be greater than 0"))
        elif isinstance(minimum, int) and maximum < minimum:
            errors.append(invalid("spec.maxReplicas", maximum, "must be greater than or equal to `minReplicas`"))
    target = spec.get("targetCPUUtilizationPercentage")  # v1 only
    if isinstance(target, int) and target < 1:
        errors.append(invalid("spec.targetCPUUtilizationPercentage", target, "must be greater than 0"))
    return errors


# Go's zero status, as each version serializes it (v1 has no omitempty on either count).
_ZERO_STATUS = {"v1": {"currentReplicas": 0, "desiredReplicas": 0}, "v2": {"desiredReplicas": 0}}


def _strategy(default: Any, version: str) -> Strategy:
    def prepare_for_create(hpa: Object) -> None:
        hpa["status"] = dict(_ZERO_STATUS[version])

    return Strategy(default=default, validate=validate_hpa, validate_update=same_on_update(validate_hpa),
                    prepare_for_create=prepare_for_create,
                    prepare_for_update=p.update_keeping_status(generation=False))


HPA_V2 = _strategy(default_hpa_v2, "v2")
HPA_V2_STATUS = status_strategy(HPA_V2)
HPA_V1 = _strategy(default_hpa_v1, "v1")
HPA_V1_STATUS = status_strategy(HPA_V1)


# -- conversion between autoscaling/v1 and autoscaling/v2 ------------------------------------------
#
# As pkg/apis/autoscaling/v1/conversion.go does, v1 carries only the CPU utilization target; what it
# cannot express (other metrics, behavior, conditions, current metrics) rides in annotations so that
# a v2 object read and written back through v1 loses nothing. The annotations hold the v2 JSON (not
# Kubernetes' older alpha shape), which only pilothouse reads.

_ANNOTATIONS = {"metrics": "autoscaling.alpha.kubernetes.io/metrics",
                "behavior": "autoscaling.alpha.kubernetes.io/behavior",
                "conditions": "autoscaling.alpha.kubernetes.io/conditions",
                "currentMetrics": "autoscaling.alpha.kubernetes.io/current-metrics"}


def _is_cpu_utilization(metric: dict[str, Any], target_key: str) -> bool:
    resource = metric.get("resource") or {}
    return (metric.get("type") == "Resource" and resource.get("name") == "cpu"
            and (resource.get(target_key) or {}).get("averageUtilization") is not None)


def _to_v1(hpa: Object) -> Object:
    spec = hpa.get("spec") or {}
    status = hpa.get("status") or {}
    annotations = dict((hpa.get("metadata") or {}).get("annotations") or {})
    v1_spec: dict[str, Any] = {key: spec[key] for key in ("scaleTargetRef", "minReplicas", "maxReplicas")
                               if key in spec}
    metrics = spec.get("metrics") or []
    cpu = [m for m in metrics if _is_cpu_utilization(m, "target")]
    if cpu:
        v1_spec["targetCPUUtilizationPercentage"] = cpu[0]["resource"]["target"]["averageUtilization"]
    v1_status: dict[str, Any] = dict(_ZERO_STATUS["v1"])
    v1_status |= {key: status[key] for key in
                                 ("observedGeneration", "lastScaleTime", "currentReplicas", "desiredReplicas")
                                 if key in status}
    current = status.get("currentMetrics") or []
    current_cpu = [m for m in current if _is_cpu_utilization(m, "current")]
    if current_cpu:
        v1_status["currentCPUUtilizationPercentage"] = current_cpu[0]["resource"]["current"]["averageUtilization"]
    extra = {"metrics": [m for m in metrics if m not in cpu[:1]], "behavior": spec.get("behavior"),
             "conditions": status.get("conditions"), "currentMetrics": [m for m in current if m not in current_cpu[:1]]}
    for field, value in extra.items():
        if value:
            annotations[_ANNOTATIONS[field]] = json.dumps(value, separators=(",", ":"))
    converted: Object = {**hpa, "apiVersion": "autoscaling/v1", "spec": v1_spec}
    converted["metadata"] = {**(hpa.get("metadata") or {})}
    if annotations:
        converted["metadata"]["annotations"] = annotations
    if "status" in hpa:
        converted["status"] = v1_status
    return converted


def _to_v2(hpa: Object) -> Object:
    spec = hpa.get("spec") or {}
    status = hpa.get("status") or {}
    annotations = dict((hpa.get("metadata") or {}).get("annotations") or {})
    extra = {field: json.loads(annotations.pop(key)) for field, key in _ANNOTATIONS.items() if key in annotations}
    v2_spec: dict[str, Any] = {key: spec[key] for key in ("scaleTargetRef", "minReplicas", "maxReplicas")
                               if key in spec}
    metrics = []
    if spec.get("targetCPUUtilizationPercentage") is not None:
        metrics.append({"type": "Resource", "resource": {"name": "cpu", "target": {
            "type": "Utilization", "averageUtilization": spec["targetCPUUtilizationPercentage"]}}})
    metrics += extra.get("metrics") or []
    if metrics:
        v2_spec["metrics"] = metrics
    if extra.get("behavior"):
        v2_spec["behavior"] = extra["behavior"]
    v2_status: dict[str, Any] = dict(_ZERO_STATUS["v2"])
    v2_status |= {key: status[key] for key in
                                 ("observedGeneration", "lastScaleTime", "currentReplicas", "desiredReplicas")
                                 if key in status}
    current = []
    if status.get("currentCPUUtilizationPercentage") is not None:
        current.append({"type": "Resource", "resource": {"name": "cpu", "current": {
            "averageUtilization": status["currentCPUUtilizationPercentage"]}}})
    current += extra.get("currentMetrics") or []
    if current:
        v2_status["currentMetrics"] = current
    if extra.get("conditions"):
        v2_status["conditions"] = extra["conditions"]
    converted: Object = {**hpa, "apiVersion": "autoscaling/v2", "spec": v2_spec}
    converted["metadata"] = {**(hpa.get("metadata") or {})}
    if annotations:
        converted["metadata"]["annotations"] = annotations
    else:
        converted["metadata"].pop("annotations", None)
    if "status" in hpa:
        converted["status"] = v2_status
    # kube-apiserver stores HPAs as v2 and defaults what it decodes: a v1 object without a CPU target
    # reads back with v2's default metric.
    default_hpa_v2(converted)
    return converted


def convert_hpa(hpa: Object, version: str) -> Object:
    """``hpa`` (autoscaling/v1 or v2) as autoscaling/``version``."""
    current = str(hpa.get("apiVersion", "")).rpartition("/")[2]
    if current == version:
        return hpa
    return _to_v1(hpa) if version == "v1" else _to_v2(hpa)
