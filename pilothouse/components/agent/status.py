"""A pod's status from what the engine reports: the kubelet's ``generateAPIPodStatus``, pure.

Given the pod, the containers the engine has for it (latest attempt first per container name), the
reasons the pod worker is holding a container back (CrashLoopBackOff, ErrImagePull, ...) and the
probe results, compute phase, conditions, IPs and container statuses exactly as Kubernetes 1.32
presents them. No I/O, so it is tested on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pilothouse.components.agent.runtime.interface import ContainerState
from pilothouse.machinery import meta
from pilothouse.machinery.kinds.quantity import parse_quantity
from pilothouse.machinery.meta import Object

__all__ = ["PodObservation", "compute_pod_status", "get_phase", "qos_class", "status_patch"]



@dataclass
class PodObservation:
    """What the worker knows about one pod's containers at one moment."""

    #: container name -> attempts, newest first
    attempts: dict[str, list[ContainerState]] = field(default_factory=dict)
    sandbox: ContainerState | None = None
    #: container name -> (reason, message) while the worker holds it back
    waiting: dict[str, tuple[str, str]] = field(default_factory=dict)
    ready: dict[str, bool] = field(default_factory=dict)  # by container id
    started: dict[str, bool] = field(default_factory=dict)  # by container id
    scheme: str = "docker"
    host_ip: str = ""
    host_network: bool = False
    #: the pod is terminal (Failed/Succeeded decided earlier): keep that phase
    terminal_phase: str = ""


def qos_class(pod: Object) -> str:
    spec = pod.get("spec") or {}
    containers = (spec.get("containers") or []) + (spec.get("initContainers") or [])
    requested = False
    guaranteed = True
    for container in containers:
        resources = container.get("resources") or {}
        limits = resources.get("limits") or {}
        requests = {**limits, **(resources.get("requests") or {})}
        if requests or limits:
            requested = True
        for name in ("cpu", "memory"):
            if name not in limits or parse_quantity(str(limits[name])) != parse_quantity(str(requests.get(name))):
                guaranteed = False
    if not requested:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def _terminated(state: ContainerState, scheme: str) -> Object:
    reason = "OOMKilled" if state.oom_killed else ("Completed" if state.exit_code == 0 else "Error")
    result: Object = {"exitCode": state.exit_code, "reason": reason, "containerID": f"{scheme}://{state.id}"}
    if state.started_at:
        result["startedAt"] = state.started_at
    if state.finished_at:
        result["finishedAt"] = state.finished_at
    return result


def _container_status(container: Object, obs: PodObservation, default_waiting: str) -> Object:
    name = container.get("name", "")
    attempts = obs.attempts.get(name) or []
    latest = attempts[0] if attempts else None
    held = obs.waiting.get(name)
    status: Object = {"name": name, "image": container.get("image", ""), "imageID": "", "ready": False,
                      "restartCount": 0, "started": False, "state": {}, "lastState": {}}
    if latest is None:
        reason, message = held or (default_waiting, "")
        status["state"] = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
        return status
    status["restartCount"] = int(latest.labels.get(LABEL_RESTART_COUNT, "0") or 0)
    status["imageID"] = latest.image_id
    status["containerID"] = f"{obs.scheme}://{latest.id}"
    previous = attempts[1] if len(attempts) > 1 else None
    if latest.state == "running":
        status["state"] = {"running": {"startedAt": latest.started_at or meta.format_time()}}
        if previous is not None and previous.state == "exited":
            status["lastState"] = {"terminated": _terminated(previous, obs.scheme)}
        status["started"] = obs.started.get(latest.id, True)
        status["ready"] = bool(obs.ready.get(latest.id, False)) and status["started"]
    elif latest.state == "exited":
        if held is not None:
            reason, message = held
            status["state"] = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
            status["lastState"] = {"terminated": _terminated(latest, obs.scheme)}
        else:
            status["state"] = {"terminated": _terminated(latest, obs.scheme)}
            if previous is not None and previous.state == "exited":
                status["lastState"] = {"terminated": _terminated(previous, obs.scheme)}
    else:
        reason, message = held or ("ContainerCreating", "")
        status["state"] = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
    return status


LABEL_RESTART_COUNT = "io.pilothouse.restart-count"


