"""The scheduling queue: active, backoff and unschedulable pods, as kube-scheduler's PriorityQueue.

- *active*: pods ready to be tried, highest priority first, then oldest first.
- *backoff*: pods that failed recently and wait (1 s doubling to 10 s per attempt) before retrying.
- *unschedulable*: pods no node fits. They leave only when a cluster event that one of the plugins
  which rejected them registered for happens (a node added, a pod deleted, ...), or after 5 minutes
  (the periodic flush), never by polling.

Cluster events that arrive while pods are in flight (being scheduled or bound) are remembered, so a
pod whose cycle failed just as a relevant change happened goes to backoff rather than waiting for an
event that already passed (kube-scheduler's in-flight events).
"""

from __future__ import annotations

import asyncio
import bisect
import heapq
import itertools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from pilothouse.components.scheduler.framework import ClusterEvent
from pilothouse.components.scheduler.nodeinfo import PodInfo

__all__ = ["QueuedPodInfo", "SchedulingQueue"]

INITIAL_BACKOFF = 1.0
MAX_BACKOFF = 10.0
MAX_UNSCHEDULABLE_DURATION = 300.0


@dataclass(eq=False)
class QueuedPodInfo:
    pod: PodInfo
    #: When the pod first entered the queue (for ordering and latency).
    initial_timestamp: float = field(default_factory=time.monotonic)
    #: When it was last added back (for the unschedulable flush).
    timestamp: float = field(default_factory=time.monotonic)
    attempts: int = 0
    unschedulable_plugins: set[str] = field(default_factory=set)
    #: The scheduling cycle number this pod was popped in.
    cycle: int = 0

    def backoff_expiry(self) -> float:
        if self.attempts == 0:
            return self.timestamp
        duration: float = min(INITIAL_BACKOFF * (2.0 ** (self.attempts - 1)), MAX_BACKOFF)
        return self.timestamp + duration


