"""The SQLite store's single writer thread: group commit with per-write preconditions.

Every write goes through one thread that owns the only write connection. It blocks for the first
queued operation, then takes every other operation already waiting, applies them in order in one
``BEGIN IMMEDIATE`` transaction and commits once — one fsync for the whole group, which is where the
throughput of full durability comes from (under load the queue fills while the previous group's fsync
runs). Preconditions (exists/absent, expected mod_revision) are checked inside that transaction just
before each write, against the state left by the writes before it (read once per group, decided in
Python), and a failing write simply writes nothing — it fails alone, so no SAVEPOINT is needed.
Failed writes consume no revision.

The event loop hands the writer each loop iteration's writes as one queue item: ``submit`` buffers
an op and the first op of an iteration schedules one flush (``loop.call_soon``), which runs in the
next iteration. A lone write waits at most that one turn of the loop; a burst of writes (a sweep's
deletes, requests parsed from one ``select``) wakes the thread once instead of once per write, and
each wake-up of a thread that then takes the GIL costs the event loop too. Order is kept (one
buffer, flushed in order, and the stop marker only after it).

Only after COMMIT returns are results handed back to the event loop (one ``call_soon_threadsafe`` per
group), where the store publishes the group's events to watchers and then resolves each caller's
future: an acknowledged write is durable and already visible to watchers.

Compaction also runs here (it deletes log rows), in chunks interleaved with write groups so a large
compaction never stalls writers for long.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from pilothouse.store._sqlite_schema import SCHEMA, connect, current_revision_sql, map_error, migrate
from pilothouse.store.interface import (
    ConflictError,
    EventType,
    KeyExistsError,
    KeyNotFoundError,
    KeyValue,
    StoreError,
    UnavailableError,
    WatchEvent,
)

__all__ = ["Op", "WriteResult", "Writer"]

#: Upper bound on one group (bounds transaction size and the latency of the first caller).
MAX_GROUP = 2000
#: Log rows deleted per compaction transaction: etcd's default compaction batch limit. Each chunk
#: runs between two write groups; at 5,000 rows of pods (3.9 KB, kept twice: value and previous) a
#: chunk took seconds on a loaded machine and writes fell from ~150/s to ~25/s while 150,000 rows
#: of history were compacted (bench/list_scale.py --churn).
COMPACT_CHUNK = 1000

OpKind = Literal["create", "update", "delete", "compact"]
WriteResult = KeyValue | StoreError | None


@dataclass(slots=True)
class Op:
    kind: OpKind
    key: str
    value: bytes
    expected: int
    future: asyncio.Future[KeyValue | None] = field(repr=False)
    #: Seconds after this write the key expires (``Store.create``/``update``); 0: never.
    ttl: int = 0


#: Called on the event loop after a group commits: (ops, results aligned with ops, events in order).
Deliver = Callable[[list[Op], list[WriteResult], list[WatchEvent]], None]
#: Called on the event loop when a compaction's first chunk committed: (revision,).
Compacted = Callable[[int], None]

_STOP = object()


class Writer:
    """Owns the write connection and its thread. ``submit`` is called from the event loop."""

    def __init__(self, path: str, loop: asyncio.AbstractEventLoop, deliver: Deliver,
                 on_compacted: Compacted, committed: Callable[[], None] | None = None,
                 lock_path: str | None = None) -> None:
        self._path = path
        #: ``server --workers``: a file lock taken around each write transaction (see _locked).
        self._lock_path = lock_path
        self._lock_fd: int | None = None
        #: Called on this thread after each commit (the sibling workers' wake-up, _sqlite_peers.py).
        self._committed = committed
        self._loop = loop
        self._deliver = deliver
        self._on_compacted = on_compacted
        #: Items: a list of ops (one loop iteration's writes, in order) or the stop marker.
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        #: Ops submitted during this loop iteration, not yet handed to the thread (see _flush).
        self._pending: list[Op] = []
        #: The thread's own: ops taken from the queue beyond MAX_GROUP, the start of the next group.
        self._carry: list[Op] = []
        self._thread = threading.Thread(target=self._run, name="sqlite-writer", daemon=True)
        self._conn: sqlite3.Connection | None = None
        self._ready: asyncio.Future[tuple[int, int]] = loop.create_future()
        self.revision = 0
        self.compacted = 0
        self.stopped = False
        #: Number of commits and writes committed (for benchmarks / tests of grouping).
        self.commits = 0
        self.writes = 0

    async def start(self) -> tuple[int, int]:
        """Start the thread; returns (revision, compacted) recovered from the file."""
        self._thread.start()
        return await self._ready

    def submit(self, op: Op) -> None:
        """Queue ``op`` (on the event loop). It reaches the thread with the rest of this loop
        iteration's ops, at the start of the next iteration."""
        if self.stopped:
            op.future.set_exception(UnavailableError("store is closed"))
            return
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(op)

    def _flush(self) -> None:
        """Hand the buffered ops to the thread as one queue item: one wake-up for all of them."""
        if self._pending:
            ops, self._pending = self._pending, []
            self._queue.put(ops)

    async def stop(self) -> None:
        """Finish the operations already queued, then close the connection and join the thread."""
        if self.stopped:
            return
        self.stopped = True
        self._flush()  # accepted before the stop: they go ahead of the marker
        self._queue.put(_STOP)
        if self._thread.is_alive():
            await asyncio.to_thread(self._thread.join)

    # --- the thread ---------------------------------------------------------------------------

    def _call(self, fn: Callable[..., None], *args: object) -> None:
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is gone: nobody waits any more
            pass

    def _run(self) -> None:
        try:
            conn = self._conn = connect(self._path, readonly=False)
            conn.executescript(SCHEMA)
            migrate(conn)
            self.revision, self.compacted = conn.execute(current_revision_sql).fetchone()
        except Exception as exc:  # reported to start(); the thread ends
            err = map_error(exc, "open")
            self._call(_set_exception, self._ready, err)
            return
        self._call(_set_result, self._ready, (self.revision, self.compacted))
        compacting: list[Op] = []
        try:
            while True:
                taken = self._take(block=not compacting)
                if taken is None:  # nothing waits: a chunk of the compaction
                    self._locked(self._compact_chunk, conn, compacting)
                    continue
                ops, stop = taken
                group: list[Op] = []
                for op in ops:
                    if op.kind == "compact":
                        compacting.append(op)
                    else:
                        group.append(op)
                if group:
                    self._locked(self._apply_group, conn, group)
                if compacting and not stop:
                    self._locked(self._compact_chunk, conn, compacting)
                if stop:
                    break
            while compacting:  # finish compaction requests that were already accepted
                self._locked(self._compact_chunk, conn, compacting)
        finally:
            conn.close()
            if self._lock_fd is not None:
                os.close(self._lock_fd)
            # Anything queued after the stop marker is refused (and anything left if the loop
            # above ended on an error).
            left, self._carry = self._carry, []
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if isinstance(item, list):
                    left.extend(item)
            for op in left:
                self._call(_set_exception, op.future, UnavailableError("store is closed"))

    def _take(self, block: bool) -> tuple[list[Op], bool] | None:
        """The next group's ops in submission order (at most MAX_GROUP; what is taken beyond that
        is carried to the next group), and whether the stop marker followed them. None when
        ``block`` is false and nothing waits."""
        ops, self._carry = self._carry, []
        stop = False
        if not ops:
            try:
                item = self._queue.get() if block else self._queue.get_nowait()
            except queue.Empty:
                return None
            if item is _STOP:
                return [], True
            assert isinstance(item, list)
            ops = item
        while len(ops) < MAX_GROUP:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                stop = True  # nothing is carried then: the marker is only read below MAX_GROUP
                break
            assert isinstance(item, list)
            ops.extend(item)
        if len(ops) > MAX_GROUP:
            self._carry = ops[MAX_GROUP:]
            del ops[MAX_GROUP:]
        return ops, stop

    def _apply_group(self, conn: sqlite3.Connection, group: list[Op]) -> None:
        results: list[WriteResult] = []
        events: list[WatchEvent] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            # The revision is read under the write lock, not kept in memory: with ``server --workers``
            # other processes commit to the same file between our groups (docs/decisions/server-workers.md).
            rev = self._sync(conn)
            current = _read_current(conn, group)
            # Decide every op in Python against the state the ops before it left, then write the
            # group's outcome with three executemany calls: a few statements per group instead of
            # three per op keeps this thread's share of the GIL small under load.
            final: dict[str, KeyValue | None] = {}
            expires: dict[str, float | None] = {}  # the key's last write in the group sets its expiry
            now = time.time()  # wall clock: an expiry must mean the same after a restart
            log_rows: list[tuple[object, ...]] = []
            for op in group:
                res, ev = _decide(op, current.get(op.key), rev + 1)
                results.append(res)
                if ev is None:
                    continue
                rev += 1
                events.append(ev)
                after = None if ev.type is EventType.DELETE else ev.kv
                current[op.key] = final[op.key] = after
                expires[op.key] = now + op.ttl if op.ttl > 0 else None
                log_rows.append(_log_row(ev))
            conn.executemany("DELETE FROM kv WHERE key = ?", [(k,) for k, kv in final.items() if kv is None])
            conn.executemany(
                "INSERT INTO kv (key, value, create_rev, mod_rev, expires_at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value, create_rev = excluded.create_rev,"
                " mod_rev = excluded.mod_rev, expires_at = excluded.expires_at",
                [(k, kv.value, kv.create_revision, kv.mod_revision, expires[k])
                 for k, kv in final.items() if kv is not None])
            conn.executemany(
                "INSERT INTO log (rev, key, deleted, value, create_rev, prev_value, prev_create_rev,"
                " prev_mod_rev) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", log_rows)
            conn.execute("COMMIT")
        except Exception as exc:
            err = map_error(exc, "write")
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            self._call(self._deliver, group, [err] * len(group), [])
            return
        self.revision = rev
        self.commits += 1
        self.writes += len(events)
        if events and self._committed is not None:
            self._committed()
        self._call(self._deliver, group, results, events)

    def _locked(self, step: Callable[[sqlite3.Connection, list[Op]], None], conn: sqlite3.Connection,
                ops: list[Op]) -> None:
        """Run one write transaction, under the workers' file lock when there are several writers.

        SQLite's own wait for a busy write lock is a sleep loop (1, 2, 5, 10 ... 100 ms between
        tries), which put tens of milliseconds on writes whenever two workers' groups met; a
        blocking ``flock`` wakes the waiter the moment the holder releases it. BEGIN IMMEDIATE
        still takes SQLite's lock (and a process that does not use this lock, ``pilothouse backup``,
        still just waits on it)."""
        if self._lock_path is None:
            step(conn, ops)
            return
        if self._lock_fd is None:
            self._lock_fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            step(conn, ops)
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _sync(self, conn: sqlite3.Connection) -> int:
        """The file's (revision, compaction point), read inside the current transaction."""
        self.revision, self.compacted = conn.execute(current_revision_sql).fetchone()
        return self.revision

    def _compact_chunk(self, conn: sqlite3.Connection, pending: list[Op]) -> None:
        """Advance the oldest pending compaction by one chunk; resolve it when done."""
        op = pending[0]
        try:
            conn.execute("BEGIN IMMEDIATE")
            target = min(op.expected, self._sync(conn))
            first = target > self.compacted
            if first:
                # Mark first: from this commit on, reads below ``target`` fail even while rows remain.
                conn.execute("UPDATE meta SET value = ? WHERE name = 'compacted'", (target,))
            cur = conn.execute(
                "DELETE FROM log WHERE rev IN (SELECT rev FROM log WHERE rev <= ? ORDER BY rev LIMIT ?)",
                (target, COMPACT_CHUNK),
            )
            done = cur.rowcount < COMPACT_CHUNK
            conn.execute("COMMIT")
        except Exception as exc:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            pending.pop(0)
            self._call(_set_exception, op.future, map_error(exc, "compact"))
            return
        if first:
            self.compacted = target
            self._call(self._on_compacted, target)
        if done:
            pending.pop(0)
            self._call(_set_result, op.future, None)


