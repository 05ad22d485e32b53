"""The Table envelope, HumanDuration, and the core kinds' rows (printers.go / printers_test.go)."""

from __future__ import annotations

import copy
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pilothouse.machinery.errors import StatusError
from pilothouse.machinery.tables import column_definitions_for, human_duration, to_table

NOW = datetime(2024, 6, 1, 12, 0, 0, tzinfo=UTC)


def ago(**delta: float) -> str:
    return (NOW - timedelta(**delta)).strftime("%Y-%m-%dT%H:%M:%SZ")


def meta(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "creationTimestamp": ago(days=3), **extra}


def cells(group: str, kind: str, obj: dict[str, Any]) -> list[Any]:
    result: list[Any] = to_table(group, kind, [obj], now=NOW)["rows"][0]["cells"]
    return result


def headers(group: str, kind: str) -> list[tuple[str, int]]:
    return [(c["name"], c["priority"]) for c in column_definitions_for(group, kind)]


# --- duration.HumanDuration (ported from duration_test.go) -------------------------------------


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (1, "1s"),
        (70, "70s"),
        (190, "3m10s"),
        (70 * 60, "70m"),
        (47 * 3600, "47h"),
        (49 * 3600, "2d1h"),
        ((8 * 24 + 2) * 3600, "8d"),
        (367 * 24 * 3600, "367d"),
        ((365 * 2 * 24 + 25) * 3600, "2y1d"),
        ((365 * 8 * 24 + 2) * 3600, "8y"),
        (-2, "<invalid>"),
        (-1.999, "0s"),
        (0, "0s"),
        (0.999, "0s"),
        (119.999, "119s"),
        (120, "2m"),
        (121, "2m1s"),
        (599.999, "9m59s"),
        (600, "10m"),
        (601, "10m"),
        (3 * 3600 - 0.001, "179m"),
        (3 * 3600, "3h"),
        (3 * 3600 + 60, "3h1m"),
        (8 * 3600 - 0.001, "7h59m"),
        (8 * 3600 + 59 * 60, "8h"),
        (2 * 86400 - 0.001, "47h"),
        (2 * 86400, "2d"),
        (8 * 86400 - 0.001, "7d23h"),
        (8 * 86400 + 23 * 3600, "8d"),
        (2 * 365 * 86400 - 0.001, "729d"),
        (2 * 365 * 86400, "2y"),
        (2 * 365 * 86400 + 86400, "2y1d"),
        (8 * 365 * 86400 - 0.001, "7y364d"),
        (9 * 365 * 86400, "9y"),
    ],
)
def test_human_duration(seconds: float, expected: str) -> None:
    assert human_duration(seconds) == expected


# --- the Table envelope ----------------------------------------------------------------------


def test_table_envelope_and_partial_object_metadata() -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta("a", namespace="ns", labels={"x": "1"})}
    table = to_table("", "ConfigMap", [cm], now=NOW, list_meta={"resourceVersion": "42"})
    assert table["kind"] == "Table"
    assert table["apiVersion"] == "meta.k8s.io/v1"
    assert table["metadata"] == {"resourceVersion": "42"}
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Data", "Age"]
    name_column = table["columnDefinitions"][0]
    assert name_column["format"] == "name"
    assert name_column["type"] == "string"
    assert name_column["description"].startswith("Name must be unique within a namespace.")
    assert set(name_column) == {"name", "type", "format", "description", "priority"}
    assert table["rows"] == [
        {
            "cells": ["a", 0, "3d"],
            "object": {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": cm["metadata"],
            },
        }
    ]


def test_include_object_modes() -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta("a"), "data": {"k": "v"}}
    assert to_table("", "ConfigMap", [cm], now=NOW, include_object="Object")["rows"][0]["object"] == cm
    assert to_table("", "ConfigMap", [cm], now=NOW, include_object="None")["rows"][0]["object"] is None
    assert to_table("", "ConfigMap", [cm], now=NOW, include_object="")["rows"][0]["object"]["kind"] == (
        "PartialObjectMetadata"
    )
    with pytest.raises(StatusError) as caught:
        to_table("", "ConfigMap", [cm], include_object="Everything")
    assert caught.value.code == 400
    assert caught.value.message == 'unrecognized includeObject value: "Everything"'


def test_no_headers_and_v1beta1() -> None:
    table = to_table("", "ConfigMap", [], now=NOW, no_headers=True, version="v1beta1")
    assert table["columnDefinitions"] == []
    assert table["rows"] == []
    assert table["apiVersion"] == "meta.k8s.io/v1beta1"


