"""The revisioned key-value store every backend implements (SQLite embedded, etcd distributed).

The model is etcd's, because that is what Kubernetes stands on and what the etcd backend must map to
without translation:

* one global, strictly increasing ``revision`` counts every write (create, update, delete);
* each key remembers the revision that created it and the one that last modified it;
* writes are compare-and-swap on the key's ``mod_revision`` (optimistic concurrency);
* a watch from revision R delivers, in revision order, every change with revision > R under a prefix,
  or fails with :class:`CompactedError` if history up to R has been compacted away.

Values are opaque bytes (the API server stores JSON). Keys are strings laid out as Kubernetes does,
``/registry/<group>/<resource>/<namespace>/<name>``; a prefix query uses a trailing ``/``.

Errors (never let ``sqlite3`` or etcd client exceptions out of a backend)::

    StoreError
      KeyExistsError      create of a key that exists
      KeyNotFoundError    update/delete/get-for-update of a missing key
      ConflictError       mod_revision precondition failed
      CompactedError      watch/list at a revision older than the compaction point
      UnavailableError    the backend cannot serve now (etcd quorum lost, disk error)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable

__all__ = [
    "CompactedError",
    "ConflictError",
    "EventType",
    "FieldExtractor",
    "FutureRevisionError",
    "KeyExistsError",
    "KeyNotFoundError",
    "KeyValue",
    "ListIndex",
    "ListResult",
    "NoSpaceError",
    "Store",
    "StoreError",
    "UnavailableError",
    "WatchEvent",
    "WatchTrigger",
    "WatcherTooSlowError",
]


class StoreError(Exception):
    """Base of every error a store backend raises."""

    def __init__(self, message: str, *, key: str = "", revision: int = 0) -> None:
        super().__init__(message)
        self.key = key
        self.revision = revision


class KeyExistsError(StoreError):
    pass


class KeyNotFoundError(StoreError):
    pass


class ConflictError(StoreError):
    """The key's current mod_revision differs from the expected one. ``revision`` holds the current."""


class CompactedError(StoreError):
    """History at the asked revision is gone. ``revision`` holds the oldest revision still served."""


class WatcherTooSlowError(CompactedError):
    """The watcher fell too far behind and was ended; its backlog is dropped, not its history.

    A CompactedError, so an in-process consumer relists as before; the API server instead ends the
    client's watch without an error, as kube-apiserver's cacher ends an unresponsive watcher, and
    the client (a reflector) watches again from the last resourceVersion it received, which the
    store's history still serves. Answering 410 made every slow informer relist every pod, and at
    150,000 pods that relist is what kept it slow (issue 16)."""


class UnavailableError(StoreError):
    pass


class NoSpaceError(StoreError):
    """The store's disk (etcd: its space quota) is full: writes fail until space returns, reads go on.
    etcd's ErrNoSpace ("mvcc: database space exceeded"), SQLite's SQLITE_FULL. Not an UnavailableError:
    kube-apiserver answers it with a 500 and its message, not a 503 that invites a retry at once."""


class FutureRevisionError(StoreError):
    """A read at a revision newer than the store has (etcd's ErrFutureRev)."""


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int


@dataclass(frozen=True, slots=True)
class ListResult:
    items: list[KeyValue]
    #: The revision the list was read at (the store's revision at that moment, or the one asked for).
    revision: int
    #: True when ``limit`` cut the list short; continue from the last item's key.
    more: bool


class EventType(StrEnum):
    PUT = "PUT"
    DELETE = "DELETE"


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: EventType
    #: For PUT the new value; for DELETE the value just before deletion, with ``mod_revision`` set to
    #: the revision of the delete itself.
    kv: KeyValue
    #: The value before this change (None on create). Lets a filtered watch see objects leave its filter.
    prev: KeyValue | None

    @property
    def revision(self) -> int:
        return self.kv.mod_revision

    @property
    def is_create(self) -> bool:
        return self.type is EventType.PUT and self.prev is None


#: Reads one field of a stored entry (a pod's ``spec.nodeName``); None when it cannot tell (a value it
#: cannot decode), which makes the event go to every watcher of that field.
FieldExtractor = Callable[[KeyValue], "str | None"]


@dataclass(frozen=True, slots=True)
class ListIndex:
    """A list hint: only entries whose object has ``value`` at ``field`` (a dotted JSON path, e.g.
    ``spec.nodeName``) are wanted. A backend that indexes the field returns those entries (the
    SQLite store: every kubelet's node-filtered pod list); one that does not ignores it. Like
    :class:`WatchTrigger` it only narrows: a backend may return more, never fewer, and the caller
    still filters exactly."""

    field: str
    value: str


