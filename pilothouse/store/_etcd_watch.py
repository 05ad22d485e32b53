"""One Store watch backed by one etcd watch stream (``/v3/watch`` on the JSON gateway).

etcd does the fan-out across API servers: every write, through any API server, reaches every etcd
watcher, so nothing here needs to know who wrote. Each Store watch owns a reader task that drains its
HTTP stream into a bounded queue the moment etcd sends, so a consumer that does not read never makes
etcd (or anyone else) wait; when the queue overflows the watch ends with CompactedError and the client
relists, the same rule as :mod:`pilothouse.store.watchhub`.

A broken stream (member stopped, connection reset) is resumed on another member from the last
delivered revision + 1, as etcd's own clientv3 does, so a member failure is invisible to watchers.
Two guards keep that resume honest: a member whose revision is behind one already seen is not
resumed on (etcd 3.4/3.5 may replay old events out of order on a watch that starts past the member's
own revision, etcd issues 19487 and 20221), and an event below the resume revision is dropped.
Only when no member accepts a watch for ``unavailable_after`` seconds does the watch end with
UnavailableError.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from pilothouse.store._etcd_client import EtcdClient, b64, kv_from_json, prefix_end, unb64
from pilothouse.store.interface import (
    CompactedError,
    EventType,
    KeyValue,
    ListResult,
    StoreError,
    UnavailableError,
    WatcherTooSlowError,
    WatchEvent,
)

__all__ = ["EtcdWatch", "event_from_json"]


def event_from_json(ev: dict[str, Any]) -> WatchEvent:
    kv = ev.get("kv", {})
    prev_doc = ev.get("prev_kv")
    prev = kv_from_json(prev_doc) if prev_doc else None
    if ev.get("type") == "DELETE":
        # etcd's delete event has only the key and the delete revision; the interface wants the last
        # value (with its create_revision) stamped with the delete revision.
        key = unb64(kv.get("key")).decode()
        mod = int(kv.get("mod_revision", 0))
        if prev is not None:
            return WatchEvent(EventType.DELETE, KeyValue(key, prev.value, prev.create_revision, mod), prev)
        return WatchEvent(EventType.DELETE, KeyValue(key, b"", 0, mod), None)
    return WatchEvent(EventType.PUT, kv_from_json(kv), prev)


def _header_revision(msg: dict[str, Any]) -> int:
    """The serving member's revision when it sent ``msg`` (0 if absent)."""
    return int(msg.get("header", {}).get("revision", 0) or 0)


