"""The embedded store: one SQLite file, for single-node clusters and tests.

Pieces (see each module's docstring for the why):

* writes → :mod:`pilothouse.store._sqlite_writer`: a single writer thread doing group commit
  (WAL, ``synchronous=FULL``, one fsync per group, preconditions checked in order inside the group);
* schema → :mod:`pilothouse.store._sqlite_schema`: current state ``kv`` + history ``log``;
* watches → :mod:`pilothouse.store.watchhub`: in-memory fan-out with a ring of recent events, history
  from the ``log`` table for older resumptions;
* reads → here, on connections separate from the writer's (WAL lets readers run concurrently with the
  writer and gives each read transaction a consistent snapshot).

Read placement: ``get`` and ``current_revision`` run inline on the event loop on a dedicated read
connection. A primary-key lookup costs ~10-20 µs, several times less than a hop to a worker thread
and back (~60-100 µs, measured), and WAL readers never wait for the writer, so they cannot stall the
loop. ``list``, ``count`` and history reads may touch thousands of rows, so they run in a small thread
pool, each worker with its own connection.

Background compaction mirrors the Kubernetes API server's compactor (every 5 minutes by default, it
compacts to the revision it saw at the previous tick, i.e. keeps roughly one interval of history);
``history_window`` additionally keeps at least that many recent revisions.

Keys written with a TTL (``Store.create(..., ttl=)``: kube-apiserver's Events) carry their expiry in
``kv.expires_at``; a sweeper every ``sweep_interval`` seconds reads the expired ones through that
column's index and deletes them as ordinary conditional deletes through the writer, a bounded batch
at a time: watchers see DELETED in revision order, and a key renewed (written again) between the read
and its delete fails the delete's precondition and lives on. This is k3s/kine's emulation of etcd's
leases on SQL; with ``server --workers`` only the leader sweeps.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from pilothouse.store._sqlite_peers import POLL_INTERVAL, LogTail, PeerChannel
from pilothouse.store._sqlite_schema import (
    EVENT_COLUMNS,
    INDEXED_FIELDS,
    connect,
    current_revision_sql,
    event_from_row,
    map_error,
    prefix_end,
)
from pilothouse.store._sqlite_writer import Op, OpKind, Writer, WriteResult
from pilothouse.store.interface import (
    ConflictError,
    FutureRevisionError,
    KeyNotFoundError,
    KeyValue,
    ListIndex,
    ListResult,
    StoreError,
    UnavailableError,
    WatchEvent,
    WatchTrigger,
)
from pilothouse.store.watchhub import Watch, WatchHub, compacted_error

__all__ = ["SQLiteStore"]

T = TypeVar("T")
log = logging.getLogger("pilothouse.store.sqlite")

#: Expired keys deleted per sweep batch: one read of the index and (about) one group commit.
SWEEP_BATCH = 500


class SQLiteStore:
    """A :class:`~pilothouse.store.interface.Store` in one SQLite file."""

    def __init__(self, path: str | os.PathLike[str], *, compact_interval: float | None = 300.0,
                 history_window: int = 0, ring_size: int = 4096, watch_queue_size: int = 10000,
                 read_threads: int = 2, workers: int = 1, worker_index: int = 0,
                 sweep_interval: float | None = 1.0) -> None:
        self.path = os.fspath(path)
        #: ``server --workers``: this process is worker ``worker_index`` of ``workers`` over the file.
        self.workers, self.worker_index = workers, worker_index
        self._peers: PeerChannel | None = None
        self._tail: LogTail | None = None
        self._poller: asyncio.Task[None] | None = None
        self.compact_interval = compact_interval
        self.history_window = history_window
        self._read_threads = read_threads
        self._hub = WatchHub(load_history=self._load_history, load_snapshot=self._load_snapshot,
                             ring_size=ring_size, queue_size=watch_queue_size)
        self._writer: Writer | None = None
        self._reader: sqlite3.Connection | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._pool_conns: list[sqlite3.Connection] = []
        self._pool_lock = threading.Lock()
        self._compactor: asyncio.Task[None] | None = None
        #: Seconds between sweeps of expired keys (None or 0: never; tests sweep by hand).
        self.sweep_interval = sweep_interval
        self._sweeper: asyncio.Task[None] | None = None
        self._closed = False

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        if self._writer is not None:
            raise RuntimeError("SQLiteStore.start() called twice")
        loop = asyncio.get_running_loop()
        directory = os.path.dirname(os.path.abspath(self.path))
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as exc:
            raise UnavailableError(f"cannot create {directory}: {exc}") from exc
        if self.workers > 1:
            self._peers = PeerChannel(self.path, self.worker_index, self.workers)
        self._writer = Writer(self.path, loop, self._deliver, self._hub.compacted_to,
                              self._peers.notify if self._peers is not None else None,
                              self.path + "-writer.lock" if self._peers is not None else None)
        revision, compacted = await self._writer.start()  # creates the schema before readers open
        self._hub.reset(revision, compacted)
        try:
            self._reader = connect(self.path, readonly=True)
        except sqlite3.Error as exc:
            await self._writer.stop()
            raise map_error(exc, "open") from exc
        if self._peers is not None:
            self._follow_siblings(loop, self._peers)
        self._pool = ThreadPoolExecutor(max_workers=self._read_threads, thread_name_prefix="sqlite-read")
        if self.compact_interval and self.compact_interval > 0:
            self._compactor = loop.create_task(self._compact_loop(self.compact_interval))
        if self.sweep_interval and self.sweep_interval > 0:
            self._sweeper = loop.create_task(self._sweep_loop(self.sweep_interval), name="sqlite-ttl-sweep")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._hub.close()
        if self._peers is not None:
            self._peers.close(asyncio.get_running_loop())
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        for task in (self._compactor, self._sweeper):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._writer is not None:
            await self._writer.stop()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        with self._pool_lock:
            conns, self._pool_conns = self._pool_conns, []
        if self._reader is not None:
            conns.append(self._reader)
            self._reader = None
        for conn in conns:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    async def __aenter__(self) -> SQLiteStore:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- reads --------------------------------------------------------------------------------

    def _inline(self) -> sqlite3.Connection:
        if self._closed or self._reader is None:
            raise UnavailableError("store is closed" if self._closed else "store not started")
        return self._reader

    def _thread_conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path, readonly=True)
            self._local.conn = conn
            with self._pool_lock:
                self._pool_conns.append(conn)
        return conn

    async def _in_thread(self, fn: Callable[[sqlite3.Connection], T], what: str) -> T:
        if self._closed or self._pool is None:
            raise UnavailableError("store is closed" if self._closed else "store not started")

        def run() -> T:
            conn = self._thread_conn()
            try:
                return fn(conn)
            except BaseException:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise

        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, run)
        except StoreError:
            raise
        except RuntimeError as exc:  # executor shut down under us
            raise UnavailableError("store is closed") from exc
        except Exception as exc:
            raise map_error(exc, what) from exc

    async def current_revision(self) -> int:
        try:
            row = self._inline().execute(current_revision_sql).fetchone()
        except sqlite3.Error as exc:
            raise map_error(exc, "read") from exc
        return int(row[0])

    async def get(self, key: str) -> KeyValue | None:
        try:
            row = self._inline().execute(
                "SELECT value, create_rev, mod_rev FROM kv WHERE key = ?", (key,)
            ).fetchone()
        except sqlite3.Error as exc:
            raise map_error(exc, "read") from exc
        return None if row is None else KeyValue(key, row[0], row[1], row[2])

    async def list(self, prefix: str, *, limit: int = 0, start_after: str = "",
                   revision: int = 0, index: ListIndex | None = None) -> ListResult:
        if limit < 0 or revision < 0:
            raise ValueError("limit and revision must be >= 0")
        column = None if index is None else INDEXED_FIELDS.get(index.field)
        term = None if column is None or index is None else (column, index.value)
        return await self._in_thread(
            lambda conn: _list(conn, prefix, limit, start_after, revision, term), "list"
        )

    async def count(self, prefix: str) -> int:
        def run(conn: sqlite3.Connection) -> int:
            end = prefix_end(prefix)
            if end is None:
                return int(conn.execute("SELECT count(*) FROM kv WHERE key >= ?", (prefix,)).fetchone()[0])
            return int(conn.execute("SELECT count(*) FROM kv WHERE key >= ? AND key < ?",
                                    (prefix, end)).fetchone()[0])

        return await self._in_thread(run, "count")

    async def compacted_revision(self) -> int:
        return self._hub.compacted

    def write_stats(self) -> tuple[int, int]:
        """(commits, writes) since start: writes / commits is the mean group-commit size."""
        if self._writer is None:
            return 0, 0
        return self._writer.commits, self._writer.writes

    # --- writes -------------------------------------------------------------------------------

    async def _write(self, kind: OpKind, key: str, value: bytes, expected: int, ttl: int = 0) -> KeyValue | None:
        if self._writer is None:
            raise UnavailableError("store not started")
        fut: asyncio.Future[KeyValue | None] = asyncio.get_running_loop().create_future()
        # Mark a failure as retrieved even if the caller was cancelled and never looks at it.
        fut.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._writer.submit(Op(kind, key, value, expected, fut, ttl))
        # The writer commits whether or not the caller stays: shield so a cancelled caller does not
        # turn a committed write into an unobserved exception.
        return await asyncio.shield(fut)

    async def create(self, key: str, value: bytes, *, ttl: int = 0) -> KeyValue:
        kv = await self._write("create", key, value, 0, ttl)
        assert kv is not None
        return kv

    async def update(self, key: str, value: bytes, *, expected_mod_revision: int, ttl: int = 0) -> KeyValue:
        kv = await self._write("update", key, value, expected_mod_revision, ttl)
        assert kv is not None
        return kv

    async def delete(self, key: str, *, expected_mod_revision: int = 0) -> KeyValue:
        kv = await self._write("delete", key, b"", expected_mod_revision)
        assert kv is not None
        return kv

    async def sweep_expired(self, now: float | None = None) -> int:
        """Delete the keys whose TTL ran out by ``now`` (default: the wall clock), in batches of
        :data:`SWEEP_BATCH`; returns how many were deleted. A key written again since the read keeps
        living (its delete's mod_revision precondition fails)."""
        swept = 0
        while True:
            try:
                rows = self._inline().execute(
                    "SELECT key, mod_rev FROM kv WHERE expires_at <= ? ORDER BY expires_at LIMIT ?",
                    (time.time() if now is None else now, SWEEP_BATCH)).fetchall()
            except sqlite3.Error as exc:
                raise map_error(exc, "read") from exc
            # Submitted together, so the writer commits the batch as one group.
            results = await asyncio.gather(*(self.delete(key, expected_mod_revision=rev) for key, rev in rows),
                                           return_exceptions=True)
            for result in results:
                if isinstance(result, KeyValue):
                    swept += 1
                elif not isinstance(result, (ConflictError, KeyNotFoundError)):  # those: renewed or gone
                    raise result
            if len(rows) < SWEEP_BATCH:
                return swept

    async def _sweep_loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                swept = await self.sweep_expired()
            except StoreError as exc:  # disk full, closing: the next tick tries again
                log.warning("deleting expired keys failed: %s", exc)
                continue
            if swept:
                log.debug("deleted %d expired keys", swept)

    async def compact(self, revision: int) -> None:
        if revision <= 0:
            return
        await self._write("compact", "", b"", revision)

    def _deliver(self, ops: builtins.list[Op], results: builtins.list[WriteResult],
                 events: builtins.list[WatchEvent]) -> None:
        # Runs on the loop after COMMIT: publish first, so a caller that starts a watch right after
        # its write returned never misses that write.
        if self._tail is not None:
            self._tail.committed(events)
        else:
            self._hub.publish(events)
        for op, res in zip(ops, results, strict=True):
            if op.future.done():
                continue
            if isinstance(res, StoreError):
                op.future.set_exception(res)
            else:
                op.future.set_result(res)

    # --- siblings (server --workers) -----------------------------------------------------------

    def _follow_siblings(self, loop: asyncio.AbstractEventLoop, peers: PeerChannel) -> None:
        hub = self._hub
        self._tail = LogTail(self._inline, lambda: hub.revision, hub.publish, hub.compacted_to, hub.skip_to)
        peers.listen(loop, self._catch_up)
        self._poller = loop.create_task(self._poll(), name="sqlite-sibling-poll")
        self._catch_up()

    def _catch_up(self) -> None:
        if self._tail is None or self._closed:
            return
        try:
            # A sibling's burst is read a chunk per turn of the loop, so requests are served between.
            more = self._tail.catch_up(chunks=1)
        except sqlite3.Error as exc:  # the next wake-up or poll tries again
            log.warning("reading the siblings' writes failed: %s", exc)
            return
        if more:
            asyncio.get_running_loop().call_soon(self._catch_up)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(POLL_INTERVAL)
            self._catch_up()

    # --- watch & compaction -------------------------------------------------------------------

    def watch(self, prefix: str, start_revision: int, trigger: WatchTrigger | None = None) -> Watch:
        """See the Store protocol; ``start_revision`` 0 emits the current state first, ``trigger``
        narrows the live fan-out (watchhub)."""
        return self._hub.watch(prefix, start_revision, trigger)

    async def _load_history(self, prefix: str, after: int, upto: int, limit: int,
                            trigger: WatchTrigger | None) -> builtins.list[WatchEvent]:
        column = None if trigger is None or trigger.field is None else INDEXED_FIELDS.get(trigger.field)
        term = None if column is None or trigger is None else (column, trigger.value)
        return await self._in_thread(lambda conn: _history(conn, prefix, after, upto, limit, term), "watch")

    async def _load_snapshot(self, prefix: str) -> ListResult:
        return await self.list(prefix)

    async def _compact_loop(self, interval: float) -> None:
        previous = 0
        while True:
            await asyncio.sleep(interval)
            try:
                current = await self.current_revision()
                target = previous
                if self.history_window > 0:
                    target = min(target, current - self.history_window)
                if target > self._hub.compacted:
                    await self.compact(target)
                previous = current
            except StoreError:
                continue  # transient (disk); try again next tick


def _snapshot_revision(conn: sqlite3.Connection) -> tuple[int, int]:
    row = conn.execute(current_revision_sql).fetchone()
    return int(row[0]), int(row[1])


def _list(conn: sqlite3.Connection, prefix: str, limit: int, start_after: str,
          revision: int, term: tuple[str, str] | None = None) -> ListResult:
    """``term``: (indexed column, value) to read only the rows holding that value (its index is
    ordered by (value, key), so pages stay in key order and cost what they return)."""
    conn.execute("BEGIN")  # one snapshot for the revision and the rows
    try:
        current, compacted = _snapshot_revision(conn)
        if revision and revision < compacted:
            raise compacted_error(compacted)
        if revision > current:
            raise FutureRevisionError(f"required revision {revision} is a future revision "
                                      f"(current {current})", revision=current)
        lo, lo_op = (start_after, ">") if start_after >= prefix else (prefix, ">=")
        end = prefix_end(prefix)
        where = f"key {lo_op} ?" + ("" if end is None else " AND key < ?")
        args: list[object] = [lo] if end is None else [lo, end]
        n = limit + 1 if limit else -1
        # The column name comes from INDEXED_FIELDS, never from the caller's text.
        kv_where, kv_args = (where, args) if term is None else (f"{term[0]} = ? AND {where}", [term[1], *args])
        if not revision or revision == current:
            rows = conn.execute(
                f"SELECT key, value, create_rev, mod_rev FROM kv WHERE {kv_where} ORDER BY key LIMIT ?",
                [*kv_args, n],
            ).fetchall()
            revision = current
        else:
            rows = _rows_at(conn, (where, args), (kv_where, kv_args), revision, n)
    finally:
        conn.execute("COMMIT")
    more = bool(limit) and len(rows) > limit
    if more:
        rows = rows[:limit]
    return ListResult([KeyValue(r[0], r[1], r[2], r[3]) for r in rows], revision, more)


def _rows_at(conn: sqlite3.Connection, keys: tuple[str, list[object]], current: tuple[str, list[object]],
             revision: int, n: int) -> list[tuple[str, bytes, int, int]]:
    """The first ``n`` (-1: all) rows of the range as of past ``revision`` R, in key order.

    State at R = the current rows of keys unchanged since R, plus the value before the first change
    after R of each key changed since (absent if that change created it). The changed keys are found
    from the log's revisions after R (the rowid range: the writes since the list began, a few
    thousand at most) rather than from every log row of the range, which made each page of a
    150,000-pod list paged under writes scan the history of the whole rest of the list. The current
    rows are read until n unchanged ones are in hand; only the changed keys below the last of those
    can be among the first n, so only their old values are read.

    ``keys`` is the key range's condition, ``current`` the condition on current rows (the range, or
    the range and an indexed value). With an index, the changed keys' old values are returned
    whatever their value: more than asked, never fewer (a key's value at R may differ from its
    current one), and the caller filters exactly."""
    where, args = keys
    changed = dict(conn.execute(
        f"SELECT key, min(rev) FROM log NOT INDEXED WHERE rev > ? AND {where} GROUP BY key",
        [revision, *args],
    ).fetchall())
    rows: list[tuple[str, bytes, int, int]] = []
    bound: str | None = None
    cursor = conn.execute(f"SELECT key, value, create_rev, mod_rev FROM kv WHERE {current[0]} ORDER BY key",
                          current[1])
    for row in cursor:
        if row[0] in changed:
            continue
        rows.append(row)
        if len(rows) == n:
            bound = row[0]
            break
    cursor.close()
    firsts = [rev for key, rev in changed.items() if bound is None or key < bound]
    for start in range(0, len(firsts), 500):
        chunk = firsts[start:start + 500]
        rows += conn.execute(
            f"SELECT key, prev_value, prev_create_rev, prev_mod_rev FROM log"
            f" WHERE rev IN ({','.join('?' * len(chunk))}) AND prev_mod_rev IS NOT NULL", chunk,
        ).fetchall()
    rows.sort(key=lambda row: row[0])
    return rows[:n] if n >= 0 else rows


def _history(conn: sqlite3.Connection, prefix: str, after: int, upto: int, limit: int,
             term: tuple[str, str] | None = None) -> list[WatchEvent]:
    """``term``: (indexed column, value) to read only the events whose new or previous value holds
    that value, through the ``log`` indexes on the column and ``prev_`` column (``_sqlite_schema``)."""
    conn.execute("BEGIN")
    try:
        _, compacted = _snapshot_revision(conn)
        if after < compacted:
            raise compacted_error(compacted)
        end = prefix_end(prefix)
        key_filter = "key >= ?" + ("" if end is None else " AND key < ?")
        args: list[object] = [prefix] if end is None else [prefix, end]
        if term is None:
            rows = conn.execute(
                f"SELECT {EVENT_COLUMNS} FROM log WHERE rev > ? AND rev <= ? AND {key_filter} "
                f"ORDER BY rev LIMIT ?",
                [after, upto, *args, limit],
            ).fetchall()
        else:
            column, value = term
            # Two index range reads (SQLite's OR optimisation), then the key range and the order.
            rows = conn.execute(
                f"SELECT {EVENT_COLUMNS} FROM log WHERE"
                f" (({column} = ? AND rev > ? AND rev <= ?) OR (prev_{column} = ? AND rev > ? AND rev <= ?))"
                f" AND {key_filter} ORDER BY rev LIMIT ?",
                [value, after, upto, value, after, upto, *args, limit],
            ).fetchall()
    finally:
        conn.execute("COMMIT")
    return [event_from_row(r) for r in rows]
