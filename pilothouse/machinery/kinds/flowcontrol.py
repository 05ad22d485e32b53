"""flowcontrol.apiserver.k8s.io/v1: FlowSchema and PriorityLevelConfiguration.

Defaults from pkg/apis/flowcontrol/v1/defaults.go, the rules of pkg/apis/flowcontrol/validation users
hit, and the configuration kube-apiserver bootstraps
(staging/src/k8s.io/apiserver/pkg/apis/flowcontrol/bootstrap/default.go): the two mandatory objects
of each kind (``exempt``, ``catch-all``) and the suggested ones (``system``, ``node-high``,
``leader-election``, ``workload-high``, ``workload-low``, ``global-default`` and the FlowSchemas that
lead to them). The API server's priority and fairness filter (apiserver/flowcontrol) reads them.
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

__all__ = ["BOOTSTRAP_OBJECTS", "FLOWSCHEMA", "FLOWSCHEMA_STATUS", "MANDATORY_OBJECTS", "PRIORITYLEVEL",
           "PRIORITYLEVEL_STATUS", "SUGGESTED_OBJECTS"]

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



def _limited(shares: int, lendable: int, queues: int, hand_size: int, queue_length_limit: int = 50) -> dict[str, Any]:
    return {"type": "Limited", "limited": {
        "nominalConcurrencyShares": shares, "lendablePercent": lendable,
        "limitResponse": {"type": "Queue", "queuing": {"queues": queues, "handSize": hand_size,
                                                        "queueLengthLimit": queue_length_limit}}}}


def _schema(name: str, level: str, precedence: int, distinguisher: str, *rules: dict[str, Any]) -> Object:
    spec: dict[str, Any] = {"priorityLevelConfiguration": {"name": level}, "matchingPrecedence": precedence,
                            "rules": list(rules)}
    if distinguisher:
        spec["distinguisherMethod"] = {"type": distinguisher}
    return _mandatory("FlowSchema", name, spec)


def _users(*names: str) -> list[dict[str, Any]]:
    return [{"kind": "User", "user": {"name": name}} for name in names]


def _kube_system_accounts(*names: str) -> list[dict[str, Any]]:
    return [{"kind": "ServiceAccount", "serviceAccount": {"name": name, "namespace": "kube-system"}}
            for name in names]


def _all_of(*subjects: dict[str, Any]) -> dict[str, Any]:
    return {"subjects": list(subjects), "resourceRules": [dict(_ALL_RESOURCES)],
            "nonResourceRules": [dict(_ALL_NON_RESOURCES)]}


def _resources(verbs: list[str], groups: list[str], resources: list[str], namespaces: list[str],
               cluster_scope: bool = False) -> dict[str, Any]:
    return {"verbs": verbs, "apiGroups": groups, "resources": resources, "namespaces": namespaces,
            "clusterScope": cluster_scope}


_ELECTION_RULES = [_resources(["get", "create", "update"], [""], ["endpoints", "configmaps"], ["kube-system"]),
                   _resources(["get", "create", "update"], ["coordination.k8s.io"], ["leases"], ["*"])]
_NODES = {"kind": "Group", "group": {"name": "system:nodes"}}
_EVERYONE = ({"kind": "Group", "group": {"name": "system:unauthenticated"}},
             {"kind": "Group", "group": {"name": "system:authenticated"}})

#: The suggested configuration (1.32's SuggestedPriorityLevelConfigurations and SuggestedFlowSchemas),
#: created when missing, as the mandatory objects are.
SUGGESTED_OBJECTS: tuple[Object, ...] = (
    _mandatory("PriorityLevelConfiguration", "system", _limited(30, 33, 64, 6)),
    _mandatory("PriorityLevelConfiguration", "node-high", _limited(40, 25, 64, 6)),
    _mandatory("PriorityLevelConfiguration", "leader-election", _limited(10, 0, 16, 4)),
    _mandatory("PriorityLevelConfiguration", "workload-high", _limited(40, 50, 128, 6)),
    _mandatory("PriorityLevelConfiguration", "workload-low", _limited(100, 90, 128, 6)),
    _mandatory("PriorityLevelConfiguration", "global-default", _limited(20, 50, 128, 6)),
    _schema("system-nodes", "system", 500, "ByUser", _all_of(_NODES)),
    _schema("system-node-high", "node-high", 400, "ByUser", {
        "subjects": [_NODES],
        "resourceRules": [_resources(["*"], [""], ["nodes", "nodes/status"], ["*"], True),
                          _resources(["*"], ["coordination.k8s.io"], ["leases"], ["*"])]}),
    _schema("probes", "exempt", 2, "", {
        "subjects": list(_EVERYONE),
        "nonResourceRules": [{"verbs": ["get"], "nonResourceURLs": ["/healthz", "/readyz", "/livez"]}]}),
    _schema("system-leader-election", "leader-election", 100, "ByUser", {
        "subjects": [*_users("system:kube-controller-manager", "system:kube-scheduler"),
                     *_kube_system_accounts("*")],
        "resourceRules": _ELECTION_RULES}),
    _schema("workload-leader-election", "leader-election", 200, "ByUser", {
        "subjects": _kube_system_accounts("*"),
        "resourceRules": [_resources(["get", "create", "update"], [""], ["endpoints", "configmaps"], ["*"]),
                          _ELECTION_RULES[1]]}),
    _schema("endpoint-controller", "workload-high", 150, "ByUser", {
        "subjects": [*_users("system:kube-controller-manager"),
                     *_kube_system_accounts("endpoint-controller", "endpointslicemirroring-controller")],
        "resourceRules": [_resources(["get", "create", "update"], [""], ["endpoints"], ["*"])]}),
    _schema("kube-controller-manager", "workload-high", 800, "ByNamespace",
            _all_of(*_users("system:kube-controller-manager"))),
    _schema("kube-scheduler", "workload-high", 800, "ByNamespace", _all_of(*_users("system:kube-scheduler"))),
    _schema("kube-system-service-accounts", "workload-high", 900, "ByNamespace", _all_of(*_kube_system_accounts("*"))),
    _schema("service-accounts", "workload-low", 9000, "ByUser",
            _all_of({"kind": "Group", "group": {"name": "system:serviceaccounts"}})),
    _schema("global-default", "global-default", 9900, "ByUser", _all_of(*_EVERYONE)),
)

#: Everything kube-apiserver's configuration producer ensures, levels before the schemas naming them.
BOOTSTRAP_OBJECTS: tuple[Object, ...] = tuple(
    sorted((*MANDATORY_OBJECTS, *SUGGESTED_OBJECTS), key=lambda obj: obj["kind"] == "FlowSchema"))

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
