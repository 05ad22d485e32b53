"""Create/update preparation, selectable fields, job selector generation and cron schedules."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from pilothouse.machinery.kinds import BUILTIN_RESOURCES, apps, batch, core, other
from pilothouse.machinery.kinds.cron import CronError, parse_schedule
from pilothouse.machinery.kinds.fields import NAME_RULES
from pilothouse.machinery.kinds.prepare import compute_qos_class


def _pod(resources: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "c", "image": "nginx"}
    if resources is not None:
        container["resources"] = resources
    body = {"containers": [container], **spec}
    pod = {"metadata": {"name": "p", "namespace": "ns"}, "spec": body}
    core.POD.default(pod)
    return pod


# -- prepare -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("resources", "qos"), [
    (None, "BestEffort"),
    ({"requests": {"cpu": "100m"}}, "Burstable"),
    ({"limits": {"cpu": "1", "memory": "1Gi"}}, "Guaranteed"),  # requests default to limits
    ({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}}, "Burstable"),
    ({"limits": {"cpu": "1000m", "memory": "1024Mi"}, "requests": {"cpu": "1", "memory": "1Gi"}}, "Guaranteed"),
    ({"limits": {"cpu": "1"}}, "Burstable"),
])
def test_qos_class(resources: dict[str, Any] | None, qos: str) -> None:
    pod = _pod(resources)
    assert compute_qos_class(pod["spec"]) == qos


def test_pod_create_starts_pending_and_has_no_generation() -> None:
    pod = _pod()
    pod["status"] = {"phase": "Running"}
    core.POD.prepare_for_create(pod)
    assert pod["status"] == {"phase": "Pending", "qosClass": "BestEffort"}
    assert "generation" not in pod["metadata"]
    gated = _pod(schedulingGates=[{"name": "wait"}])
    core.POD.prepare_for_create(gated)
    assert gated["status"]["conditions"][0]["reason"] == "SchedulingGated"


def test_pod_update_keeps_status_and_status_update_keeps_spec() -> None:
    old = _pod()
    core.POD.prepare_for_create(old)
    old["status"]["phase"] = "Running"
    new = copy.deepcopy(old)
    new["status"] = {"phase": "Failed"}
    core.POD.prepare_for_update(new, old)
    assert new["status"]["phase"] == "Running"
    status_write = copy.deepcopy(old)
    status_write["spec"]["nodeName"] = "elsewhere"
    status_write["metadata"]["labels"] = {"a": "b"}
    status_write["status"] = {"phase": "Succeeded"}
    core.POD_STATUS.prepare_for_update(status_write, old)
    assert "nodeName" not in status_write["spec"]
    assert status_write["status"] == {"phase": "Succeeded", "qosClass": "BestEffort"}  # QoS backfilled
    assert status_write["metadata"]["labels"] == {"a": "b"}


def test_workload_create_and_generation() -> None:
    rs = {"metadata": {"name": "r"}, "spec": {"replicas": 1}, "status": {"replicas": 9}}
    apps.REPLICASET.prepare_for_create(rs)
    assert rs["status"] == {"replicas": 0} and rs["metadata"]["generation"] == 1
    scaled = copy.deepcopy(rs)
    scaled["spec"]["replicas"] = 3
    scaled["status"] = {"replicas": 7}
    apps.REPLICASET.prepare_for_update(scaled, rs)
    assert scaled["metadata"]["generation"] == 2 and scaled["status"] == {"replicas": 0}
    labelled = copy.deepcopy(rs)
    labelled["metadata"]["labels"] = {"x": "y"}
    apps.REPLICASET.prepare_for_update(labelled, rs)
    assert labelled["metadata"]["generation"] == 1
    # Deployments also bump on annotation changes (annotations are copied to ReplicaSets).
    deployment = {"metadata": {"name": "d"}, "spec": {}}
    apps.DEPLOYMENT.prepare_for_create(deployment)
    assert deployment["status"] == {}
    annotated = copy.deepcopy(deployment)
    annotated["metadata"]["annotations"] = {"note": "x"}
    apps.DEPLOYMENT.prepare_for_update(annotated, deployment)
    assert annotated["metadata"]["generation"] == 2


def test_daemonset_template_generation_annotation() -> None:
    ds = {"metadata": {"name": "d"}, "spec": {"template": {"spec": {"containers": []}}}}
    apps.DAEMONSET.prepare_for_create(ds)
    assert ds["metadata"]["annotations"]["deprecated.daemonset.template.generation"] == "1"
    assert ds["status"]["desiredNumberScheduled"] == 0
    changed = copy.deepcopy(ds)
    changed["spec"]["template"]["metadata"] = {"labels": {"v": "2"}}
    apps.DAEMONSET.prepare_for_update(changed, ds)
    assert changed["metadata"]["annotations"]["deprecated.daemonset.template.generation"] == "2"


def test_status_subresource_changes_only_status() -> None:
    old = {"metadata": {"name": "d", "generation": 1}, "spec": {"replicas": 1}, "status": {}}
    new = {"metadata": {"name": "d", "generation": 1}, "spec": {"replicas": 5}, "status": {"replicas": 1}}
    apps.DEPLOYMENT_STATUS.prepare_for_update(new, old)
    assert new["spec"] == {"replicas": 1} and new["status"] == {"replicas": 1}


def test_namespace_node_service_preparation() -> None:
    ns = {"metadata": {"name": "team"}, "spec": {"finalizers": ["custom"]}}
    core.NAMESPACE.prepare_for_create(ns)
    assert ns["status"] == {"phase": "Active"}
    assert ns["spec"]["finalizers"] == ["custom", "kubernetes"]
    assert "generation" not in ns["metadata"]
    update = {"metadata": {"name": "team"}, "spec": {"finalizers": []}, "status": {"phase": "Terminating"}}
    core.NAMESPACE.prepare_for_update(update, ns)
    assert update["spec"]["finalizers"] == ["custom", "kubernetes"] and update["status"] == {"phase": "Active"}
    node = {"metadata": {"name": "n"}, "status": {"capacity": {"cpu": "2"}}}
    core.NODE.prepare_for_create(node)
    assert node["status"] == {"capacity": {"cpu": "2"}}
    svc = {"metadata": {"name": "s"}, "spec": {"type": "NodePort", "ports": [{"port": 80, "protocol": "TCP"}]}}
    core.SERVICE.prepare_for_create(svc)
    assert svc["status"] == {"loadBalancer": {}}
    svc["spec"]["ports"][0]["nodePort"] = 30080
    reapplied = {"metadata": {"name": "s"}, "spec": {"type": "NodePort", "ports": [{"port": 80, "protocol": "TCP"}]}}
    core.SERVICE.prepare_for_update(reapplied, svc)
    assert reapplied["spec"]["ports"][0]["nodePort"] == 30080


# -- job selector ------------------------------------------------------------------------------

def test_job_selector_generation() -> None:
    job = {"metadata": {"name": "pi", "namespace": "ns", "uid": "1234"},
           "spec": {"template": {"metadata": {"labels": {"app": "pi"}},
                                 "spec": {"containers": [{"name": "c", "image": "perl"}], "restartPolicy": "Never"}}}}
    batch.JOB.default(job)
    batch.JOB.prepare_for_create(job)
    assert batch.JOB.validate(job) == []
    assert job["spec"]["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": "1234"}}
    assert job["spec"]["template"]["metadata"]["labels"] == {
        "app": "pi", "job-name": "pi", "batch.kubernetes.io/job-name": "pi",
        "controller-uid": "1234", "batch.kubernetes.io/controller-uid": "1234"}
    assert job["metadata"]["labels"] == {"app": "pi"}
    assert job["status"] == {} and job["metadata"]["generation"] == 1
    again = copy.deepcopy(job)
    assert batch.JOB.validate(again) == [] and again == job


def test_job_with_wrong_uid_label_is_rejected() -> None:
    job = {"metadata": {"name": "pi", "uid": "1234"},
           "spec": {"template": {"metadata": {"labels": {"controller-uid": "other"}},
                                 "spec": {"containers": [{"name": "c", "image": "perl"}], "restartPolicy": "Never"}}}}
    batch.JOB.default(job)
    messages = [e.message() for e in batch.JOB.validate(job)]
    assert any(m.startswith("spec.template.metadata.labels[controller-uid]: Invalid value: ")
               and m.endswith(": must be '1234'") for m in messages), messages


# -- selectable fields -------------------------------------------------------------------------

def test_pod_selectable_fields() -> None:
    pod = _pod(nodeName="n1", hostNetwork=True, serviceAccountName="default")  # admission's default
    core.POD.prepare_for_create(pod)
    pod["status"]["podIPs"] = [{"ip": "10.1.0.4"}, {"ip": "fd00::4"}]
    assert core.POD.selectable_fields(pod) == {
        "metadata.name": "p", "metadata.namespace": "ns", "spec.nodeName": "n1",
        "spec.restartPolicy": "Always", "spec.schedulerName": "default-scheduler",
        "spec.serviceAccountName": "default", "spec.hostNetwork": "true", "status.phase": "Pending",
        "status.podIP": "10.1.0.4", "status.nominatedNodeName": "",
    }
    assert core.POD.selectable_fields({"metadata": {"name": "bare"}})["spec.hostNetwork"] == "false"


def test_event_selectable_fields() -> None:
    event = {"metadata": {"name": "e", "namespace": "ns"}, "reason": "Scheduled", "type": "Normal",
             "involvedObject": {"kind": "Pod", "name": "p", "namespace": "ns", "uid": "u", "apiVersion": "v1",
                                "resourceVersion": "7"},
             "reportingComponent": "default-scheduler"}
    fields = core.EVENT.selectable_fields(event)
    assert fields["involvedObject.kind"] == "Pod" and fields["involvedObject.uid"] == "u"
    assert fields["involvedObject.fieldPath"] == ""
    assert fields["source"] == "default-scheduler"  # falls back to the reporting controller
    assert fields["reportingComponent"] == "default-scheduler"
    assert fields["reason"] == "Scheduled" and fields["type"] == "Normal"
    v1 = {"metadata": {"name": "e", "namespace": "ns"}, "regarding": {"kind": "Node", "name": "n1"},
          "reportingController": "kubelet", "reason": "Ready", "type": "Normal"}
    v1_fields = other.EVENT_V1.selectable_fields(v1)
    assert v1_fields["regarding.kind"] == "Node" and v1_fields["reportingController"] == "kubelet"


def test_other_selectable_fields() -> None:
    assert core.NODE.selectable_fields({"metadata": {"name": "n"}, "spec": {"unschedulable": True}}) == {
        "metadata.name": "n", "spec.unschedulable": "true"}
    assert core.NAMESPACE.selectable_fields({"metadata": {"name": "x"}, "status": {"phase": "Active"}}) == {
        "metadata.name": "x", "status.phase": "Active"}
    assert core.SECRET.selectable_fields({"metadata": {"name": "s", "namespace": "n"}, "type": "Opaque"})["type"] \
        == "Opaque"
    assert apps.REPLICASET.selectable_fields({"metadata": {}, "status": {"replicas": 3}})["status.replicas"] == "3"
    assert batch.JOB.selectable_fields({"metadata": {}})["status.successful"] == "0"


def test_name_rules_cover_every_builtin_kind() -> None:
    for resource in BUILTIN_RESOURCES:
        assert NAME_RULES[(resource.group, resource.kind)] in ("subdomain", "label", "dns1035-label",
                                                               "path-segment")
    assert NAME_RULES[("", "Namespace")] == "label"


# -- cron --------------------------------------------------------------------------------------

def test_cron_next_activation() -> None:
    start = datetime(2025, 1, 31, 23, 59, 30, tzinfo=UTC)
    assert parse_schedule("*/15 * * * *").next_after(start) == datetime(2025, 2, 1, 0, 0, tzinfo=UTC)
    assert parse_schedule("0 9 * * mon").next_after(start) == datetime(2025, 2, 3, 9, 0, tzinfo=UTC)
    # Day of month OR day of week when both are restricted.
    assert parse_schedule("0 0 15 * sun").next_after(start) == datetime(2025, 2, 2, 0, 0, tzinfo=UTC)
    assert parse_schedule("@yearly").next_after(start) == datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_schedule("@every 90s").next_after(start) == datetime(2025, 2, 1, 0, 1, tzinfo=UTC)
    paris = parse_schedule("CRON_TZ=Europe/Paris 0 1 * * *").next_after(start)
    assert paris == datetime(2025, 2, 1, 0, 0, tzinfo=UTC)


def test_cron_errors() -> None:
    with pytest.raises(CronError, match=r"beginning of range \(5\) beyond end of range \(1\): 5-1"):
        parse_schedule("5-1 * * * *")
    with pytest.raises(CronError, match="step of range should be a positive number"):
        parse_schedule("*/0 * * * *")