def test_kinds_without_a_printer_get_name_and_created_at() -> None:
    # kube-apiserver's default table convertor (e.g. limitranges, roles, clusterroles).
    limit_range = {"metadata": meta("limits", namespace="ns", creationTimestamp="2024-05-01T08:30:00Z")}
    table = to_table("", "LimitRange", [limit_range], now=NOW)
    assert [(c["name"], c["type"]) for c in table["columnDefinitions"]] == [
        ("Name", "string"),
        ("Created At", "date"),
    ]
    assert table["rows"][0]["cells"] == ["limits", "2024-05-01T08:30:00Z"]
    assert cells("rbac.authorization.k8s.io", "ClusterRole", {"metadata": {"name": "view"}}) == [
        "view",
        "0001-01-01T00:00:00Z",
    ]


def test_ten_thousand_pods_are_fast() -> None:
    pod = {
        "metadata": {"name": "p", "namespace": "default", "creationTimestamp": ago(hours=2)},
        "spec": {"nodeName": "n", "containers": [{"name": "a"}, {"name": "b"}]},
        "status": {
            "phase": "Running",
            "podIPs": [{"ip": "10.0.0.1"}],
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [
                {
                    "ready": True,
                    "restartCount": 2,
                    "state": {"running": {}},
                    "lastState": {"terminated": {"finishedAt": ago(minutes=5)}},
                },
                {"ready": True, "restartCount": 0, "state": {"running": {}}},
            ],
        },
    }
    pods = []
    for i in range(10_000):
        item = copy.deepcopy(pod)
        item["metadata"]["name"] = f"p-{i}"
        item["metadata"]["creationTimestamp"] = ago(hours=2, seconds=i % 600)
        pods.append(item)
    to_table("", "Pod", pods[:1], now=NOW)  # one-off: schema descriptions load on first use
    best = min(_timed(lambda: to_table("", "Pod", pods, now=NOW)) for _ in range(3))
    # A guard against an accidental quadratic, not a speed figure (those are bench/'s): about 0.1 s
    # here when quiet, and a loaded CI machine must not fail it.
    assert best < 1.0
    assert to_table("", "Pod", pods[:1], now=NOW)["rows"][0]["cells"][:5] == [
        "p-0",
        "2/2",
        "Running",
        "2 (5m ago)",
        "120m",
    ]


def _timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# --- nodes (TestPrintNodeStatus / TestPrintNodeRole / TestPrintNodeInternalIP) ---------------


def test_node_columns() -> None:
    assert headers("", "Node") == [
        ("Name", 0),
        ("Status", 0),
        ("Roles", 0),
        ("Age", 0),
        ("Version", 0),
        ("Internal-IP", 1),
        ("External-IP", 1),
        ("OS-Image", 1),
        ("Kernel-Version", 1),
        ("Container-Runtime", 1),
    ]


@pytest.mark.parametrize(
    ("unschedulable", "conditions", "expected"),
    [
        (False, [{"type": "Ready", "status": "True"}], "Ready"),
        (True, [{"type": "Ready", "status": "True"}], "Ready,SchedulingDisabled"),
        (False, [{"type": "Ready", "status": "False"}], "NotReady"),
        (True, [{"type": "Ready", "status": "Unknown"}], "NotReady,SchedulingDisabled"),
        (False, [], "Unknown"),
        (True, [{"type": "InvalidValue", "status": "True"}], "Unknown,SchedulingDisabled"),
    ],
)
def test_node_status(unschedulable: bool, conditions: list[dict[str, str]], expected: str) -> None:
    node = {
        "metadata": {"name": "foo"},
        "spec": {"unschedulable": unschedulable},
        "status": {"conditions": conditions},
    }
    assert cells("", "Node", node)[1] == expected


