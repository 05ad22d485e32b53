"""The scheduling queue: priority order, backoff, event-driven moves, the periodic flush."""

from __future__ import annotations

from sched_helpers import node, pod

from pilothouse.components.scheduler.framework import ActionType, ClusterEvent, EventResource
from pilothouse.components.scheduler.nodeinfo import PodInfo
from pilothouse.components.scheduler.queue import SchedulingQueue
from pilothouse.components.scheduler.runtime import Framework
from pilothouse.components.scheduler.scheduler import node_update_actions, pod_spec_changed


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def queue_with_events(clock: Clock) -> SchedulingQueue:
    queue = SchedulingQueue(clock)
    from pilothouse.components.scheduler.cache import Cache
    queue.plugin_events = Framework(Cache()).events_by_plugin()
    return queue


async def test_priority_then_fifo() -> None:
    clock = Clock()
    queue = SchedulingQueue(clock)
    queue.add(PodInfo(pod("a")))
    clock.now += 1
    queue.add(PodInfo(pod("b", extra_spec={"priority": 10})))
    clock.now += 1
    queue.add(PodInfo(pod("c")))
    order = []
    for _ in range(3):
        info = await queue.pop()
        assert info is not None
        order.append(info.pod.name)
    assert order == ["b", "a", "c"]


async def test_unschedulable_moves_only_on_registered_events_with_backoff() -> None:
    clock = Clock()
    queue = queue_with_events(clock)
    queue.add(PodInfo(pod("p")))
    info = await queue.pop()
    assert info is not None and info.attempts == 1
    queue.add_unschedulable(info, {"NodeAffinity"})
    assert queue.where("default/p") == "unschedulable"
    # A pod deletion cannot help a node-affinity failure.
    assert queue.move_on_event(ClusterEvent(EventResource.ASSIGNED_POD, ActionType.DELETE)) == 0
    # A node label change can; the 1 s backoff of the first attempt is still running.
    assert queue.move_on_event(ClusterEvent(EventResource.NODE, ActionType.UPDATE_NODE_LABEL)) == 1
    assert queue.where("default/p") == "backoff"
    clock.now += 1.01
    queue.flush_backoff()
    assert queue.where("default/p") == "active"
    info = await queue.pop()
    assert info is not None and info.attempts == 2
    queue.add_unschedulable(info, {"NodeResourcesFit"})
    assert info.backoff_expiry() - info.timestamp == 2.0  # 1 s doubling
    info.attempts = 10
    assert info.backoff_expiry() - info.timestamp == 10.0  # capped


async def test_event_during_cycle_sends_pod_to_backoff_and_flush_after_five_minutes() -> None:
    clock = Clock()
    queue = queue_with_events(clock)
    queue.add(PodInfo(pod("p")))
    info = await queue.pop()
    assert info is not None
    queue.move_on_event(ClusterEvent(EventResource.NODE, ActionType.ADD))  # while p is in flight
    queue.add_unschedulable(info, {"TaintToleration"})
    assert queue.where("default/p") == "backoff"
    # An in-flight event that cannot help (a pod deleted, for a taint failure) changes nothing.
    queue.add(PodInfo(pod("r")))
    clock.now += 0.5
    other = await queue.pop()
    assert other is not None and other.pod.name == "r"
    queue.move_on_event(ClusterEvent(EventResource.ASSIGNED_POD, ActionType.DELETE))
    queue.add_unschedulable(other, {"TaintToleration"})
    assert queue.where("default/r") == "unschedulable"
    queue.delete("default/r")

    queue.add(PodInfo(pod("q")))
    clock.now += 5
    queue.flush_backoff()
    popped = {(await queue.pop()).pod.name for _ in range(2)}  # type: ignore[union-attr]
    assert popped == {"p", "q"}
    stuck = queue._in_flight["default/q"]
    queue.add_unschedulable(stuck, {"TaintToleration"})
    assert queue.flush_unschedulable_leftover() == 0
    clock.now += 301
    assert queue.flush_unschedulable_leftover() == 1
    assert queue.where("default/q") == "active"


async def test_status_only_updates_do_not_requeue() -> None:
    clock = Clock()
    queue = queue_with_events(clock)
    raw = pod("p")
    queue.add(PodInfo(raw))
    info = await queue.pop()
    assert info is not None
    queue.add_unschedulable(info, {"NodeAffinity"})
    patched = {**raw, "status": {"conditions": [{"type": "PodScheduled", "status": "False"}]},
               "metadata": {**raw["metadata"], "resourceVersion": "9"}}
    assert not pod_spec_changed(raw, patched)
    queue.update(PodInfo(patched), spec_changed=False)
    assert queue.where("default/p") == "unschedulable"
    relabelled = {**raw, "metadata": {**raw["metadata"], "labels": {"x": "y"}}}
    assert pod_spec_changed(raw, relabelled)
    queue.update(PodInfo(relabelled))
    assert queue.where("default/p") in ("active", "backoff")
    queue.delete("default/p")
    assert queue.where("default/p") is None and len(queue) == 0


def test_node_update_actions() -> None:
    old = node("n")
    heartbeat = node("n")
    heartbeat["status"]["conditions"][0]["lastHeartbeatTime"] = "2024-01-01T00:00:00Z"
    assert node_update_actions(old, heartbeat) == ActionType(0)
    cordoned = node("n", unschedulable=True)
    assert node_update_actions(old, cordoned) == ActionType.UPDATE_NODE_TAINT
    relabelled = node("n", labels={"a": "b"})
    assert node_update_actions(old, relabelled) == ActionType.UPDATE_NODE_LABEL
    bigger = node("n", cpu="8")
    assert node_update_actions(old, bigger) == ActionType.UPDATE_NODE_ALLOCATABLE
    assert node_update_actions(old, node("n", ready="False")) == ActionType.UPDATE_NODE_CONDITION


async def test_events_older_than_every_pod_in_flight_are_forgotten() -> None:
    """Under churn some pod is always in flight (binds overlap), so in-flight events are dropped as
    the oldest in-flight pod finishes, as upstream's inFlightEvents list is. Kept until no pod at all
    was in flight, they piled up to the 10,000 cap, and from there every rejected pod went to
    backoff (retried within 10 s) instead of waiting for an event that could help it."""
    clock = Clock()
    queue = queue_with_events(clock)
    queue.add(PodInfo(pod("p-0")))
    previous = await queue.pop()
    for i in range(1, 12_000):
        queue.add(PodInfo(pod(f"p-{i}")))
        current = await queue.pop()
        assert previous is not None and current is not None
        queue.move_on_event(ClusterEvent(EventResource.ASSIGNED_POD, ActionType.ADD))  # a pod bound
        queue.done(previous.pod.key)  # the older bind completes; the newer one is still in flight
        previous = current
    assert len(queue._in_flight_events) <= 1
    # a pod no node's labels fit, with no node event since its cycle began, waits for one
    queue.add(PodInfo(pod("picky")))
    picky = await queue.pop()
    assert picky is not None
    queue.add_unschedulable(picky, {"NodeAffinity"})
    assert queue.where("default/picky") == "unschedulable"