def get_phase(pod: Object, init_statuses: list[Object], statuses: list[Object]) -> str:
    """The kubelet's ``getPhase`` (without sidecars)."""
    spec = pod.get("spec") or {}
    policy = spec.get("restartPolicy") or "Always"
    for status in init_statuses:
        state = status.get("state") or {}
        terminated = state.get("terminated")
        if terminated and terminated.get("exitCode") == 0:
            continue
        last = (status.get("lastState") or {}).get("terminated")
        failed = (terminated and terminated.get("exitCode") != 0) or (state.get("waiting") and last
                                                                       and last.get("exitCode") != 0)
        if failed and policy == "Never":
            return "Failed"
        return "Pending"
    running = waiting = stopped = succeeded = 0
    for status in statuses:
        state = status.get("state") or {}
        if state.get("running"):
            running += 1
        elif state.get("terminated"):
            stopped += 1
            if state["terminated"].get("exitCode") == 0:
                succeeded += 1
        elif state.get("waiting"):
            if (status.get("lastState") or {}).get("terminated"):
                stopped += 1
            else:
                waiting += 1
    if waiting > 0:
        return "Pending"
    if running > 0:
        return "Running"
    if stopped > 0:
        if policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        if policy == "Never":
            return "Failed"
        return "Running"
    return "Pending"


def _condition(previous: dict[str, Object], kind: str, ok: bool, reason: str = "", message: str = "") -> Object:
    status = "True" if ok else "False"
    prior = previous.get(kind)
    transition = prior.get("lastTransitionTime") if prior and prior.get("status") == status else None
    result: Object = {"type": kind, "status": status, "lastProbeTime": None,
                      "lastTransitionTime": transition or meta.format_time()}
    if not ok and reason:
        result["reason"] = reason
        if message:
            result["message"] = message
    return result


def compute_pod_status(pod: Object, obs: PodObservation) -> Object:
    spec = pod.get("spec") or {}
    old = pod.get("status") or {}
    previous = {c.get("type"): c for c in old.get("conditions") or []}
    init_containers = spec.get("initContainers") or []
    default_waiting = "PodInitializing" if init_containers else "ContainerCreating"
    init_statuses = [_container_status(c, obs, default_waiting) for c in init_containers]
    statuses = [_container_status(c, obs, default_waiting) for c in spec.get("containers") or []]
    for init_status in init_statuses:  # an init container that completed is "ready" in Kubernetes' terms
        terminated = (init_status.get("state") or {}).get("terminated")
        init_status["ready"] = bool(terminated and terminated.get("exitCode") == 0)
    phase = obs.terminal_phase or get_phase(pod, init_statuses, statuses)
    initialized = all(s["ready"] for s in init_statuses)
    sandbox_ready = obs.sandbox is not None and obs.sandbox.state == "running"
    pod_ip = obs.host_ip if obs.host_network else (obs.sandbox.ip if sandbox_ready and obs.sandbox else "")
    if not pod_ip and phase in ("Succeeded", "Failed"):
        pod_ip = old.get("podIP", "")  # a finished pod keeps its last IP, as the kubelet reports it
    unready = [s["name"] for s in statuses if not s["ready"]]
    uninitialized = [s["name"] for s in init_statuses if not s["ready"]]
    if phase in ("Succeeded", "Failed"):
        ready_reason = "PodCompleted"
        containers_ready = False
    else:
        ready_reason = "ContainersNotReady"
        containers_ready = not unready and initialized
    gates_ok = all((previous.get(g.get("conditionType")) or {}).get("status") == "True"
                   for g in spec.get("readinessGates") or [])
    unready_message = f"containers with unready status: [{' '.join(unready)}]" if unready else ""
    conditions = [
        _condition(previous, "PodReadyToStartContainers", sandbox_ready),
        _condition(previous, "Initialized", initialized, "PodCompleted" if phase in ("Succeeded", "Failed")
                   else "ContainersNotInitialized",
                   f"containers with incomplete status: [{' '.join(uninitialized)}]"),
        _condition(previous, "Ready", containers_ready and gates_ok, ready_reason, unready_message),
        _condition(previous, "ContainersReady", containers_ready, ready_reason, unready_message),
        previous.get("PodScheduled") or {"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                                          "lastTransitionTime": meta.format_time()},
    ]
    for kind, condition in previous.items():  # conditions others own (readiness gates, DisruptionTarget)
        if kind not in {c["type"] for c in conditions}:
            conditions.append(condition)
    status: Object = {
        "phase": phase, "conditions": conditions, "hostIP": obs.host_ip,
        "hostIPs": [{"ip": obs.host_ip}] if obs.host_ip else [],
        "startTime": old.get("startTime") or meta.format_time(),
        "qosClass": old.get("qosClass") or qos_class(pod), "containerStatuses": statuses,
    }
    if pod_ip:
        status["podIP"] = pod_ip
        status["podIPs"] = [{"ip": pod_ip}]
    if init_statuses:
        status["initContainerStatuses"] = init_statuses
    return status


def status_patch(old: Object, new: Object) -> Object | None:
    """A JSON merge patch turning ``old`` status into ``new`` (None when equal, ignoring nothing)."""
    patch: Object = {}
    for key, value in new.items():
        if old.get(key) != value:
            patch[key] = value
    for key in old:
        if key not in new and key not in ("nominatedNodeName", "resize", "message", "reason"):
            patch[key] = None
    return patch or None
