"""autoscaling: HorizontalPodAutoscaler, served as autoscaling/v2 (preferred) and autoscaling/v1.

Defaults of pkg/apis/autoscaling/v2/defaults.go (minReplicas 1, a CPU 80% utilization metric when
none is given, the scale-up/scale-down behavior rules once ``behavior`` is set) and the rules of
ValidateHorizontalPodAutoscaler users hit. There is no HPA controller yet (no metrics API either):
objects are stored and served, status stays empty.
"""

from __future__ import annotations

from typing import Any

from pilothouse.machinery.errors import FieldError
from pilothouse.machinery.kinds import prepare as p
from pilothouse.machinery.kinds.onupdate import same_on_update
from pilothouse.machinery.kinds.types import Object, Strategy, status_strategy
from pilothouse.machinery.kinds.vcommon import invalid, required

__all__ = ["HPA_V1", "HPA_V1_STATUS", "HPA_V2", "HPA_V2_STATUS", "default_hpa_v2", "validate_hpa"]

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


def _strategy(default: Any) -> Strategy:
    return Strategy(default=default, validate=validate_hpa, validate_update=same_on_update(validate_hpa),
                    prepare_for_create=p.create_with_zero_status("HorizontalPodAutoscaler", generation=False),
                    prepare_for_update=p.update_keeping_status(generation=False))


HPA_V2 = _strategy(default_hpa_v2)
HPA_V2_STATUS = status_strategy(HPA_V2)
HPA_V1 = _strategy(default_hpa_v1)
HPA_V1_STATUS = status_strategy(HPA_V1)
