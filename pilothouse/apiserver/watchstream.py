"""Serving a watch: chunked JSON events, one per line, flushed as they happen.

Semantics (see ``shared/docs/kubectl-contract.md`` §6.1): resourceVersion unset or "0" sends the
current state as ADDED first (``sendInitialEvents`` decides when given, and with bookmarks allowed a
bookmark annotated ``k8s.io/initial-events-end`` follows them); a given version sends strictly newer
changes; a compacted one ends in an ERROR event carrying a 410 Expired Status. Bookmarks only when
asked. ``timeoutSeconds`` closes the stream (clients reconnect); without it the stream stays open
(``kubectl get -w`` exits when the server closes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator
from typing import Any

import orjson
from aiohttp import web

from pilothouse.apiserver import codec, disconnects, options, requestlimits
from pilothouse.apiserver.metrics import TERMINATED_WATCHERS
from pilothouse.apiserver.objects import bookmark_object
from pilothouse.apiserver.registry import ResourceStorage, WatchEvent
from pilothouse.machinery import tables
from pilothouse.machinery.query import flag, send_initial_events
from pilothouse.machinery.selectors import FieldSelector
from pilothouse.store.interface import WatcherTooSlowError

__all__ = ["STALL_TIMEOUT", "WATCH_BUFFER", "serve"]

log = logging.getLogger("pilothouse.apiserver.watch")

#: How often an idle watch that asked for bookmarks gets one.
BOOKMARK_INTERVAL = 30.0
#: Events buffered per watcher between the store and the client's socket.
WATCH_BUFFER = 64
#: How long a watcher's buffer may stay full before the watch is closed as unresponsive.
STALL_TIMEOUT = 5.0
#: Bytes of queued events written in one chunk, at most (one more event may pass it).
BATCH_BYTES = 256 * 1024
#: A busy stream sends at most one chunk per this many seconds; an idle one sends at once. The
#: node lifecycle controller's Lease informer gets every renewal of every node, one at a time (500 a
#: second at 5,000 nodes): a chunk each was a TLS record and a send on the server and a read and a
#: wake-up in the informer, per event. kube-apiserver flushes when its queue is empty, as this did;
#: this holds a trickle of events for at most 10 ms to send them together (docs/decisions/density.md).
FLUSH_INTERVAL = 0.010


async def serve(request: web.Request, storage: ResourceStorage, namespace: str | None,
                name: str = "") -> web.StreamResponse:
    # timeoutSeconds, else a randomised --min-request-timeout: no watch lives forever.
    timeout = requestlimits.watch_timeout(request) or None
    list_options = options.list_options(request.query, storage.resource)
    if name:
        # GET .../watch/.../pods/x (the deprecated watch paths) is a watch of that one name.
        list_options.field_selector = FieldSelector(
            (*list_options.field_selector.terms, ("metadata.name", "=", name)))
    send_initial = send_initial_events(request.query)
    bookmarks = flag(request.query, "allowWatchBookmarks")
    as_table = codec.wants_table(request)
    include_object = request.query.get("includeObject", "Metadata")
    resource = storage.resource

    # A bad resourceVersion, field label or option combination was refused above, before any byte
    # of the stream: the watch generator only runs once the response has started.
    events = storage.watch(namespace, list_options, send_initial, initial_events_end=send_initial and bookmarks)
    response = web.StreamResponse(status=200)
    response.content_type = "application/json"
    response.enable_chunked_encoding()
    await response.prepare(request)

    last_revision = list_options.resource_version or "0"
    # Bounded: a client that stops reading fills the socket, then this queue; the pump then gives it
    # STALL_TIMEOUT and closes the watch (see _pump), so no watcher holds more than this much here.
    queue: asyncio.Queue[WatchEvent | None] = asyncio.Queue(maxsize=WATCH_BUFFER)
    pump_task = asyncio.create_task(_pump(events, queue, request, resource.group, resource.plural))
    sent_headers = False
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout if timeout else None
    # Spread bookmarks so many watchers do not all wake at once.
    next_bookmark = loop.time() + BOOKMARK_INTERVAL * random.uniform(0.5, 1.0)
    # One timer per watch for its next moment (the deadline or the next bookmark), moved only when
    # that moment moves (a bookmark sent), not one per event: most of a kubelet's and an informer's
    # events reach an empty queue, and a timer each (asyncio.timeout: a handle pushed on the loop's
    # heap and cancelled) was ~2% of the server's CPU per Lease renewal (bench/lease_renewal.py).
    # When it rings it queues _TICK; a tick lost to a full queue is made up at the next wait.
    alarm = _Alarm(loop, queue)
    last_flush = -FLUSH_INTERVAL
    try:
        while True:
            now = loop.time()
            if deadline is not None and deadline <= now:
                break
            wake_at = deadline
            if bookmarks:
                wake_at = next_bookmark if wake_at is None else min(wake_at, next_bookmark)
            if not queue.empty():
                event = queue.get_nowait()  # no wait for an event already here (most of them, under load)
            else:
                if wake_at is not None:
                    alarm.set(wake_at)
                event = await queue.get()
            if event is _TICK:
                if bookmarks and loop.time() >= next_bookmark:
                    await _write(response, _bookmark(resource.kind, resource.api_version, last_revision))
                    next_bookmark = loop.time() + BOOKMARK_INTERVAL
                continue
            if event is None:
                break
            if as_table and event.type not in ("ERROR", "BOOKMARK"):
                last_revision = event.object["metadata"].get("resourceVersion", last_revision)
                # Column definitions travel with the first event only, as kube-apiserver does.
                body = tables.to_table(resource.group, resource.kind, [event.object],
                                       include_object=include_object, no_headers=sent_headers,
                                       printer=resource.printer)
                sent_headers = True
                await _write(response, {"type": event.type, "object": body})
                continue
            # A trickle (one event, nothing behind it) on a stream that sent less than FLUSH_INTERVAL
            # ago waits out the rest of the interval, so what comes meanwhile shares its chunk.
            if queue.empty() and event.type != "ERROR" and not as_table:
                wait = last_flush + FLUSH_INTERVAL - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
            # The events already queued go out in one chunk (one send, not one per event), in order:
            # an informer's watch gets them in bursts under load. The stream is the same lines.
            batch = [event]
            size = len(event.json)
            ended = False
            while not as_table and event.type != "ERROR" and size < BATCH_BYTES and not queue.empty():
                queued = queue.get_nowait()
                if queued is _TICK:
                    continue  # the next wait re-arms the alarm, already due: the bookmark is not lost
                if queued is None:
                    ended = True
                    break
                event = queued
                batch.append(event)
                size += len(event.json)
            for sent in reversed(batch):
                if sent.type != "ERROR":
                    last_revision = _revision_of(sent.json, last_revision)
                    break
            await response.write(b"".join(b'{"type":"' + e.type.encode() + b'","object":' + e.json + b"}\n"
                                          for e in batch))
            last_flush = loop.time()
            if ended or event.type == "ERROR":
                break
        if bookmarks and deadline is not None:
            # A closing bookmark lets an informer resume exactly where it stopped.
            await _write(response, _bookmark(resource.kind, resource.api_version, last_revision))
    except ConnectionResetError:
        pass
    except asyncio.CancelledError as cancelled:
        # the server cancels the handler of a client that closed its connection (serve.py)
        if disconnects.client_gone(request):
            disconnects.count(request, cancelled, "watch")
    finally:
        alarm.cancel()
        pump_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await pump_task
        with contextlib.suppress(Exception):
            await events.aclose()  # type: ignore[attr-defined]
    with contextlib.suppress(ConnectionResetError, Exception):
        await response.write_eof()
    return response


#: What the alarm queues when the watch's next moment (deadline, bookmark) comes: never sent.
_TICK = WatchEvent("TICK")


class _Alarm:
    """The one timer of a watch: queues :data:`_TICK` at the moment last set."""

    __slots__ = ("_at", "_handle", "_loop", "_queue")

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[WatchEvent | None]) -> None:
        self._loop = loop
        self._queue = queue
        self._handle: asyncio.TimerHandle | None = None
        self._at = 0.0

    def set(self, when: float) -> None:
        """Ring at ``when`` (loop time): a timer only if none is pending for that moment."""
        if self._handle is not None:
            if self._at == when:
                return
            self._handle.cancel()
        self._at = when
        self._handle = self._loop.call_at(when, self._ring)

    def _ring(self) -> None:
        self._handle = None
        if not self._queue.full():
            self._queue.put_nowait(_TICK)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


async def _pump(events: AsyncIterator[WatchEvent], queue: asyncio.Queue[WatchEvent | None],
                request: web.Request, group: str, plural: str) -> None:
    """Move events from the store to the sender. A client that stops reading is cut off, as
    kube-apiserver's cacher does ("Forcing watcher close due to unresponsiveness"): waiting for it
    would keep every event since in memory, per watcher (1,000 such watchers grew the server by
    1.5 GB). The connection is aborted, which also drops what the socket buffers hold; the client
    sees the stream end and re-watches from its last resourceVersion, or relists."""
    async def offer(item: WatchEvent | None) -> bool:
        if not queue.full():
            queue.put_nowait(item)
            return True
        try:
            await asyncio.wait_for(queue.put(item), STALL_TIMEOUT)
            return True
        except TimeoutError:
            _forced_close(group, plural, f"len(input) = {queue.qsize()}")
            if request.transport is not None:
                request.transport.abort()
            return False

    try:
        async for event in events:
            if not await offer(event):
                return
    except WatcherTooSlowError:
        # The store's queue for this watcher overflowed (this loop fell behind the writes). Ended
        # without an ERROR event, as the cacher ends such a watcher: the client watches again from
        # the last resourceVersion it got, served from history. A 410 here made every informer of
        # all pods relist 150,000 of them, which kept it behind (issue 16, docs/decisions/density.md).
        _forced_close(group, plural, "its store queue overflowed")
    except Exception:  # a bug below: end this stream (the client re-watches), keep serving the rest
        log.exception("watch of %s failed", plural)
    await offer(None)  # the end of the stream (the store closed it): the sender finishes and returns


def _forced_close(group: str, plural: str, detail: str) -> None:
    """kube-apiserver's log line and metric for a watcher it ends for being unresponsive."""
    log.warning("Forcing %s watcher close due to unresponsiveness: %s", f"{plural}.{group}" if group else plural,
                detail)
    TERMINATED_WATCHERS.labels(group, plural).inc()


def _revision_of(json: bytes, default: str) -> str:
    """The resourceVersion from an event's JSON, as spliced in by ``stored_json`` (no decoding)."""
    marker = b'"resourceVersion":"'
    start = json.find(marker)
    if start < 0:
        return default
    start += len(marker)
    return json[start:json.index(b'"', start)].decode()


def _bookmark(kind: str, api_version: str, revision: str) -> dict[str, Any]:
    return {"type": "BOOKMARK", "object": bookmark_object(kind, api_version, revision)}


async def _write(response: web.StreamResponse, event: dict[str, Any]) -> None:
    await response.write(orjson.dumps(event) + b"\n")
