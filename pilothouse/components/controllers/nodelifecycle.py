"""The node lifecycle controller: notice silent nodes, taint sick ones, evict what cannot stay.

As ``pkg/controller/nodelifecycle`` plus the taint eviction controller of Kubernetes 1.32:

* monitoring (every ``node_monitor_period``, 5 s): a node whose kubelet stops renewing its Lease
  (``kube-node-lease``) and its Ready heartbeat for ``node_monitor_grace_period`` (40 s) gets every
  condition set to ``Unknown`` (reason ``NodeStatusUnknown``, "Kubelet stopped posting node
  status."), and its pods are marked not Ready. Heartbeats are timed on this controller's clock when
  it observes them change (the first time from the node's creation), so clock skew does not matter;
* taints follow the conditions: ``node.kubernetes.io/unreachable`` (Ready Unknown) or ``not-ready``
  (Ready False) with effect NoExecute, the NoSchedule taints of ``TaintNodesByCondition`` (pressure
  conditions, network-unavailable, not-ready/unreachable) and ``unschedulable`` for
  ``spec.unschedulable``; they go when the condition clears;
* eviction: a pod on a node with NoExecute taints it does not tolerate is deleted at once; one whose
  tolerations have ``tolerationSeconds`` is deleted when the shortest one elapses (counted from the
  taint's ``timeAdded``); the pod first gets a ``DisruptionTarget`` condition, as Kubernetes does.
  Its owner (a ReplicaSet...) then recreates it elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
from datetime import datetime

from pilothouse.client import errors
from pilothouse.client.informer import EventHandler
from pilothouse.client.rest import resource
from pilothouse.components.controllers.base import Controller, ControllerContext
from pilothouse.components.controllers.nodematch import find_untolerated_taint, toleration_tolerates_taint
from pilothouse.components.controllers.podcontrol import PODS
from pilothouse.machinery import meta
from pilothouse.machinery.meta import Object

__all__ = ["NodeLifecycleController", "condition_taints", "eviction_delay"]


NODES = resource("", "v1", "nodes")
LEASES = resource("coordination.k8s.io", "v1", "leases")
LEASE_NAMESPACE = "kube-node-lease"

UNREACHABLE = "node.kubernetes.io/unreachable"
NOT_READY = "node.kubernetes.io/not-ready"
UNSCHEDULABLE = "node.kubernetes.io/unschedulable"
_CONDITION_TAINTS = {  # condition type, bad status -> NoSchedule taint key (TaintNodesByCondition)
    ("MemoryPressure", "True"): "node.kubernetes.io/memory-pressure",
    ("DiskPressure", "True"): "node.kubernetes.io/disk-pressure",
    ("PIDPressure", "True"): "node.kubernetes.io/pid-pressure",
    ("NetworkUnavailable", "True"): "node.kubernetes.io/network-unavailable",
    ("Ready", "False"): NOT_READY,
    ("Ready", "Unknown"): UNREACHABLE,
}
_MANAGED_KEYS = {*_CONDITION_TAINTS.values(), UNSCHEDULABLE}


def _ready(node: Object) -> Object | None:
    for condition in (node.get("status") or {}).get("conditions") or ():
        if condition.get("type") == "Ready":
            return dict(condition)
    return None


def condition_taints(node: Object) -> list[Object]:
    """The taints this controller wants on ``node`` (key and effect), from its conditions and spec."""
    wanted: list[Object] = []
    for condition in (node.get("status") or {}).get("conditions") or ():
        key = _CONDITION_TAINTS.get((condition.get("type"), condition.get("status")))
        if key is not None:
            wanted.append({"key": key, "effect": "NoSchedule"})
    ready = _ready(node)
    if ready is not None and ready.get("status") == "False":
        wanted.append({"key": NOT_READY, "effect": "NoExecute"})
    elif ready is not None and ready.get("status") == "Unknown":
        wanted.append({"key": UNREACHABLE, "effect": "NoExecute"})
    if (node.get("spec") or {}).get("unschedulable"):
        wanted.append({"key": UNSCHEDULABLE, "effect": "NoSchedule"})
    return wanted


def eviction_delay(pod: Object, taints: list[Object], now: datetime) -> float | None:
    """Seconds until ``pod`` must go because of the NoExecute ``taints``: 0 for an untolerated taint,
    None when it may stay for ever (``processPodOnNode`` / ``getMinTolerationTime``)."""
    no_execute = [t for t in taints if t.get("effect") == "NoExecute"]
    if not no_execute:
        return None
    tolerations = (pod.get("spec") or {}).get("tolerations") or []
    if find_untolerated_taint(no_execute, tolerations) is not None:
        return 0.0
    delay: float | None = None
    for taint in no_execute:
        added = meta.parse_time(taint.get("timeAdded")) or now
        for toleration in tolerations:
            if not toleration_tolerates_taint(toleration, taint):
                continue
            seconds = toleration.get("tolerationSeconds")
            if seconds is None:
                continue
            left = float(max(int(seconds), 0)) - (now - added).total_seconds()
            delay = left if delay is None else min(delay, left)
    return None if delay is None else max(delay, 0.0)


class NodeLifecycleController(Controller):
    name = "nodelifecycle"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        options = ctx.options
        self.grace = float(options.get("node_monitor_grace_period", 40.0))
        self.period = float(options.get("node_monitor_period", 5.0))
        self.nodes = ctx.informers.informer(NODES)
        self.leases = ctx.informers.informer(LEASES, namespace=LEASE_NAMESPACE)
        self.pods = ctx.informers.informer(PODS)
        self.pods.add_indexer("node", lambda p: [n] if (n := (p.get("spec") or {}).get("nodeName")) else [])
        # node name -> (heartbeat signature, when we saw it change), on the wall clock
        self._probes: dict[str, tuple[tuple[str, str], datetime]] = {}
        self.nodes.add_handler(EventHandler.on_object(self.enqueue, self._node_deleted))
        self.leases.add_handler(EventHandler.on_object(self._lease_changed))
        self.pods.add_handler(EventHandler.on_object(self._pod_changed))
        self._monitor: asyncio.Task[None] | None = None

    def _node_deleted(self, node: Object) -> None:
        if self._probes.pop(node["metadata"]["name"], None) is not None:
            self._node_event(node, "RemovingNode", "Removing Node {} from Controller")

    def _node_event(self, node: Object, reason: str, event: str) -> None:
        """``recordNodeEvent``: "Node <name> event: <what>" (NodeLifecycleController's words)."""
        name = node["metadata"]["name"]
        ref = {"apiVersion": "v1", "kind": "Node", "name": name, "uid": node["metadata"].get("uid", "")}
        self.recorder.event(ref, "Normal", reason, f"Node {name} event: {event.format(name)}")

    def _lease_changed(self, lease: Object) -> None:
        self.enqueue_key(lease["metadata"]["name"])

    def _pod_changed(self, pod: Object) -> None:
        node = (pod.get("spec") or {}).get("nodeName")
        if node:
            self.enqueue_key(node)

    async def run(self) -> None:
        self._monitor = asyncio.create_task(self._monitor_loop())
        try:
            await super().run()
        finally:
            self._monitor.cancel()

    async def stop(self) -> None:
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._monitor
        await super().stop()

    async def _monitor_loop(self) -> None:
        while True:
            await asyncio.sleep(self.period)
            for node in self.nodes.list():
                self.enqueue(node)

    def _last_probe(self, node: Object, now: datetime) -> datetime:
        name = node["metadata"]["name"]
        ready = _ready(node) or {}
        lease = self.leases.get(f"{LEASE_NAMESPACE}/{name}") or {}
        signature = (str(ready.get("lastHeartbeatTime") or ""), str((lease.get("spec") or {}).get("renewTime") or ""))
        seen = self._probes.get(name)
        if seen is None:  # a node this controller has not known: upstream's "added" nodes
            self._node_event(node, "RegisteredNode", "Registered Node {} in Controller")
            # A node first seen with a Ready condition is one a restarted controller finds already
            # running: it is given a full grace period from now, as upstream's tryUpdateNodeHealth
            # does ("Creating timestamp entry for newly observed Node"). Only a node that never
            # posted a status counts from its creation. (Counting every node from its creation made
            # each restart of the controller manager mark every node older than the grace period
            # NotReady at once, and taint and evict from it; found by the chaos harness.)
            first = now if ready else (meta.parse_time(node["metadata"].get("creationTimestamp")) or now)
            self._probes[name] = (signature, first)
            return first
        if seen[0] != signature:
            self._probes[name] = (signature, now)
            return now
        return seen[1]

    async def sync(self, key: str) -> None:
        node = self.nodes.get(key)
        if node is None:
            return
        now = meta.now()
        probe = self._last_probe(node, now)
        silent = (now - probe).total_seconds()
        if silent >= self.grace:
            node = await self._mark_unknown(node, now)
        else:
            self.queue.add_after(key, self.grace - silent + 0.01)
        node = await self._reconcile_taints(node, now)
        ready = _ready(node)
        if ready is not None and ready.get("status") != "True":
            await self._mark_pods_not_ready(key)
        await self._evict(node, now)

    async def _mark_unknown(self, node: Object, now: datetime) -> Object:
        status = copy.deepcopy(node.get("status") or {})
        conditions = status.setdefault("conditions", [])
        stamp = meta.format_time(now)
        changed = False
        if not any(c.get("type") == "Ready" for c in conditions):
            conditions.append({"type": "Ready", "status": "Unknown", "reason": "NodeStatusNeverUpdated",
                               "message": "Kubelet never posted node status.",
                               "lastHeartbeatTime": node["metadata"].get("creationTimestamp"),
                               "lastTransitionTime": stamp})
            changed = True
        for condition in conditions:
            if condition.get("status") != "Unknown":
                condition.update({"status": "Unknown", "reason": "NodeStatusUnknown",
                                  "message": "Kubelet stopped posting node status.",
                                  "lastTransitionTime": stamp})
                changed = True
        if not changed:
            return node
        self.log.info("node %s stopped posting status; marking it Unknown", node["metadata"]["name"])
        self.recorder.event({**node, "apiVersion": "v1", "kind": "Node"}, "Normal", "NodeNotReady",
                            f"Node {node['metadata']['name']} status is now: NodeNotReady")
        return await self.client.update_status(NODES, {**node, "status": status})

    async def _reconcile_taints(self, node: Object, now: datetime) -> Object:
        current = list((node.get("spec") or {}).get("taints") or [])
        wanted = condition_taints(node)
        wanted_pairs = {(t["key"], t["effect"]) for t in wanted}
        kept = [t for t in current if t.get("key") not in _MANAGED_KEYS or (t.get("key"), t.get("effect"))
                in wanted_pairs]
        have = {(t.get("key"), t.get("effect")) for t in kept}
        added = [{**t, "timeAdded": meta.format_time(now)} for t in wanted if (t["key"], t["effect"]) not in have]
        taints = kept + added
        if taints == current:
            return node
        spec = {**(node.get("spec") or {}), "taints": taints or None}
        try:
            return await self.client.patch(NODES, node["metadata"]["name"],
                                           {"metadata": {"resourceVersion": node["metadata"]["resourceVersion"]},
                                            "spec": {"taints": spec["taints"]}})
        except errors.NotFoundError:
            return node

    async def _mark_pods_not_ready(self, node_name: str) -> None:
        """``MarkPodsNotReady``: the kubelet cannot say, so nobody should trust the pods' readiness."""
        for pod in self.pods.by_index("node", node_name):
            conditions = (pod.get("status") or {}).get("conditions") or []
            if not any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
                continue
            status = copy.deepcopy(pod["status"])
            for condition in status["conditions"]:
                if condition.get("type") == "Ready":
                    condition.update({"status": "False", "lastTransitionTime": meta.format_time()})
            try:
                await self.client.update_status(PODS, {**pod, "status": status})
            except (errors.NotFoundError, errors.ConflictError):
                continue
            # after the update, so the pod still exists (upstream's order and words)
            self.recorder.event({**pod, "apiVersion": "v1", "kind": "Pod"}, "Warning", "NodeNotReady",
                                "Node is not ready")

    async def _evict(self, node: Object, now: datetime) -> None:
        taints = (node.get("spec") or {}).get("taints") or []
        if not any(t.get("effect") == "NoExecute" for t in taints):
            return
        for pod in self.pods.by_index("node", node["metadata"]["name"]):
            if pod["metadata"].get("deletionTimestamp"):
                continue
            delay = eviction_delay(pod, taints, now)
            if delay is None:
                continue
            if delay > 0:
                self.queue.add_after(node["metadata"]["name"], delay + 0.01)
                continue
            await self._delete_pod(pod)

    async def _delete_pod(self, pod: Object) -> None:
        metadata = pod["metadata"]
        status = copy.deepcopy(pod.get("status") or {})
        conditions = [c for c in status.get("conditions") or () if c.get("type") != "DisruptionTarget"]
        conditions.append({"type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager",
                           "message": "Taint manager: deleting due to NoExecute taint",
                           "lastTransitionTime": meta.format_time()})
        status["conditions"] = conditions
        with contextlib.suppress(errors.APIError):
            await self.client.update_status(PODS, {**pod, "status": status})
        self.recorder.event({**pod, "apiVersion": "v1", "kind": "Pod"}, "Normal", "TaintManagerEviction",
                            f"Marking for deletion Pod {metadata['namespace']}/{metadata['name']}")
        try:
            await self.client.delete(PODS, metadata["name"], metadata["namespace"],
                                     preconditions={"uid": metadata["uid"]})
        except errors.NotFoundError:
            pass
