"""The agent's Node: registration, the Lease heartbeat and node status, as the 1.32 kubelet does.

Two heartbeats, as in Kubernetes since node leases: a Lease in ``kube-node-lease`` renewed every
``leaseDuration / 4`` (10 s for the default 40 s), which is what the node lifecycle controller
watches, and the Node's status, recomputed every ``status_update_frequency`` (10 s) but written only
when something changed or ``status_report_frequency`` (5 min) has passed, so that an idle cluster of
many nodes does not rewrite every Node every ten seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import platform
import random
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from pilothouse.client import errors
from pilothouse.client.rest import APIClient, resource
from pilothouse.machinery import meta
from pilothouse.machinery.meta import Object

__all__ = [
    "KUBELET_VERSION",
    "LEASES",
    "NODES",
    "NodeConfig",
    "NodeStatusManager",
    "RecordEvent",
    "condition_events",
    "detect_capacity",
    "detect_node_ip",
    "node_conditions",
    "node_reference",
]

log = logging.getLogger("pilothouse.agent.node")

KUBELET_VERSION = "v1.32.0"
NODES = resource("", "v1", "nodes")
LEASES = resource("coordination.k8s.io", "v1", "leases")
LEASE_NAMESPACE = "kube-node-lease"


# (type, reason when healthy, message when healthy); Ready is True when healthy, the others False
_CONDITIONS = [
    ("MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
    ("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    ("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
    ("Ready", "KubeletReady", "kubelet is posting ready status"),
]


# The kubelet's node status events (pkg/kubelet/nodestatus/setters.go): the reason recorded when a
# condition turns to each status, as "Node <name> status is now: <reason>".
_CONDITION_EVENTS = {
    ("MemoryPressure", "False"): "NodeHasSufficientMemory", ("MemoryPressure", "True"): "NodeHasInsufficientMemory",
    ("DiskPressure", "False"): "NodeHasNoDiskPressure", ("DiskPressure", "True"): "NodeHasDiskPressure",
    ("PIDPressure", "False"): "NodeHasSufficientPID", ("PIDPressure", "True"): "NodeHasInsufficientPID",
    ("Ready", "True"): "NodeReady", ("Ready", "False"): "NodeNotReady",
}

#: record(object or reference, type, reason, message), an EventRecorder's ``event``
RecordEvent = Callable[[Object, str, str, str], None]


def node_reference(name: str) -> Object:
    """The kubelet's ``nodeRef``: the Node's name stands in for its uid (kubectl describe node
    looks events up both ways)."""
    return {"kind": "Node", "name": name, "uid": name}


def condition_events(announced: dict[str, str], conditions: list[Object]) -> list[str]:
    """The reasons to record for conditions whose status differs from what was last announced
    (every one, the first time); ``announced`` is updated."""
    reasons = []
    for condition in conditions:
        kind, status = condition.get("type", ""), condition.get("status", "")
        if announced.get(kind) != status:
            announced[kind] = status
            reason = _CONDITION_EVENTS.get((kind, status))
            if reason:
                reasons.append(reason)
    return reasons


def detect_capacity(root_dir: str) -> dict[str, str]:
    """cpu, memory, ephemeral-storage and pods, as cadvisor would report them to the kubelet."""
    memory_kib = 0
    with contextlib.suppress(OSError), open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("MemTotal:"):
                memory_kib = int(line.split()[1])
    storage = 0
    with contextlib.suppress(OSError):
        stat = os.statvfs(root_dir if os.path.exists(root_dir) else "/")
        storage = stat.f_blocks * stat.f_frsize
    return {"cpu": str(os.cpu_count() or 1), "memory": f"{memory_kib}Ki", "ephemeral-storage": f"{storage // 1024}Ki",
            "hugepages-1Gi": "0", "hugepages-2Mi": "0", "pods": "110"}


def detect_node_ip(address: str) -> str:
    """The InternalIP: the bind address when specific, else the source address of the default route."""
    if address and address not in ("0.0.0.0", "::"):
        return address
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(("10.255.255.255", 1))  # no packet is sent: this only picks a route
        return str(sock.getsockname()[0])
    return "127.0.0.1"


def node_conditions(previous: list[Object] | None, ready: bool = True, now: str | None = None,
                    ready_message: str = "") -> list[Object]:
    """The four kubelet conditions, keeping lastTransitionTime unless the status flips."""
    now = now or meta.format_time()
    old = {c.get("type"): c for c in previous or []}
    result = []
    for kind, reason, message in _CONDITIONS:
        if kind == "Ready":
            status = "True" if ready else "False"
            if not ready:
                reason, message = "KubeletNotReady", ready_message or "container runtime is down"
        else:
            status = "False"
        prior = old.get(kind)
        transition = prior.get("lastTransitionTime") if prior and prior.get("status") == status else now
        result.append({"type": kind, "status": status, "lastHeartbeatTime": now,
                       "lastTransitionTime": transition or now, "reason": reason, "message": message})
    return result


@dataclass
class NodeConfig:
    name: str
    address: str = "127.0.0.1"  # InternalIP
    port: int = 10250
    labels: dict[str, str] = field(default_factory=dict)
    register: bool = True
    capacity: dict[str, str] = field(default_factory=dict)
    runtime_version: str = "docker://unknown"  # containerRuntimeVersion
    os_image: str = ""
    kernel_version: str = ""
    architecture: str = "amd64"
    lease_duration: int = 40
    status_update_frequency: float = 10.0
    status_report_frequency: float = 300.0
    #: Spread the first lease renewal over this many seconds (many simulated nodes in one process).
    jitter: float = 0.0
    taints: list[Object] = field(default_factory=list)


def _go_arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(machine, machine or "amd64")


class NodeStatusManager:
    """Registers one Node and keeps its Lease and status fresh."""

    def __init__(self, client: APIClient, config: NodeConfig) -> None:
        self.client = client
        self.config = config
        self.ready = True
        self.ready_message = ""
        self.uid = ""
        self._last_conditions: list[Object] = []
        self._last_reported: Object | None = None
        self._last_report_time = 0.0
        #: the Lease as our last write returned it: renewals update it without a GET first, as the
        #: kubelet's lease controller does (``latestLease``); a conflict or error drops it
        self._lease: Object | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.registered = asyncio.Event()
        self._changed = asyncio.Event()
        #: where the kubelet's node events go (the agent's recorder); none for simulated nodes
        self.event: RecordEvent | None = None
        #: the Node as the owner's informer last saw it (the kubelet's ``nodeLister``), read at each
        #: status update instead of a GET; None from it (not synced, gone): a GET, as the kubelet retries
        self.node_lister: Callable[[], Object | None] | None = None
        self._announced: dict[str, str] = {}

    # ------------------------------------------------------------ objects

    def labels(self) -> dict[str, str]:
        arch = self.config.architecture or _go_arch()
        return {"beta.kubernetes.io/arch": arch, "beta.kubernetes.io/os": "linux", "kubernetes.io/arch": arch,
                "kubernetes.io/hostname": self.config.name, "kubernetes.io/os": "linux", **self.config.labels}

    def status(self) -> Object:
        cfg = self.config
        capacity = cfg.capacity or detect_capacity("/")
        self._last_conditions = node_conditions(self._last_conditions, self.ready, ready_message=self.ready_message)
        if self.event is not None:
            for reason in condition_events(self._announced, self._last_conditions):
                self.event(node_reference(cfg.name), "Normal", reason, f"Node {cfg.name} status is now: {reason}")
        return {
            "capacity": capacity, "allocatable": dict(capacity),
            "conditions": self._last_conditions,
            "addresses": [{"type": "InternalIP", "address": cfg.address},
                          {"type": "Hostname", "address": cfg.name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": cfg.port}},
            "nodeInfo": {"machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": cfg.kernel_version,
                         "osImage": cfg.os_image, "containerRuntimeVersion": cfg.runtime_version,
                         "kubeletVersion": KUBELET_VERSION, "kubeProxyVersion": "",
                         "operatingSystem": "linux", "architecture": cfg.architecture or _go_arch()},
        }

    def node_object(self) -> Object:
        spec: Object = {}
        if self.config.taints:
            spec["taints"] = self.config.taints
        return {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": self.config.name, "labels": self.labels(),
                             "annotations": {"node.alpha.kubernetes.io/ttl": "0",
                                             "volumes.kubernetes.io/controller-managed-attach-detach": "true"}},
                "spec": spec, "status": self.status()}

    # ------------------------------------------------------- registration

    async def register(self) -> Object:
        """Create the Node (or, with register=false, wait for one made by hand) and post its status."""
        backoff = 0.2
        while True:
            try:
                node = await self._register_once()
                self.uid = node["metadata"].get("uid", "")
                self.registered.set()
                return node
            except (errors.APIError, errors.ConnectionFailed) as error:
                log.info("node %s: registration failed (%s); retrying", self.config.name, error)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 7.0)

    async def _register_once(self) -> Object:
        if self.config.register:
            try:
                created = await self.client.create(NODES, self.node_object())
                if not created.get("status", {}).get("conditions"):
                    created = await self._post_status()
                return created
            except errors.AlreadyExistsError:
                existing = await self.client.get(NODES, self.config.name)
                # kubelet's reconcile on re-registration: keep labels it owns up to date
                labels = {k: v for k, v in self.labels().items()
                          if (existing["metadata"].get("labels") or {}).get(k) != v}
                if labels:
                    await self.client.patch(NODES, self.config.name, {"metadata": {"labels": labels}})
                return await self._post_status()
        # --register-node=false: the node is registered by hand; adopt it and only patch status
        while True:
            try:
                await self.client.get(NODES, self.config.name)
                return await self._post_status()
            except errors.NotFoundError:
                log.info("node %s: waiting for the Node object to be created", self.config.name)
                await asyncio.sleep(1.0)

    async def _post_status(self) -> Object:
        status = self.status()
        patched = await self.client.patch(NODES, self.config.name, {"status": status}, subresource="status",
                                          patch_type="merge")
        self._last_reported = _comparable(status)
        self._last_report_time = asyncio.get_running_loop().time()
        return patched

    # ---------------------------------------------------------- heartbeats

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._lease_loop(), name=f"lease-{self.config.name}"),
                       asyncio.create_task(self._status_loop(), name=f"nodestatus-{self.config.name}")]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []

    def mark_changed(self) -> None:
        """Something the status reports changed (e.g. runtime health): post it without waiting."""
        self._changed.set()

    def lease_object(self, now: datetime | None = None) -> Object:
        moment = meta.format_time_micro(now)
        owner = [{"apiVersion": "v1", "kind": "Node", "name": self.config.name, "uid": self.uid}] if self.uid else []
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.config.name, "namespace": LEASE_NAMESPACE,
                             **({"ownerReferences": owner} if owner else {})},
                "spec": {"holderIdentity": self.config.name, "leaseDurationSeconds": self.config.lease_duration,
                         "renewTime": moment}}

    async def renew_lease(self) -> None:
        """PUT the Lease last written, as the kubelet's lease controller updates its ``latestLease``;
        GET it first only when there is none or the server has another (a conflict, or gone). A
        renewal that failed otherwise (timed out, refused with 429, a 5xx) keeps the Lease for the next
        try, as the controller's ``retryUpdateLease`` does: under load a GET before each retry would
        double the heartbeat's requests exactly when the server can least take them."""
        if self._lease is not None:
            try:
                self._lease = await self.client.update(LEASES, self._renewed(self._lease))
                return
            except (errors.ConflictError, errors.NotFoundError):
                self._lease = None
        try:
            lease = await self.client.get(LEASES, self.config.name, LEASE_NAMESPACE)
        except errors.NotFoundError:
            try:
                await self.client.create(LEASES, self.lease_object(), LEASE_NAMESPACE)
            except errors.NotFoundError:  # the namespace itself is missing on a fresh cluster
                with contextlib.suppress(errors.AlreadyExistsError):
                    await self.client.create(resource("", "v1", "namespaces"), {
                        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": LEASE_NAMESPACE}})
                await self.client.create(LEASES, self.lease_object(), LEASE_NAMESPACE)
            return
        self._lease = await self.client.update(LEASES, self._renewed(lease))

    def _renewed(self, lease: Object) -> Object:
        fresh = self.lease_object()
        lease["spec"] = {**(lease.get("spec") or {}), **fresh["spec"]}
        if "ownerReferences" in fresh["metadata"] and not lease["metadata"].get("ownerReferences"):
            lease["metadata"]["ownerReferences"] = fresh["metadata"]["ownerReferences"]
        return lease

    async def _lease_loop(self) -> None:
        interval = max(1.0, self.config.lease_duration / 4)
        first = True
        while True:
            try:
                await self.renew_lease()
            except (errors.APIError, errors.ConnectionFailed) as error:
                log.warning("node %s: lease renewal failed: %s", self.config.name, error)
                await asyncio.sleep(min(interval, 1.0))  # the kubelet retries quickly, 200ms..7s
                continue
            if first and self.config.jitter:
                # created at once; later renewals spread so that many nodes do not renew in lockstep
                await asyncio.sleep(random.uniform(0, self.config.jitter))
            first = False
            await asyncio.sleep(interval)

    async def _overwritten(self) -> bool:
        """Whether the Node's Ready condition on the server is not ours: the node lifecycle controller
        set it Unknown while our heartbeats were late. The kubelet reads its Node at every status
        update and compares the server's status with its own (``tryUpdateNodeStatus``), so it puts
        Ready back within one update period, not at the next 5-minute report. It reads it from its
        Node informer's lister, not with a GET ("GET and PUT operations on Node objects coming from
        here are the majority of load on apiserver"; a GET only on a retry): at 5,000 nodes a GET
        every 10 s is 500 requests a second of heartbeat on top of the Leases'."""
        node = self.node_lister() if self.node_lister is not None else None
        if node is None:
            try:
                node = await self.client.get(NODES, self.config.name)
            except errors.NotFoundError:
                return True  # the post that follows finds it gone and registers again
        return _ready_status(node.get("status") or {}) != _ready_status(self._last_reported or {})

    async def _status_loop(self) -> None:
        loop = asyncio.get_running_loop()
        if self.config.jitter:
            await asyncio.sleep(random.uniform(0, self.config.jitter))
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), self.config.status_update_frequency)
            self._changed.clear()
            status = self.status()
            due = loop.time() - self._last_report_time >= self.config.status_report_frequency
            try:
                changed = due or _comparable(status) != self._last_reported or await self._overwritten()
            except (errors.APIError, errors.ConnectionFailed) as error:
                log.warning("node %s: cannot read the Node: %s", self.config.name, error)
                continue
            if changed:
                try:
                    await self._post_status()
                except errors.NotFoundError:
                    # the Node was deleted under us: register again, as the kubelet does
                    if self.config.register:
                        await self.register()
                except (errors.APIError, errors.ConnectionFailed) as error:
                    log.warning("node %s: status update failed: %s", self.config.name, error)


def _ready_status(status: Object) -> str:
    return next((str(c.get("status")) for c in status.get("conditions") or [] if c.get("type") == "Ready"), "")


def _comparable(status: Object) -> Object:
    """The status without heartbeat times: what decides whether it changed."""
    copy = dict(status)
    copy["conditions"] = [{k: v for k, v in c.items() if k != "lastHeartbeatTime"}
                          for c in status.get("conditions") or []]
    return copy
