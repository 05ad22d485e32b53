"""Table rows for apps, batch and the other groups (printers.go / printers_test.go)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pilothouse.machinery.tables import column_definitions_for, to_table
from pilothouse.machinery.tables.formatting import format_label_selector, selector_string

NOW = datetime(2024, 6, 1, 12, 0, 0, tzinfo=UTC)


def ago(**delta: float) -> str:
    return (NOW - timedelta(**delta)).strftime("%Y-%m-%dT%H:%M:%SZ")


def meta(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "creationTimestamp": ago(hours=5), **extra}


def cells(group: str, kind: str, obj: dict[str, Any]) -> list[Any]:
    result: list[Any] = to_table(group, kind, [obj], now=NOW)["rows"][0]["cells"]
    return result


def headers(group: str, kind: str) -> list[tuple[str, int]]:
    return [(c["name"], c["priority"]) for c in column_definitions_for(group, kind)]


def template(*containers: tuple[str, str], **extra: Any) -> dict[str, Any]:
    return {"spec": {"containers": [{"name": n, "image": i} for n, i in containers], **extra}}


# --- label selectors ------------------------------------------------------------------------


def test_selector_formatting() -> None:
    selector = {
        "matchLabels": {"tier": "web", "app": "shop"},
        "matchExpressions": [
            {"key": "env", "operator": "In", "values": ["prod", "canary"]},
            {"key": "zone", "operator": "NotIn", "values": ["b"]},
            {"key": "debug", "operator": "DoesNotExist"},
            {"key": "gpu", "operator": "Exists"},
        ],
    }
    assert selector_string(selector) == "app=shop,!debug,env in (canary,prod),gpu,tier=web,zone notin (b)"
    assert format_label_selector({}) == "<none>"
    assert format_label_selector(None) == "<none>"
    assert format_label_selector({"matchExpressions": [{"key": "a", "operator": "Bogus"}]}) == "<error>"


# --- apps -----------------------------------------------------------------------------------


def test_deployment() -> None:
    assert headers("apps", "Deployment") == [
        ("Name", 0),
        ("Ready", 0),
        ("Up-to-date", 0),
        ("Available", 0),
        ("Age", 0),
        ("Containers", 1),
        ("Images", 1),
        ("Selector", 1),
    ]
    deploy = {
        "metadata": meta("web"),
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": template(("nginx", "nginx:1.27"), ("envoy", "envoy:v1")),
        },
        "status": {"replicas": 3, "updatedReplicas": 3, "readyReplicas": 2, "availableReplicas": 2},
    }
    assert cells("apps", "Deployment", deploy) == [
        "web",
        "2/3",
        3,
        2,
        "5h",
        "nginx,envoy",
        "nginx:1.27,envoy:v1",
        "app=web",
    ]
    fresh = {"metadata": meta("new"), "spec": {"replicas": 0, "selector": {}, "template": template()}}
    assert cells("apps", "Deployment", fresh) == ["new", "0/0", 0, 0, "5h", "", "", ""]


def test_replicaset() -> None:
    rs = {
        "metadata": meta("web-5d8f"),
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web", "pod-template-hash": "5d8f"}}},
        "status": {"replicas": 2, "readyReplicas": 1},
    }
    rs["spec"]["template"] = template(("nginx", "nginx"))
    assert cells("apps", "ReplicaSet", rs) == [
        "web-5d8f",
        2,
        2,
        1,
        "5h",
        "nginx",
        "nginx",
        "app=web,pod-template-hash=5d8f",
    ]


def test_statefulset_and_daemonset() -> None:
    sts = {"metadata": meta("db"), "spec": {"replicas": 3, "template": template(("pg", "postgres:16"))}}
    sts["status"] = {"readyReplicas": 2}
    assert headers("apps", "StatefulSet") == [
        ("Name", 0),
        ("Ready", 0),
        ("Age", 0),
        ("Containers", 1),
        ("Images", 1),
    ]
    assert cells("apps", "StatefulSet", sts) == ["db", "2/3", "5h", "pg", "postgres:16"]
    ds = {
        "metadata": meta("agent"),
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": template(("agent", "agent:1"), nodeSelector={"kubernetes.io/os": "linux"}),
        },
        "status": {
            "desiredNumberScheduled": 3,
            "currentNumberScheduled": 3,
            "numberReady": 2,
            "updatedNumberScheduled": 3,
            "numberAvailable": 2,
        },
    }
    assert cells("apps", "DaemonSet", ds) == [
        "agent",
        3,
        3,
        2,
        3,
        2,
        "kubernetes.io/os=linux",
        "5h",
        "agent",
        "agent:1",
        "app=agent",
    ]


def test_controller_revision() -> None:
    owners = [
        {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent", "uid": "1", "controller": True},
    ]
    rev = {"metadata": meta("agent-6c7f", ownerReferences=owners), "revision": 2}
    assert cells("apps", "ControllerRevision", rev) == ["agent-6c7f", "daemonset.apps/agent", 2, "5h"]
    orphan = {"metadata": meta("loose"), "revision": 1}
    assert cells("apps", "ControllerRevision", orphan)[1] == "<none>"
    core_owner = {
        "metadata": meta(
            "x", ownerReferences=[{"apiVersion": "v1", "kind": "Pod", "name": "p", "controller": True}]
        )
    }
    assert cells("apps", "ControllerRevision", core_owner)[1] == "pod/p"


# --- batch ----------------------------------------------------------------------------------


def job(**status: Any) -> dict[str, Any]:
    return {
        "metadata": meta("pi"),
        "spec": {
            "completions": 1,
            "parallelism": 1,
            "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u1"}},
            "template": template(("pi", "perl:5.34")),
        },
        "status": status,
    }


def test_job_columns() -> None:
    assert headers("batch", "Job") == [
        ("Name", 0),
        ("Status", 0),
        ("Completions", 0),
        ("Duration", 0),
        ("Age", 0),
        ("Containers", 1),
        ("Images", 1),
        ("Selector", 1),
    ]


def test_completed_and_running_jobs() -> None:
    done = job(
        succeeded=1,
        startTime=ago(hours=5),
        completionTime=ago(hours=4, minutes=59, seconds=50),
        conditions=[{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}],
    )
    assert cells("batch", "Job", done) == [
        "pi",
        "Complete",
        "1/1",
        "10s",
        "5h",
        "pi",
        "perl:5.34",
        "batch.kubernetes.io/controller-uid=u1",
    ]
    running = job(active=1, startTime=ago(minutes=3, seconds=2))
    assert cells("batch", "Job", running)[1:4] == ["Running", "0/1", "3m2s"]
    pending = job()
    assert cells("batch", "Job", pending)[1:4] == ["Running", "0/1", ""]


@pytest.mark.parametrize(
    ("conditions", "deleting", "expected"),
    [
        ([{"type": "Failed", "status": "True"}], True, "Failed"),
        ([], True, "Terminating"),
        ([{"type": "Suspended", "status": "True"}], False, "Suspended"),
        ([{"type": "FailureTarget", "status": "True"}], False, "FailureTarget"),
        ([{"type": "Suspended", "status": "False"}], False, "Running"),
    ],
)
def test_job_status(conditions: list[dict[str, str]], deleting: bool, expected: str) -> None:
    obj = job(conditions=conditions)
    if deleting:
        obj["metadata"]["deletionTimestamp"] = ago(seconds=1)
    assert cells("batch", "Job", obj)[1] == expected


@pytest.mark.parametrize(
    ("spec", "expected"),
    [({"completions": 5}, "2/5"), ({"parallelism": 3}, "2/1 of 3"), ({"parallelism": 1}, "2/1"), ({}, "2/1")],
)
def test_job_completions(spec: dict[str, Any], expected: str) -> None:
    obj = {"metadata": meta("j"), "spec": spec, "status": {"succeeded": 2}}
    assert cells("batch", "Job", obj)[2] == expected


def test_cronjob() -> None:
    cron = {
        "metadata": meta("nightly"),
        "spec": {
            "schedule": "0 2 * * *",
            "suspend": False,
            "jobTemplate": {"spec": {"template": template(("backup", "backup:2"))}},
        },
        "status": {"active": [{"name": "nightly-1"}], "lastScheduleTime": ago(minutes=45)},
    }
    assert cells("batch", "CronJob", cron) == [
        "nightly",
        "0 2 * * *",
        "<none>",
        "False",
        1,
        "45m",
        "5h",
        "backup",
        "backup:2",
        "<none>",
    ]
    cron["spec"]["timeZone"] = "Etc/UTC"
    del cron["spec"]["suspend"]
    del cron["status"]
    assert cells("batch", "CronJob", cron)[2:6] == ["Etc/UTC", "<unset>", 0, "<none>"]


# --- other groups ---------------------------------------------------------------------------


def test_lease() -> None:
    lease = {"metadata": meta("kube-scheduler"), "spec": {"holderIdentity": "cp-1_abc"}}
    assert headers("coordination.k8s.io", "Lease") == [("Name", 0), ("Holder", 0), ("Age", 0)]
    assert cells("coordination.k8s.io", "Lease", lease) == ["kube-scheduler", "cp-1_abc", "5h"]
    assert cells("coordination.k8s.io", "Lease", {"metadata": meta("x"), "spec": {}})[1] == ""


def test_endpoint_slice() -> None:
    eps = {
        "metadata": meta("web-abc12"),
        "addressType": "IPv4",
        "ports": [{"port": 80, "name": "http"}, {"name": "metrics"}, {}, {"port": 8443}],
        "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2", "10.0.0.3"]}],
    }
    assert cells("discovery.k8s.io", "EndpointSlice", eps) == [
        "web-abc12",
        "IPv4",
        "80,metrics,* + 1 more...",
        "10.0.0.1,10.0.0.2,10.0.0.3",
        "5h",
    ]
    empty = {"metadata": meta("e"), "addressType": "IPv6"}
    assert cells("discovery.k8s.io", "EndpointSlice", empty)[2:4] == ["<unset>", "<unset>"]


def test_pod_disruption_budget() -> None:
    pdb = {"metadata": meta("web"), "spec": {"minAvailable": "50%"}, "status": {"disruptionsAllowed": 1}}
    assert cells("policy", "PodDisruptionBudget", pdb) == ["web", "50%", "N/A", 1, "5h"]
    pdb = {"metadata": meta("db"), "spec": {"maxUnavailable": 1}, "status": {}}
    assert cells("policy", "PodDisruptionBudget", pdb) == ["db", "N/A", "1", 0, "5h"]


def test_role_binding_subjects() -> None:
    binding = {
        "metadata": meta("edit"),
        "roleRef": {"kind": "ClusterRole", "name": "edit", "apiGroup": "rbac.authorization.k8s.io"},
        "subjects": [
            {"kind": "User", "name": "alice"},
            {"kind": "Group", "name": "devs"},
            {"kind": "ServiceAccount", "name": "ci", "namespace": "build"},
            {"kind": "User", "name": "bob"},
        ],
    }
    assert cells("rbac.authorization.k8s.io", "RoleBinding", binding) == [
        "edit",
        "ClusterRole/edit",
        "5h",
        "alice, bob",
        "devs",
        "build/ci",
    ]


def test_ingress_and_storage_class() -> None:
    ingress = {
        "metadata": meta("test1"),
        "spec": {"ingressClassName": "foo"},
        "status": {"loadBalancer": {"ingress": [{"ip": "2.3.4.5", "hostname": "localhost.localdomain"}]}},
    }
    assert cells("networking.k8s.io", "Ingress", ingress) == ["test1", "foo", "*", "2.3.4.5", "80", "5h"]
    sc = {
        "metadata": meta("standard", annotations={"storageclass.kubernetes.io/is-default-class": "true"}),
        "provisioner": "rancher.io/local-path",
        "volumeBindingMode": "WaitForFirstConsumer",
    }
    assert cells("storage.k8s.io", "StorageClass", sc) == [
        "standard (default)",
        "rancher.io/local-path",
        "Delete",
        "WaitForFirstConsumer",
        False,
        "5h",
    ]


def test_hpa_targets() -> None:
    hpa = {
        "metadata": meta("web"),
        "spec": {
            "scaleTargetRef": {"kind": "Deployment", "name": "web"},
            "minReplicas": 1,
            "maxReplicas": 10,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}},
                },
                {"type": "Pods", "pods": {"target": {"averageValue": "1k"}}},
                {"type": "Resource", "resource": {"name": "memory", "target": {"averageValue": "1Gi"}}},
            ],
        },
        "status": {
            "currentReplicas": 3,
            "currentMetrics": [{"resource": {"current": {"averageUtilization": 42}}}],
        },
    }
    assert cells("autoscaling", "HorizontalPodAutoscaler", hpa) == [
        "web",
        "Deployment/web",
        "cpu: 42%/80%, <unknown>/1k + 1 more...",
        "1",
        10,
        3,
        "5h",
    ]
