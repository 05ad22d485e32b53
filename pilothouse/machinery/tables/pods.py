"""The pod printer: READY, the aggregate STATUS and RESTARTS kubectl shows for ``get pods``.

STATUS is the subtle one, so ``printPod`` is followed step by step: pod phase or reason, then
``SchedulingGated``, then init containers (``Init:N/M``, ``Init:<reason>``, ``Init:ExitCode:N``;
restartable "sidecar" init containers count as containers once started), then the app containers
from last to first (a waiting or terminated reason wins, e.g. ``CrashLoopBackOff``), then
``Completed`` back to ``Running``/``NotReady`` while a container still runs, and finally
``Terminating`` (or ``Unknown`` for a NodeLost pod) once deletion has begun.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pilothouse.machinery.kinds.types import Object
from pilothouse.machinery.tables.columns import AGE, NAME, Column, Doc, age, printer
from pilothouse.machinery.tables.duration import parse_time, translate_since

__all__ = ["pod_cells", "pod_conditions"]

_SUCCEEDED = [
    {
        "type": "Completed",
        "status": "True",
        "reason": "Succeeded",
        "message": "The pod has completed successfully.",
    }
]
_FAILED = [{"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed."}]


def pod_conditions(pod: Object) -> list[dict[str, str]] | None:
    """The row conditions printers.go attaches to finished pods."""
    phase = (pod.get("status") or {}).get("phase")
    if phase == "Succeeded":
        return _SUCCEEDED
    if phase == "Failed":
        return _FAILED
    return None


def _later(current: tuple[datetime, str] | None, state: dict[str, Any] | None) -> tuple[datetime, str] | None:
    """Keep the latest ``lastState.terminated.finishedAt`` seen (``lastRestartDate.Before``)."""
    terminated = (state or {}).get("terminated")
    if terminated is None:
        return current
    finished = terminated.get("finishedAt")
    parsed = parse_time(finished) if finished else None
    if parsed is None or (current is not None and current[0] >= parsed):
        return current
    return (parsed, finished)


def _terminated_reason(terminated: dict[str, Any], prefix: str) -> str:
    if terminated.get("reason"):
        return prefix + str(terminated["reason"])
    if terminated.get("signal"):
        return f"{prefix}Signal:{terminated['signal']}"
    return f"{prefix}ExitCode:{terminated.get('exitCode', 0)}"


def _has_condition(conditions: list[dict[str, Any]], kind: str) -> bool:
    return any(c.get("type") == kind and c.get("status") == "True" for c in conditions)


@printer(
    ("", "Pod"),
    [
        NAME,
        Column("Ready", description="The aggregate readiness state of this pod for accepting traffic."),
        Column("Status", description="The aggregate status of the containers in this pod."),
        Column(
            "Restarts",
            description="The number of times the containers in this pod have been restarted and when the "
            "last container in this pod has restarted.",
        ),
        AGE,
        Column("IP", priority=1, description=Doc("core.v1.PodStatus", "podIP")),
        Column("Node", priority=1, description=Doc("core.v1.PodSpec", "nodeName")),
        Column("Nominated Node", priority=1, description=Doc("core.v1.PodStatus", "nominatedNodeName")),
        Column("Readiness Gates", priority=1, description=Doc("core.v1.PodSpec", "readinessGates")),
    ],
    conditions=pod_conditions,
)
def pod_cells(pod: Object, now: datetime) -> list[Any]:
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    conditions = status.get("conditions") or []
    init_specs = spec.get("initContainers") or []

    restarts = 0
    sidecar_restarts = 0
    total = len(spec.get("containers") or [])
    ready = 0
    last_restart: tuple[datetime, str] | None = None
    last_sidecar_restart: tuple[datetime, str] | None = None

    phase = status.get("phase") or ""
    reason = status.get("reason") or phase
    for condition in conditions:
        if condition.get("type") == "PodScheduled" and condition.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"

    sidecars = set()
    for container in init_specs:
        if container.get("restartPolicy") == "Always":
            sidecars.add(container.get("name"))
            total += 1

    initializing = False
    init_statuses = status.get("initContainerStatuses") or []
    for index, container in enumerate(init_statuses):
        count = container.get("restartCount") or 0
        restarts += count
        last_state = container.get("lastState")
        last_restart = _later(last_restart, last_state)
        is_sidecar = container.get("name") in sidecars
        if is_sidecar:
            sidecar_restarts += count
            last_sidecar_restart = _later(last_sidecar_restart, last_state)
        state = container.get("state") or {}
        terminated = state.get("terminated")
        waiting = state.get("waiting")
        if terminated is not None and not terminated.get("exitCode"):
            continue
        if is_sidecar and container.get("started"):
            if container.get("ready"):
                ready += 1
            continue
        if terminated is not None:
            reason = _terminated_reason(terminated, "Init:")
        elif waiting is not None and waiting.get("reason") and waiting["reason"] != "PodInitializing":
            reason = "Init:" + waiting["reason"]
        else:
            reason = f"Init:{index}/{len(init_specs)}"
        initializing = True
        break

    if not initializing or _has_condition(conditions, "Initialized"):
        restarts = sidecar_restarts
        last_restart = last_sidecar_restart
        has_running = False
        for container in reversed(status.get("containerStatuses") or []):
            restarts += container.get("restartCount") or 0
            last_restart = _later(last_restart, container.get("lastState"))
            state = container.get("state") or {}
            waiting = state.get("waiting")
            terminated = state.get("terminated")
            if waiting is not None and waiting.get("reason"):
                reason = waiting["reason"]
            elif terminated is not None:
                reason = _terminated_reason(terminated, "")
            elif container.get("ready") and state.get("running") is not None:
                has_running = True
                ready += 1
        # A finished container must not hide one that still runs.
        if reason == "Completed" and has_running:
            reason = "Running" if _has_condition(conditions, "Ready") else "NotReady"

    if meta.get("deletionTimestamp"):
        if status.get("reason") == "NodeLost":
            reason = "Unknown"
        elif phase not in ("Succeeded", "Failed"):
            reason = "Terminating"

    restarts_cell = str(restarts)
    if restarts and last_restart is not None:
        restarts_cell = f"{restarts} ({translate_since(last_restart[1], now)} ago)"

    pod_ips = status.get("podIPs") or []
    pod_ip = (pod_ips[0].get("ip") if pod_ips else status.get("podIP")) or "<none>"
    gates = spec.get("readinessGates") or []
    readiness = "<none>"
    if gates:
        by_type: dict[str, Any] = {}
        for condition in conditions:
            by_type.setdefault(condition.get("type"), condition.get("status"))
        passed = sum(1 for gate in gates if by_type.get(gate.get("conditionType")) == "True")
        readiness = f"{passed}/{len(gates)}"

    return [
        meta.get("name", ""),
        f"{ready}/{total}",
        reason,
        restarts_cell,
        age(pod, now),
        pod_ip,
        spec.get("nodeName") or "<none>",
        status.get("nominatedNodeName") or "<none>",
        readiness,
    ]
