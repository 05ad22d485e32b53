"""Kind validation: each rule accepts a good object and rejects a bad one with Kubernetes' words."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest

from pilothouse.machinery.errors import FieldError, invalid
from pilothouse.machinery.kinds import apps, batch, core, other, validate_pod
from pilothouse.machinery.kinds.types import Strategy


def _pod(**spec: Any) -> dict[str, Any]:
    body = {"containers": [{"name": "web", "image": "nginx:1.27"}]}
    body.update(spec)
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"}, "spec": body}
    core.POD.default(pod)
    return pod


def _messages(errors: list[FieldError]) -> list[str]:
    return [e.message() for e in errors]


def _create(strategy: Strategy, obj: dict[str, Any]) -> list[str]:
    strategy.default(obj)
    return _messages(strategy.validate(obj))


# -- Pod ---------------------------------------------------------------------------------------

def test_valid_pod_has_no_errors() -> None:
    assert core.POD.validate(_pod()) == []


@pytest.mark.parametrize(("spec", "expected"), [
    ({"containers": []}, "spec.containers: Required value"),
    ({"containers": [{"name": "Web", "image": "x"}]},
     'spec.containers[0].name: Invalid value: "Web": a lowercase RFC 1123 label must consist of'),
    ({"containers": [{"name": "a", "image": "x"}, {"name": "a", "image": "y"}]},
     'spec.containers[1].name: Duplicate value: "a"'),
    ({"containers": [{"name": "a", "image": "x"}], "initContainers": [{"name": "a", "image": "y"}]},
     'spec.initContainers[0].name: Duplicate value: "a"'),
    ({"containers": [{"name": "a"}]}, "spec.containers[0].image: Required value"),
    ({"containers": [{"name": "a", "image": "x", "ports": [{"containerPort": 70000}]}]},
     "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive"),
    ({"containers": [{"name": "a", "image": "x", "ports": [{"containerPort": 80, "protocol": "HTTP"}]}]},
     'spec.containers[0].ports[0].protocol: Unsupported value: "HTTP": supported values: "SCTP", "TCP", "UDP"'),
    ({"restartPolicy": "Sometimes"},
     'spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never"'),
    ({"containers": [{"name": "a", "image": "x", "volumeMounts": [{"name": "v", "mountPath": "/v"}]}]},
     'spec.containers[0].volumeMounts[0].name: Not found: "v"'),
    ({"containers": [{"name": "a", "image": "x", "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}}]},
     'spec.containers[0].resources.requests: Invalid value: "2": must be less than or equal to cpu limit of 1'),
    ({"containers": [{"name": "a", "image": "x", "livenessProbe": {"exec": {"command": ["true"]},
                                                                    "successThreshold": 2}}]},
     "spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1"),
    ({"activeDeadlineSeconds": 0},
     "spec.activeDeadlineSeconds: Invalid value: 0: must be between 1 and 2147483647, inclusive"),
    ({"tolerations": [{"key": "k", "effect": "Sometimes"}]},
     'spec.tolerations[0].effect: Unsupported value: "Sometimes"'),
])
def test_pod_spec_rules(spec: dict[str, Any], expected: str) -> None:
    messages = _messages(core.POD.validate(_pod(**spec)))
    assert any(m.startswith(expected) for m in messages), messages


def test_pod_update_may_change_image_and_add_tolerations() -> None:
    old = _pod()
    new = copy.deepcopy(old)
    new["spec"]["containers"][0]["image"] = "nginx:1.28"
    new["spec"].setdefault("tolerations", []).append({"key": "k", "operator": "Exists"})
    new["spec"]["activeDeadlineSeconds"] = 100
    assert core.POD.validate_update(new, old) == []


def test_pod_update_forbids_other_spec_changes() -> None:
    old = _pod()
    new = copy.deepcopy(old)
    new["spec"]["containers"][0]["ports"] = [{"containerPort": 80, "protocol": "TCP"}]
    errors = core.POD.validate_update(new, old)
    assert len(errors) == 1
    error = errors[0]
    assert error.type == "FieldValueForbidden" and error.field == "spec"
    assert error.message().startswith(
        "spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,"
        "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to "
        "existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was "
        "previously negative)\n")
    assert "containerPort" in error.message()


def test_pod_update_rules_on_containers_tolerations_and_deadline() -> None:
    old = _pod(activeDeadlineSeconds=10, tolerations=[{"key": "k", "operator": "Exists"}])
    removed = copy.deepcopy(old)
    removed["spec"]["containers"].append({"name": "b", "image": "x"})
    assert _messages(core.POD.validate_update(removed, old)) == [
        "spec.containers: Forbidden: pod updates may not add or remove containers"]
    fewer = copy.deepcopy(old)
    fewer["spec"]["tolerations"] = []
    assert any(m.startswith("spec.tolerations[0]: Forbidden") for m in _messages(core.POD.validate_update(fewer, old)))
    longer = copy.deepcopy(old)
    longer["spec"]["activeDeadlineSeconds"] = 20
    assert _messages(core.POD.validate_update(longer, old)) == [
        "spec.activeDeadlineSeconds: Invalid value: 20: must be less than or equal to previous value"]


def test_pod_status_update_keeps_qos_class() -> None:
    old = _pod()
    core.POD.prepare_for_create(old)
    new = copy.deepcopy(old)
    new["status"]["qosClass"] = "Guaranteed"
    assert _messages(core.POD_STATUS.validate_update(new, old)) == [
        'status.qosClass: Invalid value: "Guaranteed": field is immutable']


# -- apps --------------------------------------------------------------------------------------

def _deployment(**spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"selector": {"matchLabels": {"app": "web"}},
                            "template": {"metadata": {"labels": {"app": "web"}},
                                         "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}
    body.update(spec)
    return {"metadata": {"name": "d", "namespace": "default"}, "spec": body}


@pytest.mark.parametrize("strategy", [apps.DEPLOYMENT, apps.REPLICASET, apps.STATEFULSET, apps.DAEMONSET])
def test_workload_selector_rules(strategy: Strategy) -> None:
    assert _create(strategy, _deployment()) == []
    mismatch = _deployment(selector={"matchLabels": {"app": "other"}})
    assert _create(strategy, mismatch) == [
        'spec.template.metadata.labels: Invalid value: map[string]string{"app":"web"}: '
        "`selector` does not match template `labels`"]
    missing = _deployment()
    del missing["spec"]["selector"]
    assert "spec.selector: Required value" in _create(strategy, missing)
    empty = _deployment(selector={})
    assert any("empty selector is invalid" in m for m in _create(strategy, empty))
    never = _deployment()
    never["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    assert 'spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always"' \
        in _create(strategy, never)


def test_selector_expressions_match() -> None:
    spec = _deployment(selector={"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]})
    assert _create(apps.DEPLOYMENT, spec) == []
    bad = _deployment(selector={"matchExpressions": [{"key": "app", "operator": "In"}]})
    assert any(m.startswith("spec.selector.matchExpressions[0].values: Required value")
               for m in _create(apps.DEPLOYMENT, bad))


def test_replicas_and_strategy_rules() -> None:
    assert "spec.replicas: Invalid value: -1: must be greater than or equal to 0" in \
        _create(apps.DEPLOYMENT, _deployment(replicas=-1))
    recreate = _deployment(strategy={"type": "Recreate", "rollingUpdate": {"maxSurge": 1}})
    assert "spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'" \
        in _create(apps.DEPLOYMENT, recreate)
    zero = _deployment(strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}})
    assert "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when `maxSurge` is 0" \
        in _create(apps.DEPLOYMENT, zero)


@pytest.mark.parametrize("strategy", [apps.DEPLOYMENT, apps.REPLICASET, apps.DAEMONSET])
def test_selector_is_immutable(strategy: Strategy) -> None:
    old = _deployment()
    strategy.default(old)
    same = copy.deepcopy(old)
    same["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:2"
    assert strategy.validate_update(same, old) == []
    changed = copy.deepcopy(old)
    changed["spec"]["selector"] = {"matchLabels": {"app": "web", "tier": "x"}}
    assert _messages(strategy.validate_update(changed, old)) == [
        'spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{"app":"web", "tier":"x"}, '
        "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"]


def test_statefulset_update_forbids_most_fields() -> None:
    old = _deployment(serviceName="a")
    apps.STATEFULSET.default(old)
    scaled = copy.deepcopy(old)
    scaled["spec"]["replicas"] = 5
    assert apps.STATEFULSET.validate_update(scaled, old) == []
    renamed = copy.deepcopy(old)
    renamed["spec"]["serviceName"] = "b"
    assert _messages(apps.STATEFULSET.validate_update(renamed, old)) == [
        "spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', "
        "'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"]


# -- Service -----------------------------------------------------------------------------------

def _service(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "s", "namespace": "default"}, "spec": spec}


def test_service_rules() -> None:
    assert _create(core.SERVICE, _service(ports=[{"port": 80}])) == []
    assert _create(core.SERVICE, _service()) == ["spec.ports: Required value"]
    assert _create(core.SERVICE, _service(clusterIP="None")) == []
    assert _create(core.SERVICE, _service(type="ExternalName", externalName="example.com")) == []
    assert _create(core.SERVICE, _service(ports=[{"port": 0}])) == [
        "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
        "spec.ports[0].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive"]
    assert _create(core.SERVICE, _service(ports=[{"port": 80}, {"port": 81}])) == [
        "spec.ports[0].name: Required value", "spec.ports[1].name: Required value"]
    assert _create(core.SERVICE, _service(ports=[{"port": 80, "name": "a"}, {"port": 81, "name": "a"}])) == [
        'spec.ports[1].name: Duplicate value: "a"']
    assert _create(core.SERVICE, _service(type="Magic", ports=[{"port": 80}])) == [
        'spec.type: Unsupported value: "Magic": supported values: "ClusterIP", "ExternalName", "LoadBalancer", '
        '"NodePort"']
    assert _create(core.SERVICE, _service(ports=[{"port": 80, "nodePort": 30000}])) == [
        "spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"]


def test_service_cluster_ip_is_immutable_and_kept() -> None:
    old = _service(ports=[{"port": 80}], clusterIP="10.0.0.5", clusterIPs=["10.0.0.5"])
    core.SERVICE.default(old)
    omitted = _service(ports=[{"port": 80}])
    core.SERVICE.default(omitted)
    core.SERVICE.prepare_for_update(omitted, old)
    assert omitted["spec"]["clusterIP"] == "10.0.0.5"
    assert core.SERVICE.validate_update(omitted, old) == []
    moved = copy.deepcopy(old)
    moved["spec"]["clusterIP"] = "10.0.0.6"
    moved["spec"]["clusterIPs"] = ["10.0.0.6"]
    assert _messages(core.SERVICE.validate_update(moved, old)) == [
        'spec.clusterIPs[0]: Invalid value: []string{"10.0.0.6"}: may not change once set']


# -- ConfigMap / Secret ------------------------------------------------------------------------

def test_config_keys_and_immutability() -> None:
    assert _create(core.CONFIGMAP, {"metadata": {}, "data": {"a.conf": "x"}}) == []
    assert _create(core.CONFIGMAP, {"metadata": {}, "data": {"a/b": "x"}})[0].startswith(
        'data[a/b]: Invalid value: "a/b": a valid config key must consist of alphanumeric characters')
    old = {"metadata": {}, "immutable": True, "data": {"a": "1"}}
    new = {"metadata": {}, "immutable": True, "data": {"a": "2"}}
    assert _messages(core.CONFIGMAP.validate_update(new, old)) == [
        "data: Forbidden: field is immutable when `immutable` is set"]
    assert _messages(core.SECRET.validate_update({"metadata": {}, "type": "kubernetes.io/tls"},
                                                 {"metadata": {}, "type": "Opaque"})) == [
        'type: Invalid value: "kubernetes.io/tls": field is immutable']
    assert _create(core.SECRET, {"metadata": {}, "type": "kubernetes.io/tls", "data": {"tls.crt": ""}}) == [
        "data[tls.key]: Required value"]


# -- batch -------------------------------------------------------------------------------------

def _job(**spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}],
                                                  "restartPolicy": "Never"}}}
    body.update(spec)
    return {"metadata": {"name": "pi", "namespace": "default", "uid": "u-1"}, "spec": body}


def test_job_rules() -> None:
    assert _create(batch.JOB, _job()) == []
    always = _job()
    del always["spec"]["template"]["spec"]["restartPolicy"]
    assert _create(batch.JOB, always) == [
        'spec.template.spec.restartPolicy: Unsupported value: "Always": supported values: "OnFailure", "Never"']
    assert "spec.parallelism: Invalid value: -1: must be greater than or equal to 0" in \
        _create(batch.JOB, _job(parallelism=-1))
    assert "spec.completions: Invalid value: -2: must be greater than or equal to 0" in \
        _create(batch.JOB, _job(completions=-2))
    indexed = _job(completionMode="Indexed", parallelism=2)
    assert "spec.completions: Required value: when completion mode is Indexed" in _create(batch.JOB, indexed)


def test_job_manual_selector_must_be_auto_generated_unless_manual() -> None:
    manual = _job(selector={"matchLabels": {"x": "y"}})
    manual["spec"]["template"]["metadata"] = {"labels": {"x": "y"}}
    assert "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{" \
           '"batch.kubernetes.io/controller-uid":"u-1", "x":"y"}, ' \
           "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: `selector` not auto-generated" \
        in _create(batch.JOB, manual)
    allowed = _job(selector={"matchLabels": {"x": "y"}}, manualSelector=True)
    allowed["spec"]["template"]["metadata"] = {"labels": {"x": "y"}}
    assert _create(batch.JOB, allowed) == []


def test_job_update_immutability() -> None:
    old = _job()
    assert _create(batch.JOB, old) == []
    parallel = copy.deepcopy(old)
    parallel["spec"]["parallelism"] = 4
    assert batch.JOB.validate_update(parallel, old) == []
    template = copy.deepcopy(old)
    template["spec"]["template"]["spec"]["containers"][0]["image"] = "busybox:2"
    assert _messages(batch.JOB.validate_update(template, old)) == [
        "spec.template: Invalid value: core.PodTemplateSpec{...}: field is immutable"]
    completions = copy.deepcopy(old)
    completions["spec"]["completions"] = 3
    assert _messages(batch.JOB.validate_update(completions, old)) == [
        "spec.completions: Invalid value: 3: field is immutable"]
    # A suspended job that never started may change its scheduling directives.
    suspended = copy.deepcopy(old)
    suspended["spec"]["suspend"] = True
    moved = copy.deepcopy(suspended)
    moved["spec"]["template"]["spec"]["nodeSelector"] = {"zone": "a"}
    assert batch.JOB.validate_update(moved, suspended) == []


def _cronjob(schedule: str, **spec: Any) -> dict[str, Any]:
    body = {"schedule": schedule, "jobTemplate": {"spec": {"template": {"spec": {
        "containers": [{"name": "c", "image": "busybox"}], "restartPolicy": "OnFailure"}}}}}
    body.update(spec)
    return {"metadata": {"name": "cj", "namespace": "default"}, "spec": body}


@pytest.mark.parametrize("schedule", ["*/5 * * * *", "0 0 1 jan mon-fri", "@hourly", "@every 1h30m", "0 12 * * ?"])
def test_cronjob_accepts_valid_schedules(schedule: str) -> None:
    assert _create(batch.CRONJOB, _cronjob(schedule)) == []


@pytest.mark.parametrize(("schedule", "message"), [
    ("", "spec.schedule: Required value"),
    ("foo", 'spec.schedule: Invalid value: "foo": expected exactly 5 fields, found 1: [foo]'),
    ("61 * * * *", 'spec.schedule: Invalid value: "61 * * * *": end of range (61) above maximum (59): 61'),
    ("x * * * *", 'spec.schedule: Invalid value: "x * * * *": failed to parse int from x: strconv.Atoi: '
                  'parsing "x": invalid syntax'),
    ("@sometimes", 'spec.schedule: Invalid value: "@sometimes": unrecognized descriptor: @sometimes'),
    ("TZ=UTC * * * * *", 'spec.schedule: Invalid value: "TZ=UTC * * * * *": cannot use TZ or CRON_TZ in '
                         "schedule, use timeZone field instead"),
])
def test_cronjob_rejects_bad_schedules(schedule: str, message: str) -> None:
    assert message in _create(batch.CRONJOB, _cronjob(schedule))


def test_cronjob_other_rules() -> None:
    assert 'spec.concurrencyPolicy: Unsupported value: "Sometimes": supported values: "Allow", "Forbid", ' \
           '"Replace"' in _create(batch.CRONJOB, _cronjob("* * * * *", concurrencyPolicy="Sometimes"))
    assert 'spec.timeZone: Invalid value: "Mars/Base": unknown time zone Mars/Base' in \
        _create(batch.CRONJOB, _cronjob("* * * * *", timeZone="Mars/Base"))
    assert _create(batch.CRONJOB, _cronjob("* * * * *", timeZone="Europe/Paris")) == []
    long_name = _cronjob("* * * * *")
    long_name["metadata"]["name"] = "a" * 53
    assert f'metadata.name: Invalid value: "{"a" * 53}": must be no more than 52 characters' in \
        _create(batch.CRONJOB, long_name)
    never = _cronjob("* * * * *")
    del never["spec"]["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"]
    assert 'spec.jobTemplate.spec.template.spec.restartPolicy: Unsupported value: "Always": supported values: ' \
           '"OnFailure", "Never"' in _create(batch.CRONJOB, never)


def test_pdb_rules() -> None:
    assert _create(other.PDB, {"metadata": {}, "spec": {"minAvailable": "50%"}}) == []
    both = {"metadata": {}, "spec": {"minAvailable": 1, "maxUnavailable": 1}}
    assert any("minAvailable and maxUnavailable cannot be both set" in m for m in _create(other.PDB, both))
    assert _create(other.PDB, {"metadata": {}, "spec": {"maxUnavailable": "150%"}}) == [
        'spec.maxUnavailable: Invalid value: "150%": must not be greater than 100%']


def test_errors_render_as_one_invalid_status() -> None:
    errors = core.POD.validate(_pod(containers=[]))
    status = invalid("Pod", "", "p", errors).to_status()
    assert status["message"] == 'Pod "p" is invalid: spec.containers: Required value'
    assert status["code"] == 422


def test_remembered_valid_pod_specs_still_catch_any_change() -> None:
    """validate_pod_spec remembers specs that passed (controllers send one template's spec again and
    again); a changed spec is validated afresh, and errors are never remembered as a pass."""
    spec = {"containers": [{"name": "app", "image": "busybox", "terminationMessagePolicy": "File",
                            "imagePullPolicy": "Always"}], "restartPolicy": "Always", "dnsPolicy": "ClusterFirst"}
    assert validate_pod.validate_pod_spec(spec) == []
    assert validate_pod.validate_pod_spec(spec) == []  # from the memo
    assert ("spec", orjson.dumps(spec)) in validate_pod._VALID_SPECS
    spec["containers"][0]["name"] = "Not_A_Name"
    errors = validate_pod.validate_pod_spec(spec)
    assert [e.field for e in errors] == ["spec.containers[0].name"]
    assert validate_pod.validate_pod_spec(spec) == errors  # still refused the second time
    spec["containers"][0]["name"] = "app"
    assert [e.field for e in validate_pod.validate_pod_spec(spec, "spec.template.spec")] == []