class SchedulingQueue:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._active: list[tuple[int, float, int, str]] = []
        self._backoff: list[tuple[float, int, str]] = []
        self._seq = itertools.count()
        #: Every queued pod by key, whichever sub-queue holds it (heap entries may be stale).
        self._infos: dict[str, QueuedPodInfo] = {}
        self._where: dict[str, str] = {}  # key -> "active" | "backoff" | "unschedulable"
        self._in_flight: dict[str, QueuedPodInfo] = {}
        self._unschedulable: dict[str, QueuedPodInfo] = {}
        self._wakeup = asyncio.Event()
        self._closed = False
        self.scheduling_cycle = 0
        #: (scheduling cycle when received, event) for events seen while pods were in flight.
        self._in_flight_events: list[tuple[int, ClusterEvent]] = []
        self.max_in_flight_events = 10000
        #: plugin name -> events that may make a pod it rejected schedulable.
        self.plugin_events: dict[str, list[ClusterEvent]] = {}

    # ------------------------------------------------------------ counts

    def __len__(self) -> int:
        return len(self._infos)

    def counts(self) -> dict[str, int]:
        out = {"active": 0, "backoff": 0, "unschedulable": 0, "in-flight": len(self._in_flight)}
        for where in self._where.values():
            out[where] += 1
        return out

    def where(self, key: str) -> str | None:
        if key in self._in_flight:
            return "in-flight"
        return self._where.get(key)

    # ------------------------------------------------------------ adding

    def _push_active(self, info: QueuedPodInfo) -> None:
        key = info.pod.key
        self._where[key] = "active"
        self._unschedulable.pop(key, None)
        heapq.heappush(self._active, (-info.pod.priority, info.initial_timestamp, next(self._seq), key))
        self._wakeup.set()

    def _push_backoff(self, info: QueuedPodInfo) -> None:
        key = info.pod.key
        self._where[key] = "backoff"
        self._unschedulable.pop(key, None)
        heapq.heappush(self._backoff, (info.backoff_expiry(), next(self._seq), key))

    def add(self, pod: PodInfo) -> None:
        """A new pending pod (informer add)."""
        if pod.key in self._infos or pod.key in self._in_flight:
            self.update(pod)
            return
        info = QueuedPodInfo(pod, self._clock(), self._clock())
        self._infos[pod.key] = info
        self._push_active(info)

    def update(self, pod: PodInfo, spec_changed: bool = True) -> None:
        """A pending pod changed: an unschedulable pod gets another chance if more than its status did."""
        flying = self._in_flight.get(pod.key)
        if flying is not None:
            flying.pod = pod
            return
        info = self._infos.get(pod.key)
        if info is None:
            self.add(pod)
            return
        info.pod = pod
        if spec_changed and self._where.get(pod.key) == "unschedulable":
            info.timestamp = self._clock()
            if info.backoff_expiry() > self._clock():
                self._push_backoff(info)
            else:
                self._push_active(info)

    def delete(self, key: str) -> None:
        self._infos.pop(key, None)
        self._where.pop(key, None)
        if key in self._in_flight:
            self.done(key)
        self._unschedulable.pop(key, None)

    # ----------------------------------------------------------- popping

    async def pop(self) -> QueuedPodInfo | None:
        """The next pod to schedule; None once closed."""
        while True:
            while self._active:
                _, _, _, key = heapq.heappop(self._active)
                info = self._infos.get(key)
                if info is None or self._where.get(key) != "active":
                    continue  # stale heap entry
                del self._infos[key]
                del self._where[key]
                info.attempts += 1
                self.scheduling_cycle += 1
                info.cycle = self.scheduling_cycle
                self._in_flight[key] = info
                return info
            if self._closed:
                return None
            self._wakeup.clear()
            await self._wakeup.wait()

    def done(self, key: str) -> None:
        """The pod's cycle ended (bound, or handed back with ``add_unschedulable``)."""
        self._in_flight.pop(key, None)
        if not self._in_flight:
            self._in_flight_events.clear()
            return
        # Events received before the oldest cycle still in flight can help no pod in flight: drop
        # them, as upstream's Done does with its inFlightEvents list. Under churn some pod is always
        # in flight, so waiting for none let them pile up to the cap. Pods enter _in_flight in
        # cycle order and the dict keeps it, so the first one is the oldest.
        oldest = next(iter(self._in_flight.values())).cycle
        events = self._in_flight_events
        if events and events[0][0] < oldest:
            del events[:bisect.bisect_left(events, oldest, key=lambda entry: entry[0])]

    def _missed_relevant_event(self, info: QueuedPodInfo) -> bool:
        if len(self._in_flight_events) >= self.max_in_flight_events:
            return True  # too many to remember: assume one could help
        return any(cycle >= info.cycle and self._helps(info, event) for cycle, event in self._in_flight_events)

    def add_unschedulable(self, info: QueuedPodInfo, unschedulable_plugins: Iterable[str] = ()) -> None:
        """A pod that failed its cycle: to unschedulable, or to backoff if the cluster moved meanwhile."""
        key = info.pod.key
        if key not in self._in_flight:
            return  # deleted (or bound by someone else) while in flight
        info.timestamp = self._clock()
        info.unschedulable_plugins = set(unschedulable_plugins)
        missed = self._missed_relevant_event(info)
        self.done(key)
        self._infos[key] = info
        if not info.unschedulable_plugins or missed:
            self._push_backoff(info)
        else:
            self._where[key] = "unschedulable"
            self._unschedulable[key] = info

    # ------------------------------------------------------------ moving

    def move_on_event(self, event: ClusterEvent, pre_check: Callable[[PodInfo], bool] | None = None) -> int:
        """Move the unschedulable pods that ``event`` may help; returns how many moved."""
        if self._in_flight and len(self._in_flight_events) < self.max_in_flight_events:
            self._in_flight_events.append((self.scheduling_cycle, event))
        moved = 0
        now = self._clock()
        for info in list(self._unschedulable.values()):
            if not self._helps(info, event):
                continue
            if pre_check is not None and not pre_check(info.pod):
                continue
            moved += 1
            self._requeue(info, now)
        return moved

    def _requeue(self, info: QueuedPodInfo, now: float) -> None:
        """Out of unschedulable: to backoff while its backoff lasts, else straight to active."""
        if info.backoff_expiry() > now:
            self._push_backoff(info)
        else:
            self._push_active(info)

    def _helps(self, info: QueuedPodInfo, event: ClusterEvent) -> bool:
        if not info.unschedulable_plugins:
            return True
        for plugin in info.unschedulable_plugins:
            for registered in self.plugin_events.get(plugin, ()):
                if registered.matches(event):
                    return True
        return False

    def flush_backoff(self) -> None:
        """Backoff pods whose time is up go to active."""
        now = self._clock()
        while self._backoff and self._backoff[0][0] <= now:
            _, _, key = heapq.heappop(self._backoff)
            info = self._infos.get(key)
            if info is None or self._where.get(key) != "backoff":
                continue
            if info.backoff_expiry() > now:  # re-pushed with a later expiry
                heapq.heappush(self._backoff, (info.backoff_expiry(), next(self._seq), key))
                continue
            self._push_active(info)

    def next_backoff_expiry(self) -> float | None:
        return self._backoff[0][0] if self._backoff else None

    def flush_unschedulable_leftover(self, max_age: float = MAX_UNSCHEDULABLE_DURATION) -> int:
        """Pods stuck unschedulable for longer than ``max_age`` get retried anyway."""
        now = self._clock()
        moved = 0
        for info in list(self._unschedulable.values()):
            if now - info.timestamp > max_age:
                moved += 1
                self._requeue(info, now)
        return moved

    def close(self) -> None:
        self._closed = True
        self._wakeup.set()
