"""The scheduler process: informers in, a scheduling loop, asynchronous binds out.

Watches all pods (bound pods feed the cache: resources, ports, affinity) and all nodes through
shared informers; pending pods whose ``spec.schedulerName`` is ours enter the :class:`SchedulingQueue`.
One loop pops a pod, runs the framework synchronously against the cache, *assumes* the pod on the
chosen node and starts its bind (``POST pods/NAME/binding``) as a task, so many binds are in flight
while the next pods are scheduled. A failed bind forgets the assumption and requeues the pod with
backoff. Pods that fit nowhere get a ``PodScheduled=False`` condition and a ``FailedScheduling``
event, and wait in the unschedulable queue until a cluster event that could help arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from typing import Any

from pilothouse.client import errors
from pilothouse.client.events import SeriesRecorder
from pilothouse.client.informer import EventHandler, Informer, InformerFactory, trim_for_cache
from pilothouse.client.kubeconfig import ClientConfig
from pilothouse.client.rest import APIClient, resource
from pilothouse.components.scheduler.cache import Cache
from pilothouse.components.scheduler.framework import ActionType, ClusterEvent, EventResource
from pilothouse.components.scheduler.metrics import (
    SCHEDULE_ERROR,
    SCHEDULED,
    UNSCHEDULABLE,
    AttemptRecorder,
    watch_pending_pods,
)
from pilothouse.components.scheduler.nodeinfo import PodInfo
from pilothouse.components.scheduler.plugins.defaultpreemption import PREEMPTION_BY_SCHEDULER
from pilothouse.components.scheduler.queue import QueuedPodInfo, SchedulingQueue
from pilothouse.components.scheduler.runtime import Framework, ScheduleResult
from pilothouse.machinery import meta
from pilothouse.machinery.meta import Object

__all__ = ["DEFAULT_SCHEDULER_NAME", "Scheduler", "node_update_actions", "pod_spec_changed", "run_scheduler"]

log = logging.getLogger("pilothouse.scheduler")

DEFAULT_SCHEDULER_NAME = "default-scheduler"
_PODS = resource("", "v1", "pods")
_NODES = resource("", "v1", "nodes")
_NAMESPACES = resource("", "v1", "namespaces")
_BUDGETS = resource("policy", "v1", "poddisruptionbudgets")
_TERMINAL = ("Succeeded", "Failed")
#: newPodInformer's field selector (pkg/scheduler/scheduler.go): terminal pods hold no resources, so
#: the scheduler neither caches them nor hears of them again; a pod that ends arrives as DELETED
_NOT_TERMINAL = ",".join(f"status.phase!={phase}" for phase in _TERMINAL)
_ACTIONS = {"Scheduled": "Binding", "Preempted": "Preempting"}
_NOMINATED = "nominatedNodeName"



def _conditions_key(obj: Object) -> list[tuple[str, str]]:
    return sorted((c.get("type", ""), c.get("status", "")) for c in (obj.get("status") or {}).get("conditions") or ())


def node_update_actions(old: Object, new: Object) -> ActionType:
    """Which kinds of node change this update is (kube-scheduler's ``NodeSchedulingPropertiesChange``)."""
    action = ActionType(0)
    old_status, new_status = old.get("status") or {}, new.get("status") or {}
    if old_status.get("allocatable") != new_status.get("allocatable"):
        action |= ActionType.UPDATE_NODE_ALLOCATABLE
    if (old.get("metadata") or {}).get("labels") != (new.get("metadata") or {}).get("labels"):
        action |= ActionType.UPDATE_NODE_LABEL
    old_spec, new_spec = old.get("spec") or {}, new.get("spec") or {}
    if (old_spec.get("taints") != new_spec.get("taints")
            or bool(old_spec.get("unschedulable")) != bool(new_spec.get("unschedulable"))):
        action |= ActionType.UPDATE_NODE_TAINT
    if _conditions_key(old) != _conditions_key(new):
        action |= ActionType.UPDATE_NODE_CONDITION
    if (old.get("metadata") or {}).get("annotations") != (new.get("metadata") or {}).get("annotations"):
        action |= ActionType.UPDATE_NODE_ANNOTATION
    if old_status.get("images") != new_status.get("images"):
        action |= ActionType.UPDATE_NODE_ALLOCATABLE  # image locality: treat as a capacity-ish change
    return action


def pod_update_actions(old: PodInfo, new: PodInfo) -> ActionType:
    action = ActionType(0)
    if old.labels != new.labels:
        action |= ActionType.UPDATE_POD_LABEL
    if new.cpu < old.cpu or new.mem < old.mem or new.eph < old.eph:
        action |= ActionType.UPDATE_POD_SCALE_DOWN
    return action or ActionType.UPDATE_POD_OTHER


def pod_spec_changed(old: Object, new: Object) -> bool:
    """kube-scheduler's ``isPodUpdated``: anything but status and bookkeeping metadata changed."""
    def strip(pod: Object) -> Object:
        metadata = {k: v for k, v in (pod.get("metadata") or {}).items()
                    if k not in ("resourceVersion", "generation", "managedFields", "finalizers")}
        return {**{k: v for k, v in pod.items() if k != "status"}, "metadata": metadata}
    return strip(old) != strip(new)


class Scheduler:
    """kube-scheduler's default profile, over the HTTP API."""

    def __init__(self, client: APIClient | ClientConfig | str, *, scheduler_name: str = DEFAULT_SCHEDULER_NAME,
                 informers: InformerFactory | None = None, percentage_of_nodes_to_score: int = 0,
                 bind_concurrency: int = 512, record_scheduled_events: bool = True,
                 plugin_args: Mapping[str, Mapping[str, Any]] | None = None,
                 unschedulable_flush_interval: float = 30.0, max_queued_events: int = 1000,
                 seed: int | None = None) -> None:
        self._owns_client = not isinstance(client, APIClient)
        self.client = client if isinstance(client, APIClient) else APIClient(client, user_agent="pilothouse-scheduler")
        self.scheduler_name = scheduler_name
        self.informers = informers or InformerFactory(self.client)
        self.cache = Cache()
        self.queue = SchedulingQueue()
        self.framework = Framework(self.cache, plugin_args=plugin_args,
                                   percentage_of_nodes_to_score=percentage_of_nodes_to_score, seed=seed)
        self.queue.plugin_events = self.framework.events_by_plugin()
        # kube-scheduler records through events.k8s.io/v1 (repeats become a series), named by profile
        self.recorder = SeriesRecorder(self.client, scheduler_name)
        # Like client-go's event broadcaster: a bounded buffer written by one worker, so events
        # (best effort) trail behind binds under load instead of competing with them.
        self._events: asyncio.Queue[tuple[Object, str, str, str, Object | None]] = asyncio.Queue(
            maxsize=max_queued_events)
        self.record_scheduled_events = record_scheduled_events
        self.unschedulable_flush_interval = unschedulable_flush_interval
        self._bind_slots = asyncio.Semaphore(bind_concurrency)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loops: list[asyncio.Task[Any]] = []
        self._pods: Informer | None = None
        self.scheduled = 0
        self.failed_attempts = 0
        #: Cumulative seconds, for diagnosis (like kube-scheduler's metrics): time in scheduling
        #: cycles, pods waiting in the queue before their successful attempt, binds in flight.
        self.stats = {"cycles": 0.0, "cycle_seconds": 0.0, "queue_wait_seconds": 0.0, "bind_seconds": 0.0}
        self.attempts = AttemptRecorder(scheduler_name)  # the profile label is the scheduler's name
        watch_pending_pods(self.queue.counts)

    # ------------------------------------------------------------ running

    async def start(self, sync_timeout: float | None = 60.0) -> None:
        nodes = self.informers.informer(_NODES)
        # newPodInformer (pkg/scheduler/scheduler.go) watches only pods that are not terminal and drops
        # their managedFields, kube-scheduler's other informers keep them; sharing equal strings is
        # pilothouse's own (see share_strings)
        pods = self.informers.informer(_PODS, field_selector=_NOT_TERMINAL, transform=trim_for_cache)
        namespaces = self.informers.informer(_NAMESPACES)
        budgets = self.informers.informer(_BUDGETS)
        budgets.add_handler(EventHandler.on_object(self.cache.set_disruption_budget,
                                                   lambda o: self.cache.set_disruption_budget(o, deleted=True)))
        self._pods = pods
        # pending pods by the node they are nominated to, for preemption to take back lower ones' nominations
        pods.add_indexer(_NOMINATED, lambda pod: [n] if (n := (pod.get("status") or {}).get("nominatedNodeName"))
                         and not (pod.get("spec") or {}).get("nodeName") else [])
        namespaces.add_handler(EventHandler.on_object(self._on_namespace,
                                                      lambda o: self._on_namespace(o, deleted=True)))
        nodes.add_handler(EventHandler(self._on_node_add, self._on_node_update, self._on_node_delete))
        pods.add_handler(EventHandler(self._on_pod_add, self._on_pod_update, self._on_pod_delete))
        self.informers.start()
        await asyncio.gather(nodes.wait_synced(sync_timeout), pods.wait_synced(sync_timeout),
                             namespaces.wait_synced(sync_timeout), budgets.wait_synced(sync_timeout))
        self._loops = [asyncio.create_task(self._schedule_loop(), name="scheduler-loop"),
                       asyncio.create_task(self._flush_loop(), name="scheduler-flush"),
                       asyncio.create_task(self._event_loop(), name="scheduler-events")]
        log.info("scheduler %s started: %d nodes, %d pods", self.scheduler_name,
                 len(self.cache.node_infos()), self.cache.pod_count())

    async def stop(self) -> None:
        self.queue.close()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.flush_events(), 5.0)
        for task in self._loops:
            task.cancel()
        for task in self._loops:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._loops = []
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        await self.recorder.flush()
        await self.recorder.close()
        await self.informers.stop()
        if self._owns_client:
            await self.client.close()

    async def _flush_loop(self) -> None:
        """Backoff expiry (as kube-scheduler's 1 s flush, but woken at the earliest expiry) + the 5-minute flush."""
        last_leftover = time.monotonic()
        while True:
            self.queue.flush_backoff()
            now = time.monotonic()
            if now - last_leftover >= self.unschedulable_flush_interval:
                self.queue.flush_unschedulable_leftover()
                last_leftover = now
            expiry = self.queue.next_backoff_expiry()
            delay = 1.0 if expiry is None else min(max(expiry - now, 0.01), 1.0)
            await asyncio.sleep(delay)

    def _event(self, pod: PodInfo, event_type: str, reason: str, message: str, related: PodInfo | None = None) -> None:
        about = None if related is None else {**related.pod, "kind": "Pod", "apiVersion": "v1"}
        try:
            self._events.put_nowait(({**pod.pod, "kind": "Pod", "apiVersion": "v1"}, event_type, reason, message,
                                     about))
        except asyncio.QueueFull:
            log.debug("event buffer full; dropping %s for %s", reason, pod.key)

    async def _event_loop(self) -> None:
        while True:
            obj, event_type, reason, message, related = await self._events.get()
            # upstream's actions: "Binding" for Scheduled, "Preempting" for Preempted, "Scheduling" for
            # FailedScheduling; a Preempted event names the preemptor as its related object
            self.recorder.event(obj, event_type, reason, message, action=_ACTIONS.get(reason, "Scheduling"),
                                related=related)
            # No flush per event: that wrote one event at a time and dropped the rest once this buffer
            # filled. The recorder writes concurrently, as client-go's events broadcaster does, and
            # drops only when its own 1,000 fill (DropIfChannelFull).
            await asyncio.sleep(0)

    async def flush_events(self) -> None:
        """Wait until every queued event is written (tests, shutdown)."""
        while not self._events.empty():
            await asyncio.sleep(0.01)
        await self.recorder.flush()

    async def _schedule_loop(self) -> None:
        while True:
            info = await self.queue.pop()
            if info is None:
                return
            started = time.monotonic()
            try:
                self.schedule_one(info)
            except Exception:  # a bug for one pod must not stop scheduling
                log.exception("scheduling %s failed", info.pod.key)
                self.attempts.record(SCHEDULE_ERROR, started)
                self.queue.add_unschedulable(info)
            self.stats["cycles"] += 1
            self.stats["cycle_seconds"] += time.monotonic() - started
            # Let watch events and bind responses in between pods.
            await asyncio.sleep(0)

    # ------------------------------------------------------------- a cycle

    def schedule_one(self, info: QueuedPodInfo) -> ScheduleResult | None:
        pod = info.pod
        started = time.monotonic()
        current = self._pods.get(pod.key) if self._pods is not None else None
        if (current is None or (current.get("spec") or {}).get("nodeName")
                or (current.get("metadata") or {}).get("deletionTimestamp") or self.cache.is_assumed(pod.key)):
            self.queue.done(pod.key)
            return None
        result = self.framework.schedule(pod)
        if result.node is None:
            self._unschedulable(info, result)
            self.attempts.record(UNSCHEDULABLE, started)
            return result
        self.cache.assume(pod, result.node)
        self._spawn(self._bind(info, result.node, started))
        return result

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _bind(self, info: QueuedPodInfo, node: str, attempt_started: float) -> None:
        pod = info.pod
        binding = {"apiVersion": "v1", "kind": "Binding",
                   "metadata": {"name": pod.name, "namespace": pod.namespace, "uid": pod.uid},
                   "target": {"apiVersion": "v1", "kind": "Node", "name": node}}
        started = time.monotonic()
        self.stats["queue_wait_seconds"] += started - info.timestamp
        try:
            async with self._bind_slots:
                await self.client.create(_PODS, binding, pod.namespace, subresource="binding", name=pod.name)
        except (errors.APIError, errors.ConnectionFailed) as error:
            self.cache.forget(pod.key)
            self.attempts.record(SCHEDULE_ERROR, attempt_started)
            if isinstance(error, errors.NotFoundError):
                self.queue.delete(pod.key)
                return
            log.info("binding %s to %s failed: %s", pod.key, node, error)
            self.queue.add_unschedulable(info)  # no plugin to blame: goes to backoff
            self._event(pod, "Warning", "FailedScheduling", f"Binding rejected: {error}")
            return
        self.queue.done(pod.key)
        self.scheduled += 1
        self.attempts.record(SCHEDULED, attempt_started)
        self.stats["bind_seconds"] += time.monotonic() - started
        if self.record_scheduled_events:
            self._event(pod, "Normal", "Scheduled", f"Successfully assigned {pod.namespace}/{pod.name} to {node}")

    def _unschedulable(self, info: QueuedPodInfo, result: ScheduleResult) -> None:
        pod = info.pod
        self.failed_attempts += 1
        plugins = result.diagnosis.unschedulable_plugins if result.diagnosis else set()
        self.queue.add_unschedulable(info, plugins)
        message = result.message
        log.debug("unable to schedule %s: %s", pod.key, message)
        self._event(pod, "Warning", "FailedScheduling", message)
        status: Object = {}
        nominated = result.nominated_node
        if nominated is not None and nominated != ((pod.pod.get("status") or {}).get("nominatedNodeName") or ""):
            status["nominatedNodeName"] = nominated or None  # null removes it
        conditions = list((pod.pod.get("status") or {}).get("conditions") or ())
        if not any(c.get("type") == "PodScheduled" and c.get("status") == "False"
                   and c.get("reason") == "Unschedulable" and c.get("message") == message for c in conditions):
            new = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message,
                   "lastProbeTime": None, "lastTransitionTime": meta.format_time()}
            for condition in conditions:
                if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
                    new["lastTransitionTime"] = condition.get("lastTransitionTime") or new["lastTransitionTime"]
            status["conditions"] = [c for c in conditions if c.get("type") != "PodScheduled"] + [new]
        if status:
            self._spawn(self._patch_status(pod, {"status": status}))
        if result.nominated_node and result.victims:
            for victim in result.victims:
                self._spawn(self._preempt(pod, result.nominated_node, victim))
            # Lower-priority pods nominated to that node may no longer fit there: their nominations
            # are cleared (upstream's getLowerPriorityNominatedPods + ClearNominatedNodeName).
            for other in self._pods.by_index(_NOMINATED, result.nominated_node) if self._pods else ():
                if int((other.get("spec") or {}).get("priority") or 0) < pod.priority:
                    self._spawn(self._patch_status(PodInfo(other), {"status": {"nominatedNodeName": None}}))

    async def _preempt(self, preemptor: PodInfo, node: str, victim: PodInfo) -> None:
        """``prepareCandidate`` for one victim: DisruptionTarget condition, delete, ``Preempted`` event."""
        condition = {"type": "DisruptionTarget", "status": "True", "reason": PREEMPTION_BY_SCHEDULER,
                     "message": f"{preemptor.scheduler_name}: preempting to accommodate a higher priority pod",
                     "lastTransitionTime": meta.format_time()}
        try:
            await self.client.patch(_PODS, victim.name, {"status": {"conditions": [condition]}}, victim.namespace,
                                    patch_type="strategic", subresource="status")
            await self.client.delete(_PODS, victim.name, victim.namespace, preconditions={"uid": victim.uid})
        except errors.NotFoundError:
            pass  # already gone: the room is made all the same
        except (errors.APIError, errors.ConnectionFailed) as error:
            log.info("preempting %s for %s failed: %s", victim.key, preemptor.key, error)
            return
        self._event(victim, "Normal", "Preempted", f"Preempted by pod {preemptor.uid} on node {node}",
                    related=preemptor)

    async def _patch_status(self, pod: PodInfo, patch: Object) -> None:
        try:
            await self.client.patch(_PODS, pod.name, patch, pod.namespace, subresource="status")
        except (errors.APIError, errors.ConnectionFailed) as error:
            log.debug("could not update the status of %s: %s", pod.key, error)

    # ------------------------------------------------------------- events

    def _responsible(self, pod: Object) -> bool:
        spec = pod.get("spec") or {}
        return ((spec.get("schedulerName") or DEFAULT_SCHEDULER_NAME) == self.scheduler_name
                and not spec.get("nodeName")
                and not (pod.get("metadata") or {}).get("deletionTimestamp")
                and (pod.get("status") or {}).get("phase") not in _TERMINAL)

    @staticmethod
    def _counts(pod: Object) -> bool:
        """A bound pod that still holds resources (terminal pods free them)."""
        return bool((pod.get("spec") or {}).get("nodeName")) and (pod.get("status") or {}).get("phase") not in _TERMINAL

    def _move(self, resource_kind: EventResource, action: ActionType) -> None:
        self.queue.move_on_event(ClusterEvent(resource_kind, action))

    def _on_pod_add(self, pod: Object) -> None:
        if self._counts(pod):
            self.cache.add_pod(PodInfo(pod))
            self._move(EventResource.ASSIGNED_POD, ActionType.ADD)
        elif self._responsible(pod):
            self.queue.add(PodInfo(pod))

    def _on_pod_update(self, old: Object, new: Object) -> None:
        old_counts, new_counts = self._counts(old), self._counts(new)
        if new_counts:
            info = PodInfo(new)
            if not old_counts:
                self.queue.delete(info.key)  # bound (by us, confirming the assumption, or by someone else)
                self.cache.add_pod(info)
                self._move(EventResource.ASSIGNED_POD, ActionType.ADD)
                return
            key = info.key
            previous = self.cache.get_pod(key)
            self.cache.update_pod(info)
            if previous is not None:
                actions = pod_update_actions(previous, info)
                if previous.node_name != info.node_name:
                    actions |= ActionType.DELETE | ActionType.ADD
                self._move(EventResource.ASSIGNED_POD, actions)
            return
        if old_counts:  # became terminal: its resources are free
            removed = self.cache.remove_pod(PodInfo(old).key)
            if removed is not None:
                self._move(EventResource.ASSIGNED_POD, ActionType.DELETE)
            return
        info = PodInfo(new)
        if self._responsible(new):
            self.queue.update(info, spec_changed=pod_spec_changed(old, new))
        else:
            self.queue.delete(info.key)

    def _on_pod_delete(self, pod: Object) -> None:
        metadata = pod.get("metadata") or {}
        key = f"{metadata.get('namespace') or 'default'}/{metadata.get('name')}"
        self.queue.delete(key)
        if self.cache.remove_pod(key) is not None:
            self._move(EventResource.ASSIGNED_POD, ActionType.DELETE)

    def _on_node_add(self, node: Object) -> None:
        self.cache.add_node(node)
        self._move(EventResource.NODE, ActionType.ADD)

    def _on_node_update(self, old: Object, new: Object) -> None:
        self.cache.update_node(new)
        actions = node_update_actions(old, new)
        if actions:
            self._move(EventResource.NODE, actions)

    def _on_node_delete(self, node: Object) -> None:
        self.cache.remove_node(node["metadata"]["name"])
        self._move(EventResource.NODE, ActionType.DELETE)

    def _on_namespace(self, namespace: Object, deleted: bool = False) -> None:
        self.cache.set_namespace(namespace, deleted)
        if not deleted:
            self._move(EventResource.NAMESPACE, ActionType.ADD)


async def run_scheduler(server_url: str | ClientConfig, **options: Any) -> None:
    """``pilothouse scheduler --server URL``: run until cancelled."""
    scheduler = Scheduler(server_url, **options)
    await scheduler.start()
    try:
        await asyncio.Event().wait()
    finally:
        await scheduler.stop()