@dataclass(frozen=True, slots=True)
class WatchTrigger:
    """What a watcher filters on, for a backend to skip events it cannot want (kube-apiserver's watch
    cache triggers: a kubelet's pod watch is handed only the events of pods on its node).

    The watcher is interested in an event when ``extract`` gives ``value`` for the new entry or for
    the previous one (a pod bound to the node is an ADDED for that node's watcher, one deleted from
    it a DELETED). It is a hint: a backend may deliver more (etcd delivers everything), never fewer,
    so the caller still filters exactly. Watchers that pass the same ``extract`` object share one
    index and one extraction per event.

    ``may_match``, when given, is a cheaper test that is False only for entries ``extract`` cannot
    give ``value`` for (a search of the stored bytes): replays of history, where every watcher would
    otherwise extract every past event itself, skip with it first."""

    extract: FieldExtractor
    value: str
    may_match: Callable[[KeyValue], bool] | None = None
    #: The field path ``extract`` reads (``spec.nodeName``), for a backend that indexes its stored
    #: values by it (the SQLite store's history reads at watch start); None: not indexable (a key
    #: name, or stored bytes the backend cannot read, such as ciphertext).
    field: str | None = None


@runtime_checkable
class Store(Protocol):
    """A revisioned key-value store with watch. All methods are coroutines unless noted."""

    async def start(self) -> None:
        """Open files/connections, recover state. Called once before use."""

    async def close(self) -> None:
        """Flush and release everything. Watches end (their iterators return)."""

    async def current_revision(self) -> int:
        """The revision of the latest write (0 for an empty store)."""

    async def get(self, key: str) -> KeyValue | None:
        """The current value of ``key``, or None."""

    async def list(self, prefix: str, *, limit: int = 0, start_after: str = "",
                   revision: int = 0, index: ListIndex | None = None) -> ListResult:
        """Keys under ``prefix`` in key order, after ``start_after`` (exclusive), at most ``limit``
        (0: all); ``index``: see :class:`ListIndex` (a backend may ignore it). ``revision`` 0 reads
        the current state; a positive one reads the state as of that revision (needed for
        consistent paging) or raises CompactedError."""

    async def count(self, prefix: str) -> int:
        """How many keys live under ``prefix``."""

    async def create(self, key: str, value: bytes, *, ttl: int = 0) -> KeyValue:
        """Create ``key``; KeyExistsError if present. Returns the stored entry with its revisions.
        ``ttl`` > 0: the store deletes the key (an ordinary delete, seen by watchers) about ``ttl``
        seconds after this write, as etcd does with a key put under a lease (kube-apiserver's Events,
        ``--event-ttl``); 0: the key lives until deleted."""

    async def update(self, key: str, value: bytes, *, expected_mod_revision: int, ttl: int = 0) -> KeyValue:
        """Replace ``key`` if its mod_revision equals ``expected_mod_revision`` (0: unconditionally).
        KeyNotFoundError if absent, ConflictError if the revision differs. ``ttl`` as in
        :meth:`create`, counted from this write: every write sets the key's expiry anew (etcd: a put
        attaches the lease it names, or none), so an update without one makes the key permanent."""

    async def delete(self, key: str, *, expected_mod_revision: int = 0) -> KeyValue:
        """Delete ``key`` (conditionally as in update). Returns the deleted value, its mod_revision
        set to the revision of the delete."""

    def watch(self, prefix: str, start_revision: int,
              trigger: WatchTrigger | None = None) -> AsyncIterator[WatchEvent]:
        """``trigger``: see :class:`WatchTrigger` (a backend may ignore it). ``start_revision`` 0:
        the current state as creates (prev None), then changes after that snapshot. Otherwise
        every change under ``prefix`` with revision > ``start_revision``, in order, then live
        changes until the iterator is closed or the store shuts down. Raises CompactedError (when
        iterated) if ``start_revision`` is older than the compaction point. A slow consumer must
        never block writers or other watchers: a watcher that falls too far behind is ended with
        CompactedError so that it relists."""

    async def compact(self, revision: int) -> None:
        """Forget history at and below ``revision`` (current values are kept)."""

    async def compacted_revision(self) -> int:
        """The newest revision that has been compacted away (0 if none)."""
