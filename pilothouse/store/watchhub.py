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

Fan-out cost follows the interested watchers, not all of them (kube-apiserver's cacher does the same
with its ``watchersBuffer`` and triggers): watchers are grouped by prefix (a key reaches only the groups
of its own ``/``-delimited prefixes, a handful of dict lookups), and within a group by
:class:`~pilothouse.store.interface.WatchTrigger` value, so a pod event goes to the watchers of its
old and new node (and to those without a trigger), each field read once per event. With 5,000
kubelet watches that is two watchers per pod event instead of 5,000. Replays from the ring and from
history are narrowed by the same trigger (its cheap ``may_match`` first): at 5,000 nodes every kubelet
watch starts from its list's revision, by then older than the ring, and each replayed every pod
event of the range into its own buffer for the caller to decode and drop (a profile of the full
run: half the server's CPU in those replays, a third in decoding). Snapshots are not narrowed.

A watcher whose queue overflows is cut off with :class:`WatcherTooSlowError` (a CompactedError: an
in-process consumer relists; the API server ends the client's watch, which resumes from the last
revision it received), so a slow consumer never blocks writers or other watchers. Queues and the
ring are bounded in bytes (the stored values an event holds, its ``kv`` and ``prev``) as well as in
entries: 10,000 queued events are 20 MB of 1 KB Leases but 400 MB of 20 KB pods, per watcher, and the
ring's 8,192 were 330 MB of such pods. A history replay holds one chunk of at most 1,000 events at a
time, loaded when the last is delivered.

``start_revision == 0`` follows Kubernetes' etcd3 watcher (``TestWatchFromZero``): the watch first
emits the current state under the prefix as synthetic create events (``prev`` None), then every change
newer than that snapshot. It therefore works whatever has been compacted.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Literal

from pilothouse.store.interface import (
    CompactedError,
    EventType,
    FieldExtractor,
    KeyValue,
    ListResult,
    StoreError,
    WatcherTooSlowError,
    WatchEvent,
    WatchTrigger,
)

__all__ = ["QUEUE_BYTES", "RING_BYTES", "FieldMemo", "HistoryLoader", "SnapshotLoader", "Watch", "WatchHub",
           "event_bytes"]

#: ``(prefix, after, upto, limit, trigger)`` → events under prefix with ``after < revision <= upto`` in
#: revision order, at most ``limit``; raises CompactedError when ``after`` is older than the compaction
#: point. With a trigger it may leave out events the trigger rules out (never one it may match).
HistoryLoader = Callable[[str, int, int, int, WatchTrigger | None], Awaitable[list[WatchEvent]]]
#: ``prefix`` → the current state under prefix, with the revision it was read at.
SnapshotLoader = Callable[[str], Awaitable[ListResult]]

_HISTORY_CHUNK = 1000
#: Bytes of stored values one watcher may have queued before it is cut off (it relists).
QUEUE_BYTES = 16 << 20
#: Bytes of stored values the ring keeps (older events are replayed from the history loader).
RING_BYTES = 64 << 20
#: Extracted field values remembered per extractor, by (key, mod_revision): an event's ``prev`` is an
#: earlier event's value, so its field is usually read already.
_EXTRACTED_MEMO = 4096


def event_bytes(ev: WatchEvent) -> int:
    """What an event holds in memory, as far as it grows with the objects: its values' bytes."""
    return len(ev.kv.value) + (len(ev.prev.value) if ev.prev is not None else 0)


def compacted_error(compacted: int) -> CompactedError:
    return CompactedError(
        f"required revision has been compacted (oldest available: {compacted})", revision=compacted
    )


class WatchHub:
    """Fans committed events out to watchers; keeps a ring of recent events for cheap resumption."""

    def __init__(self, *, load_history: HistoryLoader, load_snapshot: SnapshotLoader,
                 ring_size: int = 8192, queue_size: int = 10000, ring_bytes: int = RING_BYTES,
                 queue_bytes: int = QUEUE_BYTES) -> None:
        self._load_history = load_history
        self._load_snapshot = load_snapshot
        self._ring: deque[WatchEvent] = deque()
        self._ring_size = max(0, ring_size)
        self._ring_bytes_max = max(0, ring_bytes)
        self._ring_bytes = 0
        self.queue_size = max(1, queue_size)
        self.queue_bytes = max(1, queue_bytes)
        #: Revision of the newest published event.
        self.revision = 0
        #: The ring holds every event with revision > floor (and <= revision).
        self.floor = 0
        self.compacted = 0
        self.closed = False
        # Weak: a consumer that drops its iterator without aclose() (``async for`` inside a generator
        # that gets closed) must not leave a registered watcher buffering events forever.
        self._watchers: weakref.WeakSet[Watch] = weakref.WeakSet()
        #: Watchers by prefix (those ending in "/", or ""), and the few with any other prefix.
        self._buckets: dict[str, _Bucket] = {}
        self._unaligned: weakref.WeakSet[Watch] = weakref.WeakSet()
        self._indexes: dict[FieldExtractor, FieldMemo] = {}

    def reset(self, revision: int, compacted: int) -> None:
        """Set the starting point after recovery (the ring starts empty)."""
        self.revision = self.floor = revision
        self.compacted = compacted
        self._ring.clear()
        self._ring_bytes = 0

    def publish(self, events: Iterable[WatchEvent]) -> None:
        """Record committed events (in revision order) and hand them to every watcher."""
        batch = list(events)
        if not batch:
            return
        ring = self._ring
        for ev in batch:
            if self._ring_size == 0 or self._ring_bytes_max == 0:
                self.floor = ev.revision
            else:
                ring.append(ev)
                self._ring_bytes += event_bytes(ev)
                while len(ring) > self._ring_size or (self._ring_bytes > self._ring_bytes_max and len(ring) > 1):
                    dropped = ring.popleft()
                    self._ring_bytes -= event_bytes(dropped)
                    self.floor = dropped.revision
            self.revision = ev.revision
        deliveries: dict[Watch, list[WatchEvent]] = {}
        for ev in batch:
            for w in self._interested(ev):
                pending = deliveries.get(w)
                if pending is None:
                    deliveries[w] = [ev]
                else:
                    pending.append(ev)
        for w, pending in deliveries.items():
            w._offer(pending)

    def _interested(self, ev: WatchEvent) -> Iterable[Watch]:
        """The watchers ``ev`` may interest: those of the key's prefixes, narrowed by trigger."""
        key = ev.kv.key
        buckets = self._buckets
        end = key.find("/")
        candidates = [buckets.get("")]
        while end >= 0:
            candidates.append(buckets.get(key[:end + 1]))
            end = key.find("/", end + 1)
        for bucket in candidates:
            if bucket is None:
                continue
            yield from bucket.plain
            for extract, by_value in bucket.by_trigger.items():
                index = self._indexes[extract]
                new = index(ev.kv)
                old = index(ev.prev) if ev.prev is not None else new
                if new is None or old is None:
                    for watchers in list(by_value.values()):
                        yield from watchers
                    continue
                yield from by_value.get(new, ())
                if old != new:
                    yield from by_value.get(old, ())
        for w in self._unaligned:
            if key.startswith(w._prefix):
                yield w

    def compacted_to(self, revision: int) -> None:
        """History at and below ``revision`` is gone: new watches from there fail, the ring forgets it."""
        if revision <= self.compacted:
            return
        self.compacted = revision
        while self._ring and self._ring[0].revision <= revision:
            self._ring_bytes -= event_bytes(self._ring.popleft())
        self.floor = max(self.floor, revision)

    def skip_to(self, revision: int) -> None:
        """Events up to ``revision`` will never be published (``server --workers``: a worker found them
        compacted before it read them, store/_sqlite_peers.py): every watcher is cut off as if it had
        fallen behind, and the hub goes on from ``revision``."""
        self.compacted_to(revision)
        self.revision = self.floor = max(self.revision, revision)
        self._ring.clear()
        for w in list(self._watchers):
            w._error = compacted_error(revision)
            self._remove(w)
            w._wake.set()

    def watch(self, prefix: str, start_revision: int, trigger: WatchTrigger | None = None) -> Watch:
        if start_revision < 0:
            raise ValueError("start_revision must be >= 0")
        w = Watch(self, prefix, start_revision, trigger)
        if not self.closed and w._error is None:
            self._add(w)
        return w

    def _add(self, w: Watch) -> None:
        self._watchers.add(w)
        if not w._prefix.endswith("/") and w._prefix:
            # Watches on a bare prefix ("/registry/pods/ns/na" matches "nab") are rare: scanned.
            self._unaligned.add(w)
            return
        bucket = self._buckets.get(w._prefix)
        if bucket is None:
            bucket = self._buckets[w._prefix] = _Bucket()
        trigger = w._trigger
        if trigger is None:
            bucket.plain.add(w)
            return
        if trigger.extract not in self._indexes:
            # An extractor that already remembers (the API server's, shared with its watch filter)
            # is its own index: one memo, not two.
            extract = trigger.extract
            self._indexes[extract] = extract if isinstance(extract, FieldMemo) else FieldMemo(extract)
        bucket.by_trigger.setdefault(trigger.extract, {}).setdefault(trigger.value, weakref.WeakSet()).add(w)

    def close(self) -> None:
        """End every watch: their iterators return."""
        self.closed = True
        for w in list(self._watchers):
            w._end()
        self._watchers.clear()
        self._buckets.clear()
        self._unaligned.clear()
        self._indexes.clear()

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
        self._unaligned.discard(w)
        bucket = self._buckets.get(w._prefix)
        if bucket is None:
            return
        trigger = w._trigger
        if trigger is None:
            bucket.plain.discard(w)
        else:
            by_value = bucket.by_trigger.get(trigger.extract, {})
            watchers = by_value.get(trigger.value)
            if watchers is not None:
                watchers.discard(w)
                if not watchers:
                    del by_value[trigger.value]
            if not by_value:
                bucket.by_trigger.pop(trigger.extract, None)
                if not any(trigger.extract in b.by_trigger for b in self._buckets.values()):
                    self._indexes.pop(trigger.extract, None)
        if not bucket.plain and not bucket.by_trigger:
            del self._buckets[w._prefix]


class _Bucket:
    """The watchers of one prefix: those without a trigger, and the others by trigger value.

    Weak sets, as the hub's: a watcher dropped without ``aclose()`` leaves by itself (its bucket
    may then stay empty until the next watcher of that prefix comes and goes; they are few)."""

    __slots__ = ("by_trigger", "plain")

    def __init__(self) -> None:
        self.plain: weakref.WeakSet[Watch] = weakref.WeakSet()
        self.by_trigger: dict[FieldExtractor, dict[str, weakref.WeakSet[Watch]]] = {}


class FieldMemo:
    """An extractor with the values it read lately, by (key, mod_revision): exact within one store,
    where a key at a revision names one value. The hub indexes its watchers by one per extractor;
    the API server hands it one per storage and field, and asks it too when filtering."""

    __slots__ = ("_extract", "_memo")

    def __init__(self, extract: FieldExtractor) -> None:
        self._extract = extract
        self._memo: OrderedDict[tuple[str, int], str | None] = OrderedDict()

    def __call__(self, kv: KeyValue) -> str | None:
        memo_key = (kv.key, kv.mod_revision)
        if memo_key in self._memo:
            return self._memo[memo_key]
        found = self._memo[memo_key] = self._extract(kv)
        if len(self._memo) > _EXTRACTED_MEMO:
            self._memo.popitem(last=False)
        return found


class Watch:
    """One watcher: an async iterator of events (see the module docstring for the phases)."""

    def __init__(self, hub: WatchHub, prefix: str, start_revision: int,
                 trigger: WatchTrigger | None = None) -> None:
        self._hub = hub
        self._prefix = prefix
        self._trigger = trigger
        self._origin = hub.revision
        self._delivered = start_revision
        self._live: deque[WatchEvent] = deque()
        self._live_bytes = 0
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
            self._replay.extend(filter(self._wants, hub._ring_after(start_revision, prefix)))
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
                self._live_bytes -= event_bytes(ev)
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
                                                   _HISTORY_CHUNK, self._trigger)
        except StoreError as exc:
            if not self._done:
                self._error = exc
            return
        if len(events) < _HISTORY_CHUNK:
            self._cursor = self._origin
        else:
            self._cursor = events[-1].revision
        self._replay.extend(filter(self._wants, events))

    def _wants(self, ev: WatchEvent) -> bool:
        """Whether a replayed event may interest this watcher: its trigger's value in the new entry
        or the previous one (as the live fan-out decides), or no trigger."""
        trigger = self._trigger
        if trigger is None:
            return True
        test = trigger.may_match
        if test is not None and not test(ev.kv) and (ev.prev is None or not test(ev.prev)):
            return False
        for kv in (ev.kv, ev.prev):
            if kv is None:
                continue
            found = trigger.extract(kv)
            if found is None or found == trigger.value:
                return True  # None: unreadable here, the caller decides
        return False

    async def aclose(self) -> None:
        """Stop watching (idempotent)."""
        self._finish()

    def _offer(self, events: list[WatchEvent]) -> None:
        """Events under this watcher's prefix (the hub picked them), in revision order."""
        size = sum(event_bytes(ev) for ev in events)
        if (len(self._live) + len(events) > self._hub.queue_size
                or (self._live and self._live_bytes + size > self._hub.queue_bytes)):
            # Too far behind: drop the backlog and cut the watcher off (it resumes from the last
            # event it got, or relists), rather than holding memory (or writers) hostage. (One
            # batch larger than the byte bound on an empty queue is let through: it is no backlog.)
            self._live.clear()
            self._live_bytes = 0
            self._error = WatcherTooSlowError(
                "watcher fell too far behind and was ended",
                key=self._prefix, revision=self._hub.compacted,
            )
            self._hub._remove(self)
            self._wake.set()
            return
        self._live.extend(events)
        self._live_bytes += size
        self._wake.set()

    def _end(self) -> None:
        self._done = True
        self._live.clear()
        self._live_bytes = 0
        self._replay.clear()
        self._synthetic.clear()
        self._wake.set()

    def _finish(self) -> None:
        self._hub._remove(self)
        self._end()