class EtcdWatch:
    """An async iterator of :class:`WatchEvent` (see the module docstring)."""

    def __init__(self, client: EtcdClient, prefix: str, start_revision: int, *,
                 snapshot: Callable[[str], Awaitable[tuple[ListResult, int]]],
                 on_compacted: Callable[[int], None], queue_size: int,
                 unavailable_after: float, on_end: Callable[[EtcdWatch], None]) -> None:
        if start_revision < 0:
            raise ValueError("start_revision must be >= 0")
        self._client = client
        self._prefix = prefix
        self._start = start_revision
        self._snapshot = snapshot
        self._on_compacted = on_compacted
        self._queue_size = max(1, queue_size)
        self._unavailable_after = unavailable_after
        self._on_end = on_end
        self._synthetic: deque[WatchEvent] = deque()
        self._live: deque[WatchEvent] = deque()
        self._wake = asyncio.Event()
        self._error: StoreError | None = None
        self._done = False
        # The highest revision known to exist in etcd (an event delivered, a response header, the
        # snapshot): a member whose revision is below it is lagging (see _stream).
        self._known = 0
        self._task: asyncio.Task[None] | None = asyncio.get_running_loop().create_task(self._run())

    def __aiter__(self) -> EtcdWatch:
        return self

    async def __anext__(self) -> WatchEvent:
        while True:
            if self._synthetic:
                return self._synthetic.popleft()
            if self._live:
                return self._live.popleft()
            if self._error is not None:
                err, self._error = self._error, None
                self._finish()
                raise err
            if self._done:
                raise StopAsyncIteration
            self._wake.clear()
            await self._wake.wait()

    async def aclose(self) -> None:
        """Stop watching (idempotent)."""
        self._finish()
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def end(self) -> None:
        """Store shutdown: the iterator returns (pending events are dropped)."""
        self._finish()
        self._synthetic.clear()
        self._live.clear()
        self._error = None

    def _finish(self) -> None:
        self._done = True
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._on_end(self)
        self._wake.set()

    def _fail(self, err: StoreError) -> None:
        if not self._done:
            self._error = err
            self._done = True
            self._wake.set()

    async def _run(self) -> None:
        try:
            if self._start == 0:
                res, raw_rev = await self._snapshot(self._prefix)
                self._synthetic.extend(WatchEvent(EventType.PUT, kv, None) for kv in res.items)
                self._wake.set()
                next_rev = raw_rev + 1
                self._known = raw_rev
            else:
                next_rev = self._start + 1
            await self._stream(next_rev)
        except StoreError as exc:
            self._fail(exc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # never let a reader task die silently
            self._fail(UnavailableError(f"etcd watch failed: {exc!r}"))

    async def _stream(self, next_rev: int) -> None:
        key = self._prefix.encode()
        request = {"create_request": {"key": b64(key or b"\0"), "range_end": b64(prefix_end(key)),
                                      "prev_kv": True}}
        failing_since: float | None = None
        loop = asyncio.get_running_loop()
        while not self._done:
            request["create_request"]["start_revision"] = str(next_rev)
            try:
                stream = await self._client.watch_stream(request)
                async with contextlib.aclosing(stream):
                    async for msg in stream:
                        failing_since = None
                        if msg.get("created") and self._member_lags(msg, next_rev):
                            # etcd (3.4/3.5, issues 19487 and 20221) may replay old events, out of
                            # order, on a watch that starts past the member's own revision. A member
                            # behind what we already delivered is such a case: wait for it to catch
                            # up (or use another member) rather than trust that stream.
                            self._client.rotate()
                            break
                        self._known = max(self._known, _header_revision(msg))
                        if int(msg.get("compact_revision", 0) or 0):
                            rev = int(msg["compact_revision"])
                            self._on_compacted(rev)
                            raise CompactedError(
                                f"required revision has been compacted (oldest available: {rev})", revision=rev)
                        if msg.get("canceled"):
                            raise UnavailableError(f"etcd canceled the watch: {msg.get('cancel_reason', '')}")
                        events = msg.get("events")
                        if not events:
                            continue
                        next_rev = self._offer_in_order(events, next_rev)
                        if self._done:
                            return
            except UnavailableError:
                if self._done:
                    return
                failing_since = failing_since or loop.time()
            except (aiohttp.ClientError, OSError, TimeoutError):
                failing_since = failing_since or loop.time()
            if self._done:
                return
            # The stream ended or broke: resume on some member from where we are.
            if failing_since is not None and loop.time() - failing_since > self._unavailable_after:
                raise UnavailableError(f"etcd watch on {self._prefix!r}: no member reachable")
            await asyncio.sleep(0.05 if failing_since is None else 0.2)
            if failing_since is None:
                failing_since = loop.time()

    def _offer_in_order(self, events: list[dict[str, Any]], next_rev: int) -> int:
        """Offer one etcd message's events; the revision to resume from afterwards.

        The contract is every event once, in revision order. An event below ``next_rev`` (or below one
        just offered) was delivered already, or is a replay from the etcd bugs noted in ``_stream``:
        drop it. Events of one revision (a transaction) always arrive in one message.
        """
        floor = next_rev
        for ev in events:
            rev = int(ev.get("kv", {}).get("mod_revision", 0))
            if rev >= floor:
                self._offer(event_from_json(ev))
                floor = rev
                next_rev = rev + 1
        return next_rev

    def _member_lags(self, created: dict[str, Any], next_rev: int) -> bool:
        """Whether the member that created this watch is behind a revision known to exist."""
        return _header_revision(created) < min(self._known, next_rev - 1)

    def _offer(self, ev: WatchEvent) -> None:
        if self._done:
            return
        if len(self._live) >= self._queue_size:
            # Too far behind: drop the backlog and end the watch (the consumer resumes or relists).
            self._live.clear()
            self._fail(WatcherTooSlowError("watcher fell too far behind and was ended",
                                      key=self._prefix))
            return
        self._live.append(ev)
        self._known = max(self._known, ev.revision)
        self._wake.set()
