"""In-memory watch fan-out for in-process store backends.

A backend that owns its own writes (the embedded SQLite store, a future in-memory test store) knows
every event the moment it commits, so watches are best served from memory: the backend publishes each
committed batch here, in revision order, and the hub copies it into one bounded queue per watcher and
into a ring of recent events. A new watch whose start revision is still covered by the ring never
touches disk; an older one (but newer than the compaction point) is replayed through a backend-supplied
history loader first and then switches to the live queue. A remote backend (etcd) does not use this:
etcd fans out itself.

Ordering without gaps or duplicates rests on one invariant: a watcher is registered synchronously, on
the event loop, at the hub's published revision ``origin``. Everything after ``origin`` reaches its live
queue; everything at or before ``origin`` is replayed (ring, history loader, or a snapshot). Delivery
keeps the last delivered revision and drops anything not newer, so overlaps between the phases vanish.

A watcher whose queue overflows is cut off with :class:`CompactedError` (the client relists), so a slow
consumer never blocks writers or other watchers.

``start_revision == 0`` follows Kubernetes' etcd3 watcher (``TestWatchFromZero``): the watch first
emits the current state under the prefix as synthetic create events (``prev`` None), then every change
newer than that snapshot. It therefore works whatever has been compacted.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Literal

from pilothouse.store.interface import (
    CompactedError,
    EventType,
    ListResult,
    StoreError,
    WatchEvent,
)

__all__ = ["HistoryLoader", "SnapshotLoader", "Watch", "WatchHub"]

#: ``(prefix, after, upto, limit)`` → events under prefix with ``after < revision <= upto`` in revision
#: order, at most ``limit``; raises CompactedError when ``after`` is older than the compaction point.
HistoryLoader = Callable[[str, int, int, int], Awaitable[list[WatchEvent]]]
#: ``prefix`` → the current state under prefix, with the revision it was read at.
SnapshotLoader = Callable[[str], Awaitable[ListResult]]

_HISTORY_CHUNK = 1000


def compacted_error(compacted: int) -> CompactedError:
    return CompactedError(
        f"required revision has been compacted (oldest available: {compacted})", revision=compacted
    )


class WatchHub:
    """Fans committed events out to watchers; keeps a ring of recent events for cheap resumption."""

    def __init__(self, *, load_history: HistoryLoader, load_snapshot: SnapshotLoader,
                 ring_size: int = 8192, queue_size: int = 10000) -> None:
        self._load_history = load_history
        self._load_snapshot = load_snapshot
        self._ring: deque[WatchEvent] = deque()
        self._ring_size = max(0, ring_size)
        self.queue_size = max(1, queue_size)
        #: Revision of the newest published event.
        self.revision = 0
        #: The ring holds every event with revision > floor (and <= revision).
        self.floor = 0
        self.compacted = 0
        self.closed = False
        # Weak: a consumer that drops its iterator without aclose() (``async for`` inside a generator
        # that gets closed) must not leave a registered watcher buffering events forever.
        self._watchers: weakref.WeakSet[Watch] = weakref.WeakSet()

    def reset(self, revision: int, compacted: int) -> None:
        """Set the starting point after recovery (the ring starts empty)."""
        self.revision = self.floor = revision
        self.compacted = compacted
        self._ring.clear()

    def publish(self, events: Iterable[WatchEvent]) -> None:
        """Record committed events (in revision order) and hand them to every watcher."""
        batch = list(events)
        if not batch:
            return
        ring = self._ring
        for ev in batch:
            if self._ring_size == 0:
                self.floor = ev.revision
            else:
                if len(ring) >= self._ring_size:
                    self.floor = ring.popleft().revision
                ring.append(ev)
            self.revision = ev.revision
        for w in list(self._watchers):
            w._offer(batch)

    def compacted_to(self, revision: int) -> None:
        """History at and below ``revision`` is gone: new watches from there fail, the ring forgets it."""
        if revision <= self.compacted:
            return
        self.compacted = revision
        while self._ring and self._ring[0].revision <= revision:
            self._ring.popleft()
        self.floor = max(self.floor, revision)

    def watch(self, prefix: str, start_revision: int) -> Watch:
        if start_revision < 0:
            raise ValueError("start_revision must be >= 0")
        w = Watch(self, prefix, start_revision)
        if not self.closed and w._error is None:
            self._watchers.add(w)
        return w

    def close(self) -> None:
        """End every watch: their iterators return."""
        self.closed = True
        for w in list(self._watchers):
            w._end()
        self._watchers.clear()

    @property
    def watcher_count(self) -> int:
        return len(self._watchers)

    def _ring_after(self, revision: int, prefix: str) -> list[WatchEvent]:
        out: list[WatchEvent] = []
        for ev in reversed(self._ring):
            if ev.revision <= revision:
                break
            if ev.kv.key.startswith(prefix):
                out.append(ev)
        out.reverse()
        return out

    def _remove(self, w: Watch) -> None:
        self._watchers.discard(w)


class Watch:
    """One watcher: an async iterator of events (see the module docstring for the phases)."""

    def __init__(self, hub: WatchHub, prefix: str, start_revision: int) -> None:
        self._hub = hub
        self._prefix = prefix
        self._origin = hub.revision
        self._delivered = start_revision
        self._live: deque[WatchEvent] = deque()
        self._replay: deque[WatchEvent] = deque()
        self._synthetic: deque[WatchEvent] = deque()
        self._wake = asyncio.Event()
        self._error: StoreError | None = None
        self._done = hub.closed
        self._pending: Literal["snapshot", "history"] | None = None
        self._cursor = start_revision
        if start_revision == 0:
            self._pending = "snapshot"
        elif start_revision < hub.compacted:
            self._error = compacted_error(hub.compacted)
        elif start_revision >= hub.floor:
            self._replay.extend(hub._ring_after(start_revision, prefix))
        else:
            self._pending = "history"

    def __aiter__(self) -> Watch:
        return self

    async def __anext__(self) -> WatchEvent:
        while True:
            if self._done:
                raise StopAsyncIteration
            if self._error is not None:
                err, self._error = self._error, None
                self._finish()
                raise err
            if self._synthetic:
                return self._synthetic.popleft()
            if self._replay:
                ev = self._replay.popleft()
                if ev.revision > self._delivered:
                    self._delivered = ev.revision
                    return ev
                continue
            if self._pending is not None:
                await self._fill()
                continue
            if self._live:
                ev = self._live.popleft()
                if ev.revision > self._delivered:
                    self._delivered = ev.revision
                    return ev
                continue
            self._wake.clear()
            await self._wake.wait()

    async def _fill(self) -> None:
        """Load the next piece of the replay phase (snapshot or a history chunk)."""
        try:
            if self._pending == "snapshot":
                res = await self._hub._load_snapshot(self._prefix)
                self._synthetic.extend(
                    WatchEvent(EventType.PUT, kv, None) for kv in res.items
                )
                self._delivered = res.revision
                self._pending = None
                return
            if self._cursor >= self._origin:
                self._pending = None
                return
            events = await self._hub._load_history(self._prefix, self._cursor, self._origin,
                                                   _HISTORY_CHUNK)
        except StoreError as exc:
            if not self._done:
                self._error = exc
            return
        if len(events) < _HISTORY_CHUNK:
            self._cursor = self._origin
        else:
            self._cursor = events[-1].revision
        self._replay.extend(events)

    async def aclose(self) -> None:
        """Stop watching (idempotent)."""
        self._finish()

    def _offer(self, events: list[WatchEvent]) -> None:
        prefix = self._prefix
        added = False
        for ev in events:
            if not ev.kv.key.startswith(prefix):
                continue
            if len(self._live) >= self._hub.queue_size:
                # Too far behind: drop the backlog and cut the watcher off so it relists,
                # rather than holding memory (or writers) hostage.
                self._live.clear()
                self._error = CompactedError(
                    "watcher fell too far behind and was ended; relist",
                    key=prefix, revision=self._hub.compacted,
                )
                self._hub._remove(self)
                self._wake.set()
                return
            self._live.append(ev)
            added = True
        if added:
            self._wake.set()

    def _end(self) -> None:
        self._done = True
        self._live.clear()
        self._replay.clear()
        self._synthetic.clear()
        self._wake.set()

    def _finish(self) -> None:
        self._hub._remove(self)
        self._end()
