"""flowcontrol.apiserver.k8s.io/v1: FlowSchema and PriorityLevelConfiguration.

Defaults from pkg/apis/flowcontrol/v1/defaults.go, the rules of pkg/apis/flowcontrol/validation users
hit, and the two mandatory configuration objects kube-apiserver keeps (``exempt``, ``catch-all``;
staging/src/k8s.io/apiserver/pkg/apis/flowcontrol/bootstrap/default.go). pilothouse does no API
priority and fairness yet: the objects are stored and served, no controller writes their status.
"""

from __future__ import annotations

from typing import Any

from pilothouse.machinery.errors import FieldError
from pilothouse.machinery.kinds import prepare as p
from pilothouse.machinery.kinds.onupdate import same_on_update
from pilothouse.machinery.kinds.types import (
    Object,
    Strategy,
    keep_status_on_update,
    status_strategy,
)
from pilothouse.machinery.kinds.vcommon import forbidden, invalid, not_supported, required

__all__ = ["FLOWSCHEMA", "FLOWSCHEMA_STATUS", "MANDATORY_OBJECTS", "PRIORITYLEVEL", "PRIORITYLEVEL_STATUS"]

_DISTINGUISHERS = ("ByNamespace", "ByUser")
_LEVEL_TYPES = ("Exempt", "Limited")


def default_flowschema(schema: Object) -> None:
    spec = schema.setdefault("spec", {})
    if not spec.get("matchingPrecedence"):
        spec["matchingPrecedence"] = 1000


def validate_flowschema(schema: Object) -> list[FieldError]:
    spec = schema.get("spec") or {}
    errors: list[FieldError] = []
    if not (spec.get("priorityLevelConfiguration") or {}).get("name"):
        errors.append(required("spec.priorityLevelConfiguration.name", "must reference a priority level"))
    precedence = spec.get("matchingPrecedence")
    if isinstance(precedence, int) and not 1 <= precedence <= 10000:
        errors.append(invalid("spec.matchingPrecedence", precedence, "must be between 1 and 10000, inclusive"))
    method = (spec.get("distinguisherMethod") or {}).get("type")
    if spec.get("distinguisherMethod") is not None and method not in _DISTINGUISHERS:
        errors.append(not_supported("spec.distinguisherMethod.type", method, _DISTINGUISHERS))
    for i, rule in enumerate(spec.get("rules") or ()):
        if not rule.get("subjects"):
            errors.append(required(f"spec.rules[{i}].subjects", "subjects must contain at least one value"))
        if not rule.get("resourceRules") and not rule.get("nonResourceRules"):
            errors.append(required(f"spec.rules[{i}]", "at least one of resourceRules and nonResourceRules has "
                                   "to be non-empty"))
    return errors


def default_prioritylevel(level: Object) -> None:
    spec = level.setdefault("spec", {})
    limited = spec.get("limited")
    if limited is not None:
        limited.setdefault("nominalConcurrencyShares", 30)
        limited.setdefault("lendablePercent", 0)
        response = limited.get("limitResponse") or {}
        queuing = response.get("queuing")
        if response.get("type") == "Queue" and queuing is not None:
            queuing.setdefault("queues", 64)
            queuing.setdefault("handSize", 8)
            queuing.setdefault("queueLengthLimit", 50)
    exempt = spec.get("exempt")
    if exempt is not None:
        exempt.setdefault("nominalConcurrencyShares", 0)
        exempt.setdefault("lendablePercent", 0)


def validate_prioritylevel(level: Object) -> list[FieldError]:
    spec = level.get("spec") or {}
    kind = spec.get("type")
    if kind not in _LEVEL_TYPES:
        return [not_supported("spec.type", kind, _LEVEL_TYPES)]
    errors: list[FieldError] = []
    if kind == "Limited" and spec.get("limited") is None:
        errors.append(required("spec.limited", "must not be empty when type is Limited"))
    if kind == "Exempt" and spec.get("limited") is not None:
        errors.append(forbidden("spec.limited", "must be nil if the type is not Limited"))
    if kind == "Limited" and spec.get("exempt") is not None:
        errors.append(forbidden("spec.exempt", "must be nil if the type is Limited"))
    lendable = (spec.get("limited") or {}).get("lendablePercent")
    if isinstance(lendable, int) and not 0 <= lendable <= 100:
        errors.append(invalid("spec.limited.lendablePercent", lendable, "must be between 0 and 100, inclusive"))
    return errors


_ALL_RESOURCES: dict[str, Any] = {"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"], "clusterScope": True,
                                  "namespaces": ["*"]}
_ALL_NON_RESOURCES: dict[str, Any] = {"verbs": ["*"], "nonResourceURLs": ["*"]}


def _mandatory(kind: str, name: str, spec: dict[str, Any]) -> Object:
    return {"apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": kind,
            "metadata": {"name": name, "annotations": {"apf.kubernetes.io/autoupdate-spec": "true"}},
            "spec": spec}


def _group_rule(*groups: str) -> dict[str, Any]:
    return {"subjects": [{"kind": "Group", "group": {"name": group}} for group in groups],
            "resourceRules": [dict(_ALL_RESOURCES)], "nonResourceRules": [dict(_ALL_NON_RESOURCES)]}


#: What kube-apiserver's APF configuration controller ensures exists (MandatoryPriorityLevel* and
#: MandatoryFlowSchema*): levels first, since the schemas refer to them.
MANDATORY_OBJECTS: tuple[Object, ...] = (
    _mandatory("PriorityLevelConfiguration", "exempt", {"type": "Exempt", "exempt": {}}),
    _mandatory("PriorityLevelConfiguration", "catch-all", {
        "type": "Limited", "limited": {"nominalConcurrencyShares": 5, "lendablePercent": 0,
                                       "limitResponse": {"type": "Reject"}}}),
    _mandatory("FlowSchema", "exempt", {"priorityLevelConfiguration": {"name": "exempt"}, "matchingPrecedence": 1,
                                        "rules": [_group_rule("system:masters")]}),
    _mandatory("FlowSchema", "catch-all", {"priorityLevelConfiguration": {"name": "catch-all"},
                                           "matchingPrecedence": 10000, "distinguisherMethod": {"type": "ByUser"},
                                           "rules": [_group_rule("system:unauthenticated", "system:authenticated")]}),
)

FLOWSCHEMA = Strategy(default=default_flowschema, validate=validate_flowschema,
                      validate_update=same_on_update(validate_flowschema),
                      prepare_for_create=p.create_with_zero_status("FlowSchema"),
                      prepare_for_update=keep_status_on_update)
FLOWSCHEMA_STATUS = status_strategy(FLOWSCHEMA)
PRIORITYLEVEL = Strategy(default=default_prioritylevel, validate=validate_prioritylevel,
                         validate_update=same_on_update(validate_prioritylevel),
                         prepare_for_create=p.create_with_zero_status("PriorityLevelConfiguration"),
                         prepare_for_update=keep_status_on_update)
PRIORITYLEVEL_STATUS = status_strategy(PRIORITYLEVEL)