def test_node_roles_and_wide_fields() -> None:
    node = {
        "metadata": meta(
            "cp-1",
            labels={
                "node-role.kubernetes.io/control-plane": "",
                "node-role.kubernetes.io/": "ignored",
                "kubernetes.io/role": "master",
                "kubernetes.io/hostname": "cp-1",
            },
        ),
        "status": {
            "conditions": [
                {"type": "MemoryPressure", "status": "False"},
                {"type": "Ready", "status": "True"},
            ],
            "addresses": [
                {"type": "Hostname", "address": "cp-1"},
                {"type": "InternalIP", "address": "2.2.2.2"},
                {"type": "ExternalIP", "address": "3.3.3.3"},
                {"type": "InternalIP", "address": "4.4.4.4"},
            ],
            "nodeInfo": {
                "kubeletVersion": "v1.32.0",
                "osImage": "Debian GNU/Linux 12",
                "kernelVersion": "6.1.0",
                "containerRuntimeVersion": "containerd://1.7.0",
            },
        },
    }
    assert cells("", "Node", node) == [
        "cp-1",
        "Ready",
        "control-plane,master",
        "3d",
        "v1.32.0",
        "2.2.2.2",
        "3.3.3.3",
        "Debian GNU/Linux 12",
        "6.1.0",
        "containerd://1.7.0",
    ]
    bare = {
        "metadata": {"name": "foo1"},
        "status": {"addresses": [{"type": "ExternalIP", "address": "1.1.1.1"}]},
    }
    assert cells("", "Node", bare) == [
        "foo1",
        "Unknown",
        "<none>",
        "<unknown>",
        "",
        "<none>",
        "1.1.1.1",
        "<unknown>",
        "<unknown>",
        "<unknown>",
    ]


# --- services (TestPrintServiceLoadBalancer and friends) -------------------------------------


