"""What every controller shares: a work queue of keys, N workers, a level-triggered ``sync(key)``.

The shape is the ReplicaSet controller's: informer event handlers only map objects to keys and
enqueue; a worker takes a key, calls ``sync(key)``, which reads the informer caches, compares desired
with actual, acts through the API and is safe to run twice; errors requeue the key with per-key
exponential backoff, success forgets it. One key is never synced by two workers at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from pilothouse.client import errors
from pilothouse.client.events import EventRecorder
from pilothouse.client.informer import InformerFactory, object_key
from pilothouse.client.rest import APIClient
from pilothouse.client.workqueue import ShutDown, WorkQueue
from pilothouse.components.controllers.eventsources import EVENT_SOURCES
from pilothouse.machinery.meta import Object

__all__ = ["SLOW_RETRY", "CacheBehind", "Controller", "ControllerContext", "Expectations", "split_key"]

#: A conflict requeued this far out is logged as a warning: the key will stay stale that long
#: unless an event enqueues it (the controller manager logs at WARNING by default).
SLOW_RETRY = 10.0


def split_key(key: str) -> tuple[str | None, str]:
    if "/" in key:
        namespace, name = key.split("/", 1)
        return namespace, name
    return None, key


class CacheBehind(Exception):
    """What the informer cache shows cannot be acted on yet: it is behind the server (a status that
    has not caught up with its spec). The sync writes nothing and its key is retried with backoff,
    as a write's conflict is: the next sync sees the cache caught up."""


@dataclass
class ControllerContext:
    """Shared by all controllers of one controller manager: one client, one set of informers."""

    client: APIClient
    informers: InformerFactory
    recorder_component: str = "controller-manager"
    options: dict[str, Any] = field(default_factory=dict)

    def recorder(self, component: str | None = None) -> EventRecorder:
        return EventRecorder(self.client, component or self.recorder_component)


class Expectations:
    """How many creations/deletions a controller still waits to see in its cache, per owner key.

    Without this a controller that just created 5 pods, woken again before its informer has seen
    them, would create 5 more (client-go's ``ControllerExpectations``).
    """

    def __init__(self, ttl: float = 300.0) -> None:
        self._pending: dict[str, tuple[int, int, float]] = {}
        self.ttl = ttl

    def expect(self, key: str, adds: int = 0, deletes: int = 0) -> None:
        loop = asyncio.get_running_loop()
        self._pending[key] = (adds, deletes, loop.time())

    def observe_add(self, key: str) -> None:
        if key in self._pending:
            adds, deletes, at = self._pending[key]
            self._pending[key] = (adds - 1, deletes, at)

    def observe_delete(self, key: str) -> None:
        if key in self._pending:
            adds, deletes, at = self._pending[key]
            self._pending[key] = (adds, deletes - 1, at)

    def lower(self, key: str, adds: int = 0, deletes: int = 0) -> None:
        """Creations/deletions that were skipped or failed will never be observed."""
        if key in self._pending:
            pending_adds, pending_deletes, at = self._pending[key]
            self._pending[key] = (pending_adds - adds, pending_deletes - deletes, at)

    def satisfied(self, key: str) -> bool:
        entry = self._pending.get(key)
        if entry is None:
            return True
        adds, deletes, at = entry
        if adds <= 0 and deletes <= 0:
            return True
        return asyncio.get_running_loop().time() - at > self.ttl  # expired: trust the cache again

    def forget(self, key: str) -> None:
        self._pending.pop(key, None)


class Controller:
    """Subclasses set ``name``, register informer handlers in ``__init__`` and implement ``sync``."""

    name = "controller"
    workers = 2

    def __init__(self, ctx: ControllerContext) -> None:
        self.ctx = ctx
        self.client = ctx.client
        self.queue = WorkQueue(name=self.name)
        self.recorder = ctx.recorder(EVENT_SOURCES.get(self.name))
        self.log = logging.getLogger(f"pilothouse.controllers.{self.name}")
        self._tasks: list[asyncio.Task[None]] = []

    # -------------------------------------------------------------- helpers

    def enqueue(self, obj: Object) -> None:
        self.queue.add(object_key(obj))

    def enqueue_key(self, key: Hashable) -> None:
        self.queue.add(key)

    def retry_now(self, key: Hashable) -> None:
        """Sync ``key`` at once if it waits out a backoff: for the informer event of an object its
        syncs write. A sync refused with a 409 Conflict read that object from a cache behind the
        server; the cache catching up is the event that makes the next sync succeed, and without
        it the key waited for its timer, whose delay grows with every failed sync (one per pod
        event while the cache was behind) to minutes (issue 15, CHAOS_SEED=1184329778)."""
        if self.queue.num_requeues(key):
            self.queue.add(key)

    # ------------------------------------------------------------- the loop

    async def sync(self, key: str) -> None:
        raise NotImplementedError

    async def run(self) -> None:
        self._tasks = [asyncio.create_task(self._worker(), name=f"{self.name}-worker-{i}")
                       for i in range(self.workers)]
        try:
            await asyncio.gather(*self._tasks)
        finally:
            for task in self._tasks:
                task.cancel()

    async def stop(self) -> None:
        self.queue.shutdown()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _worker(self) -> None:
        while True:
            try:
                key = await self.queue.get()
            except ShutDown:
                return
            try:
                await self.sync(str(key))
                self.queue.forget(key)
            except asyncio.CancelledError:
                raise
            except (errors.ConflictError, errors.AlreadyExistsError, errors.NotFoundError, CacheBehind) as error:
                # Races with other writers or a cache behind the server: the next sync sees the new
                # state. Logged, so that a key whose backoff grew long is seen in a chaos log.
                delay = self.queue.add_rate_limited(key)
                level = logging.WARNING if delay >= SLOW_RETRY else logging.INFO
                self.log.log(level, "sync %s: %s; requeued in %.3gs (retry %d)", key, error, delay,
                             self.queue.num_requeues(key))
            except (errors.APIError, errors.ConnectionFailed) as error:
                self.log.warning("sync %s failed: %s; requeued", key, error)
                self.queue.add_rate_limited(key)
            except Exception:
                self.log.exception("sync %s crashed; requeued", key)
                self.queue.add_rate_limited(key)
            finally:
                self.queue.done(key)