#: Bound on the number of keys in one ``IN (...)`` (SQLite's host-parameter limit is 32766).
_READ_CHUNK = 500


def _read_current(conn: sqlite3.Connection, group: list[Op]) -> dict[str, KeyValue | None]:
    """The stored state of every key the group touches, in one query per 500 keys."""
    keys = list(dict.fromkeys(op.key for op in group))
    current: dict[str, KeyValue | None] = {}
    for start in range(0, len(keys), _READ_CHUNK):
        chunk = keys[start:start + _READ_CHUNK]
        marks = ",".join("?" * len(chunk))
        for key, value, create_rev, mod_rev in conn.execute(
                f"SELECT key, value, create_rev, mod_rev FROM kv WHERE key IN ({marks})", chunk):
            current[key] = KeyValue(key, value, create_rev, mod_rev)
    return current


def _decide(op: Op, cur: KeyValue | None, rev: int) -> tuple[WriteResult, WatchEvent | None]:
    """Check ``op``'s precondition against ``cur``; the event it makes at ``rev``, or the error."""
    if op.kind == "create":
        if cur is not None:
            return KeyExistsError(f"key exists: {op.key}", key=op.key, revision=cur.mod_revision), None
        kv = KeyValue(op.key, op.value, rev, rev)
        return kv, WatchEvent(EventType.PUT, kv, None)
    if cur is None:
        return KeyNotFoundError(f"key not found: {op.key}", key=op.key), None
    if op.expected and cur.mod_revision != op.expected:
        return ConflictError(
            f"revision conflict on {op.key}: expected {op.expected}, current {cur.mod_revision}",
            key=op.key, revision=cur.mod_revision,
        ), None
    if op.kind == "update":
        kv = KeyValue(op.key, op.value, cur.create_revision, rev)
        return kv, WatchEvent(EventType.PUT, kv, cur)
    kv = KeyValue(op.key, cur.value, cur.create_revision, rev)
    return kv, WatchEvent(EventType.DELETE, kv, cur)


def _log_row(event: WatchEvent) -> tuple[object, ...]:
    kv, prev = event.kv, event.prev
    deleted = event.type is EventType.DELETE
    return (kv.mod_revision, kv.key, int(deleted), None if deleted else kv.value, kv.create_revision,
            prev.value if prev else None, prev.create_revision if prev else None,
            prev.mod_revision if prev else None)


def _set_result(fut: asyncio.Future[object], value: object) -> None:
    if not fut.done():
        fut.set_result(value)


def _set_exception(fut: asyncio.Future[object], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)