def service(name: str, kind: str, ports: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    status = extra.pop("status", {})
    return {"metadata": {"name": name}, "spec": {"type": kind, "ports": ports, **extra}, "status": status}


TCP80 = [{"port": 80, "protocol": "TCP"}]


@pytest.mark.parametrize(
    ("svc", "expected"),
    [
        (
            service(
                "service1",
                "LoadBalancer",
                TCP80,
                clusterIPs=["1.2.3.4"],
                status={"loadBalancer": {"ingress": [{"ip": "3.4.5.6"}, {"ip": "2.3.4.5"}]}},
            ),
            ["service1", "LoadBalancer", "1.2.3.4", "2.3.4.5,3.4.5.6", "80/TCP", "<unknown>", "<none>"],
        ),
        (
            service(
                "service2",
                "LoadBalancer",
                [
                    {"port": 80, "protocol": "TCP"},
                    {"port": 8090, "protocol": "UDP"},
                    {"port": 7777, "protocol": "SCTP"},
                ],
                clusterIPs=["1.3.4.5"],
            ),
            [
                "service2",
                "LoadBalancer",
                "1.3.4.5",
                "<pending>",
                "80/TCP,8090/UDP,7777/SCTP",
                "<unknown>",
                "<none>",
            ],
        ),
        (
            # Wide output (what the server always computes) does not elide long address lists.
            service(
                "service4",
                "LoadBalancer",
                TCP80,
                clusterIPs=["1.5.6.7"],
                selector={"foo": "bar"},
                status={
                    "loadBalancer": {
                        "ingress": [{"ip": "2.3.4.5"}, {"ip": "3.4.5.6"}, {"ip": "5.6.7.8", "hostname": "h"}]
                    }
                },
            ),
            [
                "service4",
                "LoadBalancer",
                "1.5.6.7",
                "2.3.4.5,3.4.5.6,5.6.7.8",
                "80/TCP",
                "<unknown>",
                "foo=bar",
            ],
        ),
        (
            service(
                "np",
                "NodePort",
                [{"port": 80, "nodePort": 30080, "protocol": "TCP"}],
                clusterIP="10.0.0.5",
                externalIPs=["9.9.9.9"],
                selector={"b": "2", "a": "1"},
            ),
            ["np", "NodePort", "10.0.0.5", "9.9.9.9", "80:30080/TCP", "<unknown>", "a=1,b=2"],
        ),
        (
            service("ext", "ExternalName", [], externalName="example.com"),
            ["ext", "ExternalName", "<none>", "example.com", "<none>", "<unknown>", "<none>"],
        ),
        (
            service("headless", "ClusterIP", TCP80, clusterIP="None", clusterIPs=["None"]),
            ["headless", "ClusterIP", "None", "<none>", "80/TCP", "<unknown>", "<none>"],
        ),
    ],
)
def test_service(svc: dict[str, Any], expected: list[Any]) -> None:
    assert cells("", "Service", svc) == expected


# --- endpoints, config maps, secrets, service accounts, namespaces, quotas -------------------


def test_endpoints() -> None:
    endpoints = {
        "metadata": meta("svc"),
        "subsets": [
            {
                "addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}, {"ip": "fd00::3"}],
                "ports": [{"port": 8080}, {"port": 9090, "name": "metrics"}],
            }
        ],
    }
    assert cells("", "Endpoints", endpoints) == [
        "svc",
        "10.0.0.1:8080,10.0.0.2:8080,[fd00::3]:8080 + 3 more...",
        "3d",
    ]
    assert cells("", "Endpoints", {"metadata": meta("empty")}) == ["empty", "<none>", "3d"]
    headless = {"metadata": meta("h"), "subsets": [{"addresses": [{"ip": "1.1.1.1"}]}]}
    assert cells("", "Endpoints", headless)[1] == "1.1.1.1"


def test_configmap_secret_serviceaccount_namespace() -> None:
    cm = {"metadata": meta("cm"), "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}}
    assert cells("", "ConfigMap", cm) == ["cm", 3, "3d"]
    secret = {"metadata": meta("s"), "type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}}
    assert cells("", "Secret", secret) == ["s", "kubernetes.io/tls", 2, "3d"]
    assert headers("", "ServiceAccount") == [("Name", 0), ("Secrets", 0), ("Age", 0)]
    assert cells("", "ServiceAccount", {"metadata": meta("default")}) == ["default", 0, "3d"]
    ns = {"metadata": meta("kube-system"), "status": {"phase": "Active"}}
    assert cells("", "Namespace", ns) == ["kube-system", "Active", "3d"]


def test_resource_quota() -> None:
    quota = {
        "metadata": meta("compute"),
        "status": {
            "hard": {"requests.cpu": "2", "limits.memory": "4Gi", "pods": "10", "limits.cpu": "4"},
            "used": {"requests.cpu": "500m", "limits.memory": "1Gi", "limits.cpu": "1"},
        },
    }
    assert cells("", "ResourceQuota", quota) == [
        "compute",
        "pods: 0/10, requests.cpu: 500m/2",
        "limits.cpu: 1/4, limits.memory: 1Gi/4Gi",
        "3d",
    ]


# --- events (core/v1 and events.k8s.io/v1) ---------------------------------------------------


def test_event_columns() -> None:
    expected = [
        ("Last Seen", 0),
        ("Type", 0),
        ("Reason", 0),
        ("Object", 0),
        ("Subobject", 1),
        ("Source", 1),
        ("Message", 0),
        ("First Seen", 1),
        ("Count", 1),
        ("Name", 1),
    ]
    assert headers("", "Event") == expected
    assert headers("events.k8s.io", "Event") == expected


def test_core_event() -> None:
    event = {
        "metadata": meta("web.17a"),
        "involvedObject": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{app}"},
        "reason": "BackOff",
        "message": "Back-off restarting failed container\n",
        "type": "Warning",
        "source": {"component": "kubelet", "host": "worker-1"},
        "firstTimestamp": ago(minutes=30),
        "lastTimestamp": ago(seconds=40),
        "count": 7,
    }
    assert cells("", "Event", event) == [
        "40s",
        "Warning",
        "BackOff",
        "pod/web",
        "spec.containers{app}",
        "kubelet, worker-1",
        "Back-off restarting failed container",
        "30m",
        7,
        "web.17a",
    ]


def test_new_style_events_in_both_apis() -> None:
    core = {
        "metadata": meta("e1"),
        "involvedObject": {"kind": "Node"},
        "reason": "Scheduled",
        "message": "ok",
        "type": "Normal",
        "eventTime": "2024-06-01T11:59:50.123456Z",
        "reportingComponent": "default-scheduler",
    }
    assert cells("", "Event", core) == [
        "9s",
        "Normal",
        "Scheduled",
        "node",
        "",
        "default-scheduler",
        "ok",
        "9s",
        1,
        "e1",
    ]
    v1 = {
        "metadata": meta("e2"),
        "regarding": {"kind": "Pod", "name": "web"},
        "reason": "Pulled",
        "note": "Pulled image",
        "type": "Normal",
        "eventTime": "2024-06-01T11:00:00.000000Z",
        "series": {"count": 4, "lastObservedTime": "2024-06-01T11:58:00.000000Z"},
        "reportingController": "kubelet",
        "reportingInstance": "worker-2",
    }
    assert cells("events.k8s.io", "Event", v1) == [
        "2m",
        "Normal",
        "Pulled",
        "pod/web",
        "",
        "kubelet, worker-2",
        "Pulled image",
        "60m",
        4,
        "e2",
    ]
