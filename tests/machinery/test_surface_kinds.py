"""The surface kinds' pure machinery: HPA v1/v2 conversion, strategies' defaults and rules, and the
printers added for them (printers.go 1.32, kube-aggregator's APIService table)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from pilothouse.machinery.kinds.autoscaling import convert_hpa, default_hpa_v2
from pilothouse.machinery.kinds.certificates import CSR_APPROVAL, CSR_STATUS
from pilothouse.machinery.kinds.conversion import converter_for
from pilothouse.machinery.kinds.flowcontrol import default_prioritylevel, validate_prioritylevel
from pilothouse.machinery.kinds.networking import validate_ingress
from pilothouse.machinery.kinds.volumes import validate_pv, validate_pvc, validate_pvc_update
from pilothouse.machinery.kinds.webhooks import MUTATING_WEBHOOKS
from pilothouse.machinery.tables import to_table

NOW = datetime(2026, 1, 1, tzinfo=UTC)
META = {"name": "x", "creationTimestamp": "2025-12-31T00:00:00Z"}


def cells(group: str, kind: str, obj: dict[str, Any]) -> list[Any]:
    result: list[Any] = to_table(group, kind, [obj], now=NOW)["rows"][0]["cells"]
    return result


def test_hpa_round_trips_through_v1_without_loss() -> None:
    v2 = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": dict(META),
          "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 3, "metrics": [
              {"type": "External", "external": {"metric": {"name": "queue"}, "target": {"type": "Value",
                                                                                       "value": "5"}}}]},
          "status": {"desiredReplicas": 2, "currentReplicas": 1, "conditions": [
              {"type": "AbleToScale", "status": "True"}]}}
    default_hpa_v2(v2)
    v1 = convert_hpa(copy.deepcopy(v2), "v1")
    assert v1["apiVersion"] == "autoscaling/v1"
    assert "targetCPUUtilizationPercentage" not in v1["spec"]
    assert v1["status"] == {"currentReplicas": 1, "desiredReplicas": 2}
    assert convert_hpa(v1, "v2") == v2
    assert converter_for("autoscaling", "HorizontalPodAutoscaler") is convert_hpa
    assert converter_for("apps", "Deployment") is None


def test_csr_status_keeps_approval_and_approval_keeps_certificate() -> None:
    stored = {"metadata": {"name": "x"}, "spec": {"usages": ["client auth"]},
              "status": {"conditions": [{"type": "Approved", "status": "True", "reason": "ok"}],
                         "certificate": "Y2VydA=="}}
    through_status = {"metadata": {"name": "x"}, "spec": {"usages": ["server auth"]},
                      "status": {"conditions": [{"type": "Failed", "status": "True"}], "certificate": "bmV3"}}
    CSR_STATUS.prepare_for_update(through_status, copy.deepcopy(stored))
    assert [c["type"] for c in through_status["status"]["conditions"]] == ["Approved", "Failed"]
    assert through_status["status"]["certificate"] == "bmV3"
    assert through_status["spec"] == {"usages": ["client auth"]}
    through_approval = {"metadata": {"name": "x"}, "status": {"conditions": [{"type": "Denied"}],
                                                                 "certificate": "bmV3"}}
    CSR_APPROVAL.prepare_for_update(through_approval, copy.deepcopy(stored))
    assert through_approval["status"]["certificate"] == "Y2VydA=="
    assert [(c["type"], c["status"]) for c in through_approval["status"]["conditions"]] == [("Denied", "True")]


def test_volume_rules() -> None:
    errors = validate_pv({"spec": {"capacity": {"storage": "1Gi", "cpu": "1"}, "accessModes": ["ReadWriteSometimes"],
                                   "nfs": {"server": "s", "path": "/"}, "hostPath": {"path": "/"}}})
    assert [e.message() for e in errors] == [
        'spec.accessModes: Unsupported value: "ReadWriteSometimes": supported values: "ReadOnlyMany", '
        '"ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"',
        "spec.capacity: Unsupported value: core.ResourceList{...}: supported values: \"storage\"",
        "spec.nfs: Forbidden: may not specify more than 1 volume type"]
    bound = {"spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
                      "volumeName": "pv"}, "status": {"phase": "Bound"}}
    grown = copy.deepcopy(bound)
    grown["spec"]["resources"]["requests"]["storage"] = "2Gi"
    assert validate_pvc_update(grown, bound) == []
    moved = copy.deepcopy(bound)
    moved["spec"]["volumeName"] = "other"
    assert [e.field for e in validate_pvc_update(moved, bound)] == ["spec"]


def test_webhook_and_priority_level_defaults() -> None:
    config = {"webhooks": [{"name": "a.b.c", "clientConfig": {"service": {"name": "s", "namespace": "n"}},
                            "rules": [{"operations": ["*"]}], "sideEffects": "None",
                            "admissionReviewVersions": ["v1"]}]}
    MUTATING_WEBHOOKS.default(config)
    hook = config["webhooks"][0]
    assert (hook["reinvocationPolicy"], hook["timeoutSeconds"], hook["rules"][0]["scope"],
            hook["clientConfig"]["service"]["port"]) == ("Never", 10, "*", 443)
    assert MUTATING_WEBHOOKS.validate(config) == []
    level = {"spec": {"type": "Limited", "limited": {"limitResponse": {"type": "Queue", "queuing": {}}}}}
    default_prioritylevel(level)
    assert level["spec"]["limited"] == {"nominalConcurrencyShares": 30, "lendablePercent": 0, "limitResponse": {
        "type": "Queue", "queuing": {"queues": 64, "handSize": 8, "queueLengthLimit": 50}}}
    assert [e.message() for e in validate_prioritylevel({"spec": {"type": "Exempt", "limited": {}}})] == [
        "spec.limited: Forbidden: must be nil if the type is not Limited"]


def test_printers() -> None:
    service = {"metadata": META, "spec": {"service": {"namespace": "monitoring", "name": "metrics"}},
               "status": {"conditions": [{"type": "Available", "status": "False", "reason": "MissingEndpoints"}]}}
    assert cells("apiregistration.k8s.io", "APIService", service) == [
        "x", "monitoring/metrics", "False (MissingEndpoints)", "24h"]
    assert cells("apiregistration.k8s.io", "APIService", {"metadata": META, "spec": {}})[1:3] == ["Local", "Unknown"]
    binding = {"metadata": META, "spec": {"policyName": "p", "paramRef": {"name": "limits"}}}
    assert cells("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding", binding)[1:3] == [
        "p", "*/limits"]
    level = {"metadata": META, "spec": {"type": "Exempt", "exempt": {}}}
    assert cells("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration", level)[1:6] == [
        "Exempt", "<none>", "<none>", "<none>", "<none>"]
    schema = {"metadata": META, "spec": {"priorityLevelConfiguration": {"name": "gone"}, "matchingPrecedence": 9},
              "status": {"conditions": [{"type": "Dangling", "status": "True"}]}}
    assert cells("flowcontrol.apiserver.k8s.io", "FlowSchema", schema) == ["x", "gone", 9, "<none>", "24h", "True"]
    node = {"metadata": META, "spec": {"drivers": [{"name": "a"}, {"name": "b"}]}}
    assert cells("storage.k8s.io", "CSINode", node) == ["x", 2, "24h"]


def test_ingress_paths() -> None:
    def errors_for(path: str, path_type: str) -> list[str]:
        ingress = {"spec": {"rules": [{"http": {"paths": [
            {"path": path, "pathType": path_type, "backend": {"service": {"name": "s", "port": {"number": 80}}}}]}}]}}
        return [e.message() for e in validate_ingress(ingress)]

    field = "spec.rules[0].http.paths[0].path"
    assert errors_for("/a/../b", "Prefix") == [f"{field}: Invalid value: \"/a/../b\": must not contain '/../'"]
    assert errors_for("/a/.", "Exact") == [f"{field}: Invalid value: \"/a/.\": cannot end with '/.'"]
    assert errors_for("/a(/|$)(.*)", "ImplementationSpecific") == []
    assert errors_for("", "ImplementationSpecific") == []
    assert errors_for("", "Prefix") == [f'{field}: Invalid value: "": must be an absolute path']


def test_claim_needs_positive_storage() -> None:
    claim = {"spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "0"}}}}
    assert [e.message() for e in validate_pvc(claim)] == [
        'spec.resources[storage]: Invalid value: "0": must be greater than zero']
