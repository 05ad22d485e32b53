"""The default admission plugins' rules on plain dicts (machinery/admission, machinery/quota), and the
PriorityClass / StorageClass kinds. The same plugins against a server: tests/apiserver/test_admission_plugins.py.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from pilothouse.machinery import quota
from pilothouse.machinery.admission import Refusal, limitranger, priority, storageclass, tolerationseconds
from pilothouse.machinery.kinds import core, policy_kinds
from pilothouse.machinery.kinds.quantity import add_quantities

Object = dict[str, Any]


def _pod(*containers: Object, **spec: Any) -> Object:
    return {"metadata": {"name": "p", "namespace": "ns"},
            "spec": {"containers": list(containers) or [{"name": "c", "image": "x"}], **spec}}


def _container(name: str = "c", **resources: dict[str, str]) -> Object:
    return {"name": name, "image": "x", "resources": resources}


def _limit_range(name: str, *limits: Object) -> Object:
    return {"metadata": {"name": name, "namespace": "ns"}, "spec": {"limits": list(limits)}}


# -- quantities --------------------------------------------------------------------------------

@pytest.mark.parametrize(("a", "b", "total"), [
    ("64Mi", "128Mi", "192Mi"), ("500m", "500m", "1"), ("0", "250m", "250m"), ("2000", "0", "2k"),
    ("1.5Gi", "0", "1536Mi"), ("512", "512", "1024"), ("100m", "1", "1100m"), ("0", "1Gi", "1Gi"),
])
def test_quantity_sums_print_as_kubernetes_does(a: str, b: str, total: str) -> None:
    assert add_quantities(a, b) == total


# -- LimitRanger -------------------------------------------------------------------------------

def test_limit_ranger_defaults_containers_and_annotates() -> None:
    pod = _pod(_container("a", limits={"cpu": "2"}), {"name": "b", "image": "x"},
               initContainers=[{"name": "init", "image": "x"}])
    ranges = [_limit_range("lr", {"type": "Container", "default": {"cpu": "1", "memory": "1Gi"},
                                  "defaultRequest": {"cpu": "100m", "memory": "256Mi"}})]
    limitranger.default_pod(pod, ranges)
    a, b = pod["spec"]["containers"]
    assert a["resources"] == {"limits": {"cpu": "2", "memory": "1Gi"}, "requests": {"cpu": "100m", "memory": "256Mi"}}
    assert b["resources"] == {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "100m", "memory": "256Mi"}}
    assert pod["spec"]["initContainers"][0]["resources"]["limits"] == {"cpu": "1", "memory": "1Gi"}
    assert pod["metadata"]["annotations"][limitranger.ANNOTATION] == (
        "LimitRanger plugin set: cpu, memory request for container a; memory limit for container a; "
        "cpu, memory request for container b; cpu, memory limit for container b; "
        "cpu, memory request for init container init; cpu, memory limit for init container init")


def test_limit_ranger_without_defaults_changes_nothing() -> None:
    pod = _pod()
    before = copy.deepcopy(pod)
    limitranger.default_pod(pod, [_limit_range("lr", {"type": "Container", "max": {"cpu": "1"}})])
    assert pod == before


@pytest.mark.parametrize(("item", "resources", "message"), [
    ({"type": "Container", "max": {"cpu": "1"}}, {"limits": {"cpu": "2"}},
     "maximum cpu usage per Container is 1, but limit is 2"),
    ({"type": "Container", "max": {"cpu": "1"}}, {"requests": {"cpu": "500m"}},
     "maximum cpu usage per Container is 1.  No limit is specified"),
    ({"type": "Container", "min": {"memory": "64Mi"}}, {"requests": {"memory": "32Mi"}},
     "minimum memory usage per Container is 64Mi, but request is 32Mi"),
    ({"type": "Container", "min": {"memory": "64Mi"}}, {},
     "minimum memory usage per Container is 64Mi.  No request is specified"),
    ({"type": "Container", "maxLimitRequestRatio": {"cpu": "2"}},
     {"requests": {"cpu": "100m"}, "limits": {"cpu": "500m"}},
     "cpu max limit to request ratio per Container is 2, but provided ratio is 5.000000"),
    ({"type": "Pod", "max": {"cpu": "1"}}, {"requests": {"cpu": "600m"}, "limits": {"cpu": "600m"}},
     "maximum cpu usage per Pod is 1, but limit is 1200m"),
])
def test_limit_ranger_bounds(item: Object, resources: dict[str, dict[str, str]], message: str) -> None:
    pod = _pod(_container("a", **resources), _container("b", **resources)) if item["type"] == "Pod" \
        else _pod(_container("a", **resources))
    with pytest.raises(Refusal) as refused:
        limitranger.validate_pod(pod, [_limit_range("lr", item)])
    assert str(refused.value) == message


def test_limit_ranger_reports_all_problems_of_one_range() -> None:
    pod = _pod(_container("a", limits={"cpu": "3", "memory": "4Gi"}, requests={"cpu": "3", "memory": "4Gi"}))
    with pytest.raises(Refusal) as refused:
        limitranger.validate_pod(pod, [_limit_range("lr", {"type": "Container",
                                                            "max": {"cpu": "2", "memory": "1Gi"}})])
    assert str(refused.value) == ("[maximum cpu usage per Container is 2, but limit is 3, "
                                  "maximum memory usage per Container is 1Gi, but limit is 4Gi]")
    limitranger.validate_pod(_pod(_container("a", limits={"cpu": "1"}, requests={"cpu": "1"})),
                             [_limit_range("lr", {"type": "Container", "max": {"cpu": "2"}})])


def test_limit_ranger_bounds_claims_and_leaves_overhead_out_of_pod_limits() -> None:
    ranges = [_limit_range("lr", {"type": "PersistentVolumeClaim", "min": {"storage": "1Gi"},
                                  "max": {"storage": "10Gi"}})]
    claim: Object = {"metadata": {}, "spec": {"resources": {"requests": {"storage": "20Gi"}}}}
    with pytest.raises(Refusal) as refused:
        limitranger.validate_claim(claim, ranges)
    assert str(refused.value) == "maximum storage usage per PersistentVolumeClaim is 10Gi, but request is 20Gi"
    claim["spec"]["resources"]["requests"]["storage"] = "512Mi"
    with pytest.raises(Refusal) as refused:
        limitranger.validate_claim(claim, ranges)
    assert str(refused.value) == "minimum storage usage per PersistentVolumeClaim is 1Gi, but request is 512Mi"
    claim["spec"]["resources"]["requests"]["storage"] = "5Gi"
    limitranger.validate_claim(claim, ranges)
    pod = _pod(_container(limits={"cpu": "1"}, requests={"cpu": "1"}), overhead={"cpu": "500m"})
    limitranger.validate_pod(pod, [_limit_range("lr", {"type": "Pod", "max": {"cpu": "1"}})])


# -- ResourceQuota -----------------------------------------------------------------------------

def _quota(name: str, hard: dict[str, str], used: dict[str, str] | None = None, **spec: Any) -> Object:
    status = {"hard": hard, "used": used if used is not None else {k: "0" for k in hard}}
    return {"metadata": {"name": name, "namespace": "ns"}, "spec": {"hard": hard, **spec}, "status": status}


def test_pod_usage_counts_requests_limits_and_init_containers() -> None:
    pod = _pod(_container("a", requests={"cpu": "100m", "memory": "64Mi"}, limits={"memory": "128Mi"}),
               _container("b", requests={"cpu": "200m"}),
               initContainers=[_container("init", requests={"cpu": "1"})],
               overhead={"cpu": "10m"})
    assert quota.object_usage("", "pods", pod) == {
        "count/pods": "1", "pods": "1", "cpu": "1010m", "requests.cpu": "1010m", "memory": "64Mi",
        "requests.memory": "64Mi", "limits.memory": "128Mi"}
    finished = {**pod, "status": {"phase": "Succeeded"}}
    assert quota.object_usage("", "pods", finished) == {"count/pods": "1"}


def test_other_usages() -> None:
    service = {"metadata": {}, "spec": {"type": "LoadBalancer", "ports": [{"port": 80}, {"port": 443}]}}
    assert quota.object_usage("", "services", service) == {
        "count/services": "1", "services": "1", "services.loadbalancers": "1", "services.nodeports": "2"}
    claim = {"metadata": {}, "spec": {"storageClassName": "gold", "resources": {"requests": {"storage": "5Gi"}}}}
    assert quota.object_usage("", "persistentvolumeclaims", claim) == {
        "count/persistentvolumeclaims": "1", "persistentvolumeclaims": "1", "requests.storage": "5Gi",
        "gold.storageclass.storage.k8s.io/persistentvolumeclaims": "1",
        "gold.storageclass.storage.k8s.io/requests.storage": "5Gi"}
    assert quota.object_usage("apps", "deployments", {}) == {"count/deployments.apps": "1"}
    assert quota.object_usage("", "configmaps", {}) == {"count/configmaps": "1", "configmaps": "1"}


def test_charge_adds_usage_and_refuses_over_the_limit() -> None:
    hard = {"pods": "2", "requests.cpu": "1"}
    pod = _pod(_container(requests={"cpu": "600m"}))
    charged = quota.charge([_quota("q", hard)], "", "pods", pod)
    assert charged == {"q": {"pods": "1", "requests.cpu": "600m"}}
    with pytest.raises(Refusal) as refused:
        quota.charge([_quota("q", hard, charged["q"])], "", "pods", pod)
    assert str(refused.value) == ("exceeded quota: q, requested: requests.cpu=600m, used: requests.cpu=600m, "
                                  "limited: requests.cpu=1")


def test_charge_requires_requests_status_and_matching_quotas() -> None:
    with pytest.raises(Refusal) as refused:
        quota.charge([_quota("q", {"requests.memory": "1Gi", "limits.cpu": "1"})], "", "pods",
                     _pod(_container("a"), _container("b", requests={"memory": "1Mi"})))
    assert str(refused.value) == "failed quota: q: must specify limits.cpu for: a,b; requests.memory for: a"
    unknown = _quota("q", {"pods": "1"})
    del unknown["status"]["used"]
    with pytest.raises(Refusal) as refused:
        quota.charge([unknown], "", "pods", _pod())
    assert str(refused.value) == "status unknown for quota: q, resources: pods"
    # Not enforced before the controller has set status.hard; other kinds' quotas do not apply.
    assert quota.charge([{"metadata": {"name": "new"}, "spec": {"hard": {"pods": "0"}}}], "", "pods", _pod()) == {}
    assert quota.charge([_quota("q", {"services": "0"})], "", "pods", _pod()) == {}


def test_charge_on_update_counts_only_growth() -> None:
    hard = {"services.nodeports": "1", "services": "5"}
    old = {"metadata": {"resourceVersion": "5"}, "spec": {"type": "ClusterIP", "ports": [{"port": 80}]}}
    new = {"metadata": {"resourceVersion": "5"}, "spec": {"type": "NodePort", "ports": [{"port": 80}]}}
    assert quota.charge([_quota("q", hard, {"services.nodeports": "0", "services": "1"})], "", "services", new, old) \
        == {"q": {"services.nodeports": "1", "services": "1"}}


def test_scoped_quotas_select_pods() -> None:
    best_effort = _quota("be", {"pods": "1"}, scopes=["BestEffort"])
    critical = _quota("crit", {"pods": "1"}, scopeSelector={"matchExpressions": [
        {"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}]})
    plain = _pod()
    sized = _pod(_container(requests={"cpu": "1"}))
    assert quota.quota_matches(best_effort, "", "pods", plain)
    assert not quota.quota_matches(best_effort, "", "pods", sized)
    assert not quota.quota_matches(critical, "", "pods", plain)
    assert quota.quota_matches(critical, "", "pods", _pod(priorityClassName="high"))
    assert not quota.quota_matches(best_effort, "", "configmaps", {})


def test_controller_recount() -> None:
    q = {"metadata": {"name": "q"}, "spec": {"hard": {"pods": "5", "requests.memory": "1Gi", "count/secrets": "3",
                                                      "services.loadbalancers": "1"}}}
    assert quota.evaluated_resources(q["spec"]["hard"]) == {("", "pods"), ("", "secrets"), ("", "services")}
    pods = [_pod(_container(requests={"memory": "100Mi"})), _pod(_container(requests={"memory": "28Mi"})),
            {**_pod(), "status": {"phase": "Failed"}}]
    used = quota.calculate_usage(q, {("", "pods"): pods, ("", "secrets"): [{}, {}], ("", "services"): []})
    assert used == {"pods": "2", "requests.memory": "128Mi", "count/secrets": "2", "services.loadbalancers": "0"}


# -- Priority ----------------------------------------------------------------------------------

_CLASSES = {pc["metadata"]["name"]: {**pc, "preemptionPolicy": "PreemptLowerPriority"}
            for pc in policy_kinds.SYSTEM_PRIORITY_CLASSES}


def test_priority_resolution() -> None:
    pod = _pod(priorityClassName="system-cluster-critical")
    priority.admit_pod(pod, _CLASSES)
    assert (pod["spec"]["priority"], pod["spec"]["preemptionPolicy"]) == (2000000000, "PreemptLowerPriority")
    plain = _pod()
    priority.admit_pod(plain, _CLASSES)
    assert (plain["spec"]["priority"], plain["spec"]["preemptionPolicy"]) == (0, "PreemptLowerPriority")
    assert "priorityClassName" not in plain["spec"]
    default = {"metadata": {"name": "low"}, "value": -5, "globalDefault": True, "preemptionPolicy": "Never"}
    other = {"metadata": {"name": "lower"}, "value": -10, "globalDefault": True, "preemptionPolicy": "Never"}
    defaulted = _pod()
    priority.admit_pod(defaulted, {**_CLASSES, "low": default, "lower": other})
    assert defaulted["spec"]["priorityClassName"] == "lower"  # the lowest of racing defaults
    assert defaulted["spec"]["priority"] == -10


@pytest.mark.parametrize(("spec", "message"), [
    ({"priorityClassName": "nope"}, "no PriorityClass with name nope was found"),
    ({"priority": 7}, "the integer value of priority (7) must not be provided in pod spec; priority admission "
                      "controller computed 0 from the given PriorityClass name"),
    ({"priorityClassName": "system-node-critical", "preemptionPolicy": "Never"},
     "the string value of PreemptionPolicy (Never) must not be provided in pod spec; priority admission "
     "controller computed PreemptLowerPriority from the given PriorityClass name"),
])
def test_priority_refusals(spec: Object, message: str) -> None:
    with pytest.raises(Refusal) as refused:
        priority.admit_pod(_pod(**spec), _CLASSES)
    assert str(refused.value) == message


def test_priority_kept_on_update_and_one_global_default() -> None:
    new, old = _pod(), _pod(priority=5, preemptionPolicy="Never")
    priority.keep_on_update(new, old)
    assert (new["spec"]["priority"], new["spec"]["preemptionPolicy"]) == (5, "Never")
    existing = [{"metadata": {"name": "a"}, "value": 1, "globalDefault": True}]
    with pytest.raises(Refusal) as refused:
        priority.validate_priority_class({"metadata": {"name": "b"}, "globalDefault": True}, existing, True)
    assert str(refused.value) == "PriorityClass a is already marked as default. Only one default can exist"
    priority.validate_priority_class({"metadata": {"name": "a"}, "globalDefault": True}, existing, False)


def test_priority_class_kind_rules() -> None:
    pc = {"metadata": {"name": "x"}}
    policy_kinds.default_priority_class(pc)
    assert pc == {"metadata": {"name": "x"}, "value": 0, "preemptionPolicy": "PreemptLowerPriority"}
    for system_class in policy_kinds.SYSTEM_PRIORITY_CLASSES:
        assert policy_kinds.validate_priority_class(copy.deepcopy(system_class)) == []
    wrong = {"metadata": {"name": "system-node-critical"}, "value": 5}
    assert [e.message() for e in policy_kinds.validate_priority_class(wrong)] == [
        "metadata.name: Forbidden: priority class names with 'system-' prefix are reserved for system use "
        "only. error: value of system-node-critical PriorityClass must be 2000001000"]
    assert [e.message() for e in policy_kinds.validate_priority_class({**pc, "preemptionPolicy": "Sometimes"})] == [
        'preemptionPolicy: Unsupported value: "Sometimes": supported values: "Never", "PreemptLowerPriority"']
    changed = {**pc, "value": 1, "preemptionPolicy": "Never"}
    assert [e.message() for e in policy_kinds.validate_priority_class_update(changed, pc)] == [
        "value: Forbidden: may not be changed in an update.",
        'preemptionPolicy: Invalid value: "Never": field is immutable']


# -- DefaultTolerationSeconds ------------------------------------------------------------------

def test_default_toleration_seconds() -> None:
    pod = _pod()
    tolerationseconds.admit_pod(pod)
    assert pod["spec"]["tolerations"] == [
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
         "tolerationSeconds": 300}]
    tolerationseconds.admit_pod(pod)  # idempotent
    assert len(pod["spec"]["tolerations"]) == 2
    everything = _pod(tolerations=[{"operator": "Exists"}])
    tolerationseconds.admit_pod(everything)
    assert everything["spec"]["tolerations"] == [{"operator": "Exists"}]
    own = _pod(tolerations=[{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
                             "tolerationSeconds": 10}])
    tolerationseconds.admit_pod(own)
    assert [(t["key"], t.get("tolerationSeconds")) for t in own["spec"]["tolerations"]] == [
        ("node.kubernetes.io/unreachable", 10), ("node.kubernetes.io/not-ready", 300)]


# -- StorageClass and DefaultStorageClass ------------------------------------------------------

def _class(name: str, default: bool, created: str = "2026-01-01T00:00:00Z") -> Object:
    annotations = {"storageclass.kubernetes.io/is-default-class": "true"} if default else {}
    return {"metadata": {"name": name, "annotations": annotations, "creationTimestamp": created},
            "provisioner": "example.com/p"}


def test_default_storage_class_for_claims() -> None:
    classes = [_class("slow", False), _class("old", True), _class("new", True, "2026-02-01T00:00:00Z")]
    claim: Object = {"metadata": {}, "spec": {}}
    storageclass.admit_claim(claim, classes)
    assert claim["spec"]["storageClassName"] == "new"
    explicit: Object = {"metadata": {}, "spec": {"storageClassName": ""}}
    storageclass.admit_claim(explicit, classes)
    assert explicit["spec"]["storageClassName"] == ""
    none: Object = {"metadata": {}, "spec": {}}
    storageclass.admit_claim(none, [_class("slow", False)])
    assert "storageClassName" not in none["spec"]


def test_storage_class_kind_rules() -> None:
    sc = {"metadata": {"name": "s"}, "provisioner": "example.com/p", "parameters": {"a": "1"}}
    policy_kinds.default_storage_class(sc)
    assert (sc["reclaimPolicy"], sc["volumeBindingMode"]) == ("Delete", "Immediate")
    assert policy_kinds.validate_storage_class(sc) == []
    bad = {**sc, "provisioner": "", "reclaimPolicy": "Recycle", "volumeBindingMode": "Later"}
    assert [e.message() for e in policy_kinds.validate_storage_class(bad)] == [
        "provisioner: Required value",
        'reclaimPolicy: Unsupported value: "Recycle": supported values: "Delete", "Retain"',
        'volumeBindingMode: Unsupported value: "Later": supported values: "Immediate", "WaitForFirstConsumer"']
    changed = {**sc, "provisioner": "other.io/p", "parameters": {}, "reclaimPolicy": "Retain",
               "volumeBindingMode": "WaitForFirstConsumer"}
    assert [e.message() for e in policy_kinds.validate_storage_class_update(changed, sc)] == [
        "parameters: Forbidden: updates to parameters are forbidden.",
        "provisioner: Forbidden: updates to provisioner are forbidden.",
        "reclaimPolicy: Forbidden: updates to reclaimPolicy are forbidden.",
        'volumeBindingMode: Invalid value: "WaitForFirstConsumer": field is immutable']


# -- ResourceQuota and LimitRange kinds --------------------------------------------------------

def test_resource_quota_kind_rules() -> None:
    def messages(spec: Object) -> list[str]:
        return [e.message() for e in core.RESOURCEQUOTA.validate({"metadata": {"name": "q"}, "spec": spec})]

    assert messages({"hard": {"pods": "10", "requests.cpu": "2", "count/deployments.apps": "3",
                              "requests.nvidia.com/gpu": "1", "hugepages-2Mi": "1Gi"}}) == []
    assert messages({"hard": {"widgets": "1", "cpu": "-1", "pods": "1500m"}}) == [
        'spec.hard[cpu]: Invalid value: "-1": must be greater than or equal to 0',
        'spec.hard[pods]: Invalid value: "1500m": must be an integer',
        'spec.hard[widgets]: Invalid value: "widgets": must be a standard resource for quota']
    assert messages({"hard": {"pods": "1"}, "scopes": ["BestEffort", "NotBestEffort"]}) == [
        'spec.scopes: Invalid value: []core.ResourceQuotaScope{"BestEffort", "NotBestEffort"}: conflicting scopes']
    assert messages({"hard": {"services": "1"}, "scopes": ["Terminating"]}) == [
        'spec.scopes: Invalid value: []core.ResourceQuotaScope{"Terminating"}: unsupported scope applied to '
        'resource']


def test_limit_range_kind_rules() -> None:
    def messages(*limits: Object) -> list[str]:
        lr = {"metadata": {"name": "l"}, "spec": {"limits": list(limits)}}
        core.LIMITRANGE.default(lr)
        return [e.message() for e in core.LIMITRANGE.validate(lr)]

    assert messages({"type": "Container", "min": {"cpu": "100m"}, "max": {"cpu": "2"},
                     "default": {"cpu": "1"}, "defaultRequest": {"cpu": "500m"}}) == []
    assert messages({"type": "Container", "min": {"cpu": "2"}, "max": {"cpu": "1"}}) == [
        'spec.limits[0].min[cpu]: Invalid value: "2": min value 2 is greater than max value 1',
        'spec.limits[0].defaultRequest[cpu]: Invalid value: "1": min value 2 is greater than default request '
        'value 1',
        'spec.limits[0].default[cpu]: Invalid value: "2": min value 2 is greater than default value 1']
    assert messages({"type": "Pod", "default": {"cpu": "1"}}, {"type": "Pod"}, {"type": "Thing"}) == [
        "spec.limits[0].default: Forbidden: may not be specified when `type` is 'Pod'",
        'spec.limits[1].type: Duplicate value: "Pod"',
        'spec.limits[2].type: Invalid value: "Thing": must be a standard limit type or fully qualified']
    assert messages({"type": "PersistentVolumeClaim", "max": {"cpu": "1"}}) == [
        "spec.limits[0].limits: Required value: either minimum or maximum storage value is required, but "
        "neither was provided"]
    assert messages({"type": "Container", "maxLimitRequestRatio": {"cpu": "500m"}}) == [
        'spec.limits[0].maxLimitRequestRatio[cpu]: Invalid value: "500m": ratio 500m is less than 1']
