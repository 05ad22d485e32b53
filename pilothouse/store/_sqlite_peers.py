"""Several processes over one SQLite file: each follows the others' commits (``server --workers N``).

The kine/k3s way (docs/decisions/server-workers.md). Every worker writes through its own transactions;
SQLite serialises writers and each transaction reads the revision under the write lock, so
revisions are dense and committed in order. Each worker feeds its own watch hub from the ``log``
table: ``rev > last published``, in order, which can neither skip nor repeat an event. What is new
here is only how a worker learns that a sibling committed:

* a wake-up: after each commit the writer thread sends one empty datagram to every sibling's Unix
  datagram socket (abstract namespace, named after the database file and the worker's index, so
  nothing is left on disk and no path length limit applies);
* a fallback poll (every ``POLL_INTERVAL``), so a lost datagram (a full socket buffer, a sibling
  restarting) only delays events, never loses them.

A worker's own commits need no read: the writer hands them over and they are published directly
when they follow the last published revision; otherwise the missing revisions are read first.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import socket
import sqlite3
from collections.abc import Callable

from pilothouse.store._sqlite_schema import EVENT_COLUMNS, current_revision_sql, event_from_row
from pilothouse.store.interface import WatchEvent

__all__ = ["POLL_INTERVAL", "LogTail", "PeerChannel"]

log = logging.getLogger("pilothouse.store.peers")

#: Seconds between polls of the log when no wake-up came (the fallback only).
POLL_INTERVAL = 0.5
#: Log rows read per query while catching up (a burst of siblings' writes is read in pieces).
_CHUNK = 1000


def _address(path: str, index: int) -> str:
    digest = hashlib.sha256(os.path.abspath(path).encode()).hexdigest()[:16]
    return f"\0pilothouse-store-{digest}-{index}"


class PeerChannel:
    """The wake-ups between the ``count`` workers of one database file; this one is ``index``."""

    def __init__(self, path: str, index: int, count: int) -> None:
        self._own = _address(path, index)
        self._siblings = [_address(path, i) for i in range(count) if i != index]
        self._recv: socket.socket | None = None
        self._send = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._send.setblocking(False)

    def notify(self) -> None:
        """Wake every sibling (from the writer thread). A sibling that is down or already has a
        wake-up queued (EAGAIN) loses nothing: it reads everything after its last revision."""
        for address in self._siblings:
            with contextlib.suppress(OSError):
                self._send.sendto(b"", address)

    def listen(self, loop: asyncio.AbstractEventLoop, woken: Callable[[], None]) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.bind(self._own)
        self._recv = sock

        def readable() -> None:
            with contextlib.suppress(OSError):
                while sock.recv(16, socket.MSG_DONTWAIT) is not None:
                    pass  # drain: one catch-up serves every wake-up queued so far
            woken()

        loop.add_reader(sock.fileno(), readable)

    def close(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._recv is not None:
            with contextlib.suppress(Exception):
                loop.remove_reader(self._recv.fileno())
            self._recv.close()
            self._recv = None
        self._send.close()


class LogTail:
    """Publishes the log to a watch hub in revision order, from this worker's commits and the file.

    ``publish(events)`` is the hub's; ``revision()`` is the last revision it holds; ``compacted_to``
    tells the hub about a sibling's compaction; ``lost`` ends every watcher when revisions went
    missing (compacted before this worker read them: a worker stalled for a compaction interval).
    """

    def __init__(self, conn: Callable[[], sqlite3.Connection], revision: Callable[[], int],
                 publish: Callable[[list[WatchEvent]], None], compacted_to: Callable[[int], None],
                 lost: Callable[[int], None]) -> None:
        self._conn = conn
        self._revision = revision
        self._publish = publish
        self._compacted_to = compacted_to
        self._lost = lost
        #: Revisions read from the file and published (as opposed to handed over by our writer).
        self.read = 0

    def committed(self, events: list[WatchEvent]) -> None:
        """This worker's writer committed ``events`` (dense, ascending): publish, reading first any
        sibling's revisions in between."""
        if not events:
            return
        if events[0].revision > self._revision() + 1:
            self.catch_up(events[0].revision - 1)
        last = self._revision()
        fresh = [ev for ev in events if ev.revision > last]
        if fresh:
            self._publish(fresh)

    def catch_up(self, upto: int = 0, chunks: int = 0) -> bool:
        """Publish every logged revision after the hub's (up to ``upto``, 0: all; at most ``chunks``
        reads of ``_CHUNK`` rows, 0: no limit); True when rows are left. Runs on the event loop: the
        rows are a primary-key range after a known revision."""
        conn = self._conn()
        _, compacted = conn.execute(current_revision_sql).fetchone()
        self._compacted_to(int(compacted))
        while True:
            after = self._revision()
            if upto and after >= upto:
                return False
            rows = conn.execute(
                f"SELECT {EVENT_COLUMNS} FROM log WHERE rev > ?{' AND rev <= ?' if upto else ''}"
                f" ORDER BY rev LIMIT {_CHUNK}", (after, upto) if upto else (after,)).fetchall()
            if not rows:
                return False
            events = [event_from_row(row) for row in rows]
            if events[0].revision != after + 1:
                # Compacted away before we read it: our watchers cannot be told what happened.
                log.error("watch events %d..%d were compacted before this worker read them; ending "
                          "its watches (clients relist)", after + 1, events[0].revision - 1)
                self._lost(events[0].revision - 1)
            self.read += len(events)
            self._publish(events)
            if len(rows) < _CHUNK:
                return False
            chunks -= 1
            if chunks == 0:
                return True
