"""Pod Table rows against printers.go's printPod, with cases ported from printers_test.go."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pilothouse.machinery.tables import to_table

NOW = datetime(2024, 6, 1, 12, 0, 0, tzinfo=UTC)


def ago(**delta: float) -> str:
    return (NOW - timedelta(**delta)).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod(
    name: str = "p", *, containers: int = 1, init: list[dict[str, Any]] | None = None, **status: Any
) -> dict:
    obj: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"containers": [{"name": f"c{i}", "image": "img"} for i in range(containers)]},
        "status": status,
    }
    if init is not None:
        obj["spec"]["initContainers"] = init
    return obj


def row(obj: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = to_table("", "Pod", [obj], now=NOW)["rows"][0]
    return result


def cells(obj: dict[str, Any]) -> list[Any]:
    return list(row(obj)["cells"][:5])


RUNNING: dict[str, Any] = {"running": {}}


# --- ported from TestPrintPod (creationTimestamp unset, so AGE is "<unknown>") ---------------


def test_restarts_are_summed_and_only_running_ready_containers_count() -> None:
    p = pod(
        "test1",
        containers=2,
        phase="podPhase",
        containerStatuses=[{"ready": True, "restartCount": 3, "state": RUNNING}, {"restartCount": 3}],
    )
    assert cells(p) == ["test1", "1/2", "podPhase", "6", "<unknown>"]


def test_waiting_reason_overwrites_phase() -> None:
    p = pod(
        "test2",
        containers=2,
        phase="podPhase",
        containerStatuses=[
            {"ready": True, "restartCount": 3, "state": RUNNING},
            {"state": {"waiting": {"reason": "ContainerWaitingReason"}}, "restartCount": 3},
        ],
    )
    assert cells(p) == ["test2", "1/2", "ContainerWaitingReason", "6", "<unknown>"]


def test_first_container_reason_wins_over_later_ones() -> None:
    p = pod(
        "test3",
        containers=2,
        phase="podPhase",
        containerStatuses=[
            {"state": {"waiting": {"reason": "ContainerWaitingReason"}}, "restartCount": 3},
            {"state": {"terminated": {"reason": "ContainerTerminatedReason"}}, "restartCount": 3},
        ],
    )
    assert cells(p) == ["test3", "0/2", "ContainerWaitingReason", "6", "<unknown>"]


def test_pod_reason_overrides_phase() -> None:
    p = pod(
        "test5",
        containers=2,
        phase="podPhase",
        reason="podReason",
        containerStatuses=[
            {"ready": True, "restartCount": 3, "state": RUNNING},
            {"ready": True, "restartCount": 3},
        ],
    )
    assert cells(p) == ["test5", "1/2", "podReason", "6", "<unknown>"]


@pytest.mark.parametrize(
    ("conditions", "expected"), [([], "NotReady"), ([{"type": "Ready", "status": "True"}], "Running")]
)
def test_completed_container_next_to_running_one(conditions: list[dict[str, str]], expected: str) -> None:
    p = pod(
        "test6",
        containers=2,
        phase="Running",
        conditions=conditions,
        containerStatuses=[
            {
                "ready": True,
                "restartCount": 3,
                "state": {"terminated": {"reason": "Completed", "exitCode": 0}},
            },
            {"ready": True, "restartCount": 3, "state": RUNNING},
        ],
    )
    assert cells(p) == ["test6", "1/2", expected, "6", "<unknown>"]


def test_init_container_restarting() -> None:
    p = pod(
        "test7",
        init=[{"name": "i0", "image": "img"}],
        phase="podPhase",
        initContainerStatuses=[
            {
                "name": "i0",
                "ready": False,
                "restartCount": 3,
                "state": RUNNING,
                "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(seconds=10)}},
            }
        ],
        containerStatuses=[{"ready": False, "restartCount": 0, "state": {"waiting": {}}}],
    )
    assert cells(p) == ["test7", "0/1", "Init:0/1", "3 (10s ago)", "<unknown>"]


def test_second_init_container_running_after_first_completed_with_restarts() -> None:
    p = pod(
        "test10",
        init=[{"name": "i0"}, {"name": "i1"}],
        phase="podPhase",
        initContainerStatuses=[
            {
                "name": "i0",
                "restartCount": 2,
                "state": {"terminated": {}},
                "lastState": {"terminated": {"finishedAt": ago(minutes=2)}},
            },
            {
                "name": "i1",
                "restartCount": 3,
                "state": RUNNING,
                "lastState": {"terminated": {"finishedAt": ago(seconds=10)}},
            },
        ],
        containerStatuses=[{"state": {"waiting": {}}}],
    )
    assert cells(p) == ["test10", "0/1", "Init:1/2", "5 (10s ago)", "<unknown>"]


def test_init_done_only_app_container_restarts_count() -> None:
    p = pod(
        "test11",
        init=[{"name": "i0"}],
        phase="Running",
        initContainerStatuses=[
            {
                "name": "i0",
                "restartCount": 2,
                "state": {"terminated": {}},
                "lastState": {"terminated": {"finishedAt": ago(minutes=2)}},
            }
        ],
        containerStatuses=[
            {
                "restartCount": 4,
                "state": RUNNING,
                "lastState": {"terminated": {"finishedAt": ago(seconds=20)}},
            }
        ],
    )
    assert cells(p) == ["test11", "0/1", "Running", "4 (20s ago)", "<unknown>"]


def test_most_recent_restart_is_reported() -> None:
    p = pod(
        "test14",
        containers=2,
        phase="Running",
        containerStatuses=[
            {
                "ready": True,
                "restartCount": 6,
                "state": RUNNING,
                "lastState": {"terminated": {"finishedAt": ago(days=5)}},
            },
            {
                "ready": True,
                "restartCount": 3,
                "state": RUNNING,
                "lastState": {"terminated": {"finishedAt": ago(days=20)}},
            },
        ],
    )
    assert cells(p) == ["test14", "2/2", "Running", "9 (5d ago)", "<unknown>"]


def test_scheduling_gated() -> None:
    p = pod(
        "test15",
        containers=2,
        phase="podPhase",
        conditions=[{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}],
    )
    assert cells(p) == ["test15", "0/2", "SchedulingGated", "0", "<unknown>"]


def test_succeeded_pod_is_completed_with_row_condition_even_when_deleted() -> None:
    p = pod(
        "test18",
        phase="Succeeded",
        containerStatuses=[
            {"restartCount": 0, "state": {"terminated": {"reason": "Completed", "exitCode": 0}}}
        ],
    )
    p["metadata"]["deletionTimestamp"] = ago(seconds=10)
    r = row(p)
    assert r["cells"][:5] == ["test18", "0/1", "Completed", "0", "<unknown>"]
    assert r["conditions"] == [
        {
            "type": "Completed",
            "status": "True",
            "reason": "Succeeded",
            "message": "The pod has completed successfully.",
        }
    ]


def test_failed_pod_shows_container_reason_and_failed_condition() -> None:
    p = pod(
        "test17",
        phase="Failed",
        containerStatuses=[{"state": {"terminated": {"reason": "Error", "exitCode": 1}}}],
    )
    r = row(p)
    assert r["cells"][:5] == ["test17", "0/1", "Error", "0", "<unknown>"]
    assert r["conditions"] == [
        {"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed."}
    ]


@pytest.mark.parametrize("phase", ["Running", "Pending"])
def test_terminating_when_deletion_started(phase: str) -> None:
    p = pod("test19", phase=phase, containerStatuses=[{"state": RUNNING}] if phase == "Running" else [])
    p["metadata"]["deletionTimestamp"] = ago(seconds=10)
    r = row(p)
    assert r["cells"][2] == "Terminating"
    assert "conditions" not in r


def test_node_lost_pod() -> None:
    p = pod("lost", phase="Running", reason="NodeLost", containerStatuses=[{"ready": True, "state": RUNNING}])
    assert cells(p)[2] == "NodeLost"
    p["metadata"]["deletionTimestamp"] = ago(seconds=10)
    assert cells(p)[2] == "Unknown"


# --- restartable (sidecar) init containers: TestPrintPodWithRestartableInitContainer ---------

SIDECARS = [
    {"name": "restartable-init-1", "restartPolicy": "Always"},
    {"name": "restartable-init-2", "restartPolicy": "Always"},
]


def test_sidecar_running_but_not_started_blocks_initialization() -> None:
    p = pod(
        "test1",
        init=SIDECARS,
        phase="Pending",
        initContainerStatuses=[
            {
                "name": "restartable-init-1",
                "restartCount": 3,
                "state": RUNNING,
                "started": False,
                "lastState": {"terminated": {"finishedAt": ago(seconds=10)}},
            },
            {"name": "restartable-init-2", "state": {"waiting": {}}, "started": False},
        ],
        containerStatuses=[{"state": {"waiting": {}}}],
        conditions=[{"type": "Initialized", "status": "False"}],
    )
    assert cells(p) == ["test1", "0/3", "Init:0/2", "3 (10s ago)", "<unknown>"]


def test_started_sidecars_count_as_containers() -> None:
    p = pod(
        "test2",
        init=SIDECARS,
        phase="Running",
        initContainerStatuses=[
            {
                "name": "restartable-init-1",
                "restartCount": 3,
                "state": RUNNING,
                "started": True,
                "lastState": {"terminated": {"finishedAt": ago(seconds=10)}},
            },
            {"name": "restartable-init-2", "state": RUNNING, "started": True},
        ],
        containerStatuses=[
            {
                "ready": True,
                "restartCount": 4,
                "state": RUNNING,
                "lastState": {"terminated": {"finishedAt": ago(seconds=20)}},
            }
        ],
        conditions=[{"type": "Initialized", "status": "True"}],
    )
    assert cells(p) == ["test2", "1/3", "Running", "7 (10s ago)", "<unknown>"]


def test_statuses_of_unknown_containers() -> None:
    p = pod(
        "test4",
        init=[{"name": "init1"}, {"name": "sidecar1", "restartPolicy": "Always"}],
        phase="Running",
        initContainerStatuses=[{"name": "initinvalid"}, {"name": "init1"}, {"name": "sidecar1"}],
        containerStatuses=[{"name": "containerinvalid"}, {"name": "c0"}],
    )
    assert cells(p) == ["test4", "0/2", "Init:0/2", "0", "<unknown>"]


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ({"terminated": {"exitCode": 137, "signal": 9}}, "Init:Signal:9"),
        ({"terminated": {"exitCode": 2}}, "Init:ExitCode:2"),
        ({"terminated": {"exitCode": 1, "reason": "Error"}}, "Init:Error"),
        ({"waiting": {"reason": "CrashLoopBackOff"}}, "Init:CrashLoopBackOff"),
        ({"waiting": {"reason": "PodInitializing"}}, "Init:0/1"),
    ],
)
def test_init_container_failures(state: dict[str, Any], expected: str) -> None:
    p = pod(init=[{"name": "i"}], phase="Pending", initContainerStatuses=[{"name": "i", "state": state}])
    assert cells(p)[2] == expected


# --- realistic pods, with ages and wide columns -----------------------------------------------


def test_realistic_running_pod_with_a_crash_looping_sidecar() -> None:
    p = pod(
        "web-7d4b9c-x2x4z",
        containers=2,
        phase="Running",
        podIP="10.244.1.7",
        podIPs=[{"ip": "10.244.1.7"}, {"ip": "fd00::7"}],
        conditions=[{"type": "Ready", "status": "False"}],
        containerStatuses=[
            {
                "name": "c0",
                "ready": True,
                "restartCount": 0,
                "state": {"running": {"startedAt": ago(hours=3)}},
            },
            {
                "name": "c1",
                "ready": False,
                "restartCount": 3,
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
                "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": ago(minutes=2)}},
            },
        ],
    )
    p["metadata"]["creationTimestamp"] = ago(hours=3, minutes=5)
    p["spec"]["nodeName"] = "worker-1"
    assert row(p)["cells"] == [
        "web-7d4b9c-x2x4z",
        "1/2",
        "CrashLoopBackOff",
        "3 (2m ago)",
        "3h5m",
        "10.244.1.7",
        "worker-1",
        "<none>",
        "<none>",
    ]


def test_wide_columns_from_printpodwide() -> None:
    p = pod(
        "test1",
        containers=2,
        phase="podPhase",
        podIPs=[{"ip": "1.1.1.1"}, {"ip": "2001:db8::"}],
        nominatedNodeName="node1",
        conditions=[{"type": "condition1", "status": "False"}, {"type": "condition2", "status": "True"}],
        containerStatuses=[{"ready": True, "restartCount": 3, "state": RUNNING}, {"restartCount": 3}],
    )
    p["spec"]["nodeName"] = "test1"
    p["spec"]["readinessGates"] = [{"conditionType": f"condition{i}"} for i in (1, 2, 3)]
    assert row(p)["cells"] == [
        "test1",
        "1/2",
        "podPhase",
        "6",
        "<unknown>",
        "1.1.1.1",
        "test1",
        "node1",
        "1/3",
    ]


def test_pending_unscheduled_pod_wide_placeholders() -> None:
    p = pod("pending", phase="Pending")
    p["metadata"]["creationTimestamp"] = ago(seconds=5)
    assert row(p)["cells"] == ["pending", "0/1", "Pending", "0", "5s", "<none>", "<none>", "<none>", "<none>"]
