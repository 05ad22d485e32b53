"""A rate-limited work queue of keys, as client-go's ``workqueue`` (asyncio edition).

Guarantees controllers rely on: a key is never handed to two workers at once (``processing``); a key
added while it is processed is handed out again after ``done`` (``dirty``); adding a key that is
already waiting does nothing (dedupe); failures back off per key exponentially until ``forget``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Hashable

from pilothouse.client.workqueue_metrics import QueueMetrics

__all__ = ["ShutDown", "WorkQueue"]


class ShutDown(Exception):
    """``get`` on a queue that was shut down."""


class WorkQueue:
    def __init__(self, *, base_delay: float = 0.005, max_delay: float = 300.0, name: str = "") -> None:
        self._queue: deque[Hashable] = deque()
        self._dirty: set[Hashable] = set()
        self._processing: set[Hashable] = set()
        self._failures: dict[Hashable, int] = {}
        self._waiting: dict[Hashable, asyncio.TimerHandle] = {}
        self._wakeup = asyncio.Event()
        self._shutdown = False
        self.base_delay = base_delay
        self.max_delay = max_delay
        #: client-go's workqueue_* series for a named queue (a controller's); none for an anonymous one.
        self.metrics = QueueMetrics(name) if name else None

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, key: Hashable) -> None:
        if self._shutdown or key in self._dirty:
            return
        self._dirty.add(key)
        if self.metrics is not None:
            self.metrics.add(key)
        if key not in self._processing:
            self._queue.append(key)
            self._wakeup.set()

    def add_after(self, key: Hashable, delay: float) -> None:
        if self._shutdown:
            return
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        existing = self._waiting.get(key)
        when = loop.time() + delay
        if existing is not None:
            if existing.when() <= when:
                return  # an earlier wake-up is already planned
            existing.cancel()
        self._waiting[key] = loop.call_at(when, self._fire, key)

    def _fire(self, key: Hashable) -> None:
        self._waiting.pop(key, None)
        self.add(key)

    def add_rate_limited(self, key: Hashable) -> float:
        """Hand ``key`` out again after its backoff; returns that delay (seconds)."""
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        if self.metrics is not None:
            self.metrics.retry()
        delay: float = min(self.base_delay * (2 ** failures), self.max_delay)
        self.add_after(key, delay)
        return delay

    def forget(self, key: Hashable) -> None:
        self._failures.pop(key, None)

    def num_requeues(self, key: Hashable) -> int:
        return self._failures.get(key, 0)

    def planned_in(self, key: Hashable) -> float | None:
        """Seconds until ``key``'s planned retry (``add_after``), None if none is planned."""
        handle = self._waiting.get(key)
        return None if handle is None else handle.when() - asyncio.get_running_loop().time()

    async def get(self) -> Hashable:
        while not self._queue:
            if self._shutdown:
                raise ShutDown
            self._wakeup.clear()
            await self._wakeup.wait()
        key = self._queue.popleft()
        self._processing.add(key)
        self._dirty.discard(key)
        if self.metrics is not None:
            self.metrics.get(key)
        return key

    def done(self, key: Hashable) -> None:
        self._processing.discard(key)
        if self.metrics is not None:
            self.metrics.done(key)
        if key in self._dirty:
            self._queue.append(key)
            self._wakeup.set()

    def shutdown(self) -> None:
        self._shutdown = True
        for handle in self._waiting.values():
            handle.cancel()
        self._waiting.clear()
        self._wakeup.set()
