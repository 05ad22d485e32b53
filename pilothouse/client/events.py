"""Recording Kubernetes Events, as client-go's two recorders do.

``EventRecorder`` writes core/v1 Events the way ``tools/record`` does: every event goes through an
:class:`EventCorrelator` (``events_cache.go``) before it is written, so

* an event identical to one already written (same source, object, type, reason and message) becomes a
  strategic-merge PATCH of the first one's ``count``, ``lastTimestamp`` and ``message``;
* more than 10 events about one object with the same reason but different messages within 10 minutes
  are folded into one Event whose message starts ``(combined from similar events): ``;
* each source may record 25 events about one object in a burst, then one every 5 minutes (a token
  bucket per source and object), so a pod that is always unhealthy cannot flood the store.

``SeriesRecorder`` writes events.k8s.io/v1 Events the way ``tools/events``' broadcaster does (what
kube-scheduler uses): a repeat of an isomorphic event turns the first one into a ``series``
(``count`` 2 written at once; later counts are kept in memory and written when the series has been
quiet for 6 minutes, or every 30 minutes while it goes on).

Both write from one task each, in order, as client-go's broadcaster delivers to one sink goroutine:
a PATCH of a count can never overtake the create it updates. Recording never raises: an event is
best-effort information, never a reason for a component to fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import cachetools
import orjson

from pilothouse.client import errors
from pilothouse.client.rest import APIClient, resource
from pilothouse.machinery import meta
from pilothouse.machinery.jsonbytes import dumps_kept
from pilothouse.machinery.meta import Object

__all__ = ["Correlated", "EventCorrelator", "EventRecorder", "SeriesRecorder", "object_reference"]

log = logging.getLogger("pilothouse.client.events")

Clock = Callable[[], float]

_EVENTS = resource("", "v1", "events")
_EVENTS_V1 = resource("events.k8s.io", "v1", "events")

# client-go's tools/record/events_cache.go defaults.
LRU_ENTRIES = 4096
AGGREGATE_MAX_EVENTS = 10
AGGREGATE_INTERVAL = 600.0
SPAM_BURST = 25
SPAM_QPS = 1.0 / 300.0
# tools/record/event.go: the queue between callers and the sink, and retries of an unreachable server.
MAX_QUEUED_EVENTS = 1000
#: events.k8s.io writes in flight at once (upstream: one goroutine per event, bounded by the client's QPS)
SERIES_WRITERS = 16
MAX_TRIES = 12
RETRY_SLEEP = 10.0
#: how long a flush (shutdown, tests) waits for the queued writes
FLUSH_TIMEOUT = 10.0
# tools/events/event_broadcaster.go
SERIES_FINISH = 6 * 60.0
SERIES_REFRESH = 30 * 60.0
SERIES_CACHE_ENTRIES = 16384
#: how often the series cache is swept (upstream: every SERIES_FINISH)
SERIES_SWEEP = 60.0

_REFERENCE_FIELDS = ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")


def object_reference(obj: Object, field_path: str = "") -> Object:
    """The ``ObjectReference`` of an object (client-go's ``reference.GetReference``); an object that
    already is a reference (no ``metadata``) is returned as it is, so a caller can name a part of
    an object, e.g. a pod's container through ``fieldPath: spec.containers{web}``."""
    if "metadata" not in obj:
        ref = {k: obj[k] for k in _REFERENCE_FIELDS if obj.get(k)}
    else:
        metadata = obj.get("metadata") or {}
        ref = {"kind": obj.get("kind"), "namespace": metadata.get("namespace"), "name": metadata.get("name"),
               "uid": metadata.get("uid"), "apiVersion": obj.get("apiVersion"),
               "resourceVersion": metadata.get("resourceVersion")}
        ref = {k: v for k, v in ref.items() if v}
    if field_path:
        ref["fieldPath"] = field_path
    return ref


def _time(moment: float) -> str:
    return meta.format_time(datetime.fromtimestamp(moment, UTC))


def _micro_time(moment: float) -> str:
    return meta.format_time_micro(datetime.fromtimestamp(moment, UTC))


def _event_name(ref: Object, moment: float) -> str:
    """``<object name>.<UnixNano in hex>``, client-go's event names."""
    return f"{ref.get('name', '')}.{int(moment * 1e9):x}"


# ------------------------------------------------------------------ core/v1: the correlator


def _ref_key(event: Object, *, field_path: bool) -> tuple[str, ...]:
    source, ref = event.get("source") or {}, event.get("involvedObject") or {}
    return (source.get("component", ""), source.get("host", ""), ref.get("kind", ""), ref.get("namespace", ""),
            ref.get("name", ""), *((ref.get("fieldPath", ""),) if field_path else ()), ref.get("uid", ""),
            ref.get("apiVersion", ""))


def event_key(event: Object) -> tuple[str, ...]:
    """``getEventKey``: an event identical to another in everything but its timestamps."""
    return (*_ref_key(event, field_path=True), event.get("type", ""), event.get("reason", ""),
            event.get("message", ""))


def spam_key(event: Object) -> tuple[str, ...]:
    """``getSpamKey``: the source and the object (client-go 1.32's default key)."""
    return _ref_key(event, field_path=False)


def aggregate_key(event: Object) -> tuple[tuple[str, ...], str]:
    """``EventAggregatorByReasonFunc``: events differing only by message, and that message."""
    return ((*_ref_key(event, field_path=False), event.get("type", ""), event.get("reason", ""),
             event.get("reportingComponent", ""), event.get("reportingInstance", "")),
            event.get("message", ""))


@dataclass
class _TokenBucket:
    """flowcontrol's token bucket (golang.org/x/time/rate): ``burst`` tokens, refilled at ``qps``."""
    tokens: float
    last: float

    def try_accept(self, now: float, qps: float, burst: int) -> bool:
        self.tokens = min(float(burst), self.tokens + (now - self.last) * qps)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


@dataclass
class _Aggregate:
    messages: set[str] = field(default_factory=set)
    last: float = 0.0


@dataclass
class _Observation:
    count: int
    first_timestamp: str
    name: str
    resource_version: str


@dataclass(frozen=True)
class Correlated:
    """What to write: the event, and the patch of an existing one when ``event['count'] > 1``."""
    event: Object
    patch: Object | None


class EventCorrelator:
    """client-go's ``EventCorrelator``: aggregation, de-duplication into counts, and the spam filter.

    Pure bookkeeping over an injectable clock; :class:`EventRecorder` does the writing. LRU caches of
    4096 entries each bound the memory whatever the number of objects (cachetools' ``LRUCache``,
    the groupcache LRU's equivalent)."""

    def __init__(self, clock: Clock = time.time, *, max_events: int = AGGREGATE_MAX_EVENTS,
                 interval: float = AGGREGATE_INTERVAL, burst: int = SPAM_BURST, qps: float = SPAM_QPS,
                 cache_size: int = LRU_ENTRIES) -> None:
        self.clock = clock
        self.max_events, self.interval, self.burst, self.qps = max_events, interval, burst, qps
        self._aggregates: cachetools.LRUCache[tuple[str, ...], _Aggregate] = cachetools.LRUCache(cache_size)
        self._observed: cachetools.LRUCache[tuple[str, ...], _Observation] = cachetools.LRUCache(cache_size)
        self._spam: cachetools.LRUCache[tuple[str, ...], _TokenBucket] = cachetools.LRUCache(cache_size)

    def correlate(self, event: Object) -> Correlated | None:
        """``EventCorrelate``: the event to write, or None when the spam filter drops it."""
        now = self.clock()
        aggregated, key = self._aggregate(event, now)
        observed, patch = self._observe(aggregated, key)
        if self._filtered(observed, now):
            return None
        return Correlated(observed, patch)

    def update_state(self, written: Object) -> None:
        """Remember what the server returned (name, resourceVersion, count) for the next repeat."""
        metadata = written.get("metadata") or {}
        self._observed[event_key(written)] = _Observation(
            int(written.get("count") or 1), written.get("firstTimestamp") or "", metadata.get("name", ""),
            metadata.get("resourceVersion", ""))

    def _aggregate(self, event: Object, now: float) -> tuple[Object, tuple[str, ...]]:
        group, message = aggregate_key(event)
        record = self._aggregates.get(group)
        if record is None or now - record.last > self.interval:
            record = _Aggregate()
        record.messages.add(message)
        record.last = now
        self._aggregates[group] = record
        if len(record.messages) < self.max_events:
            return event, event_key(event)
        record.messages.pop()  # do not grow the set past the threshold
        stamp = _time(now)
        combined = {
            "metadata": {"name": _event_name(event.get("involvedObject") or {}, now),
                         "namespace": (event.get("metadata") or {}).get("namespace")},
            "count": 1, "firstTimestamp": stamp, "lastTimestamp": stamp,
            "involvedObject": event.get("involvedObject"),
            "message": "(combined from similar events): " + str(event.get("message", "")),
            "type": event.get("type"), "reason": event.get("reason"), "source": event.get("source"),
        }
        # the aggregate's cache key is the group, so each further combined event counts up one Event
        return combined, group

    def _observe(self, event: Object, key: tuple[str, ...]) -> tuple[Object, Object | None]:
        """``eventObserve``: a repeat takes the first one's name and firstTimestamp, count + 1, and a
        patch of what changes (count, lastTimestamp, message: what CreateTwoWayMergePatch yields)."""
        event = {**event, "metadata": dict(event.get("metadata") or {})}
        last = self._observed.get(key)
        patch = None
        if last is not None:
            event["metadata"]["name"] = last.name
            if last.resource_version:
                event["metadata"]["resourceVersion"] = last.resource_version
            event["firstTimestamp"] = last.first_timestamp
            event["count"] = last.count + 1
            patch = {"count": event["count"], "lastTimestamp": event.get("lastTimestamp"),
                     "message": event.get("message")}
        self._observed[key] = _Observation(int(event.get("count") or 1), event.get("firstTimestamp") or "",
                                           event["metadata"].get("name", ""),
                                           event["metadata"].get("resourceVersion", ""))
        return event, patch

    def _filtered(self, event: Object, now: float) -> bool:
        key = spam_key(event)
        bucket = self._spam.get(key) or _TokenBucket(float(self.burst), now)
        accepted = bucket.try_accept(now, self.qps, self.burst)
        self._spam[key] = bucket
        return not accepted


# ------------------------------------------------------------------ the writer both recorders share


class _Sink:
    """Writer tasks over a bounded queue (client-go's broadcaster: DropIfChannelFull at 1000).

    ``writers``: how many writes may be in flight. core/v1's ``tools/record`` writes one event after
    another (1); events.k8s.io's ``tools/events`` starts a goroutine per event (``recordToSink``), so
    its queue drains as fast as the server answers and only drops under real overload: a single
    writer there dropped the scheduler's Scheduled events whenever a write took more than a few ms."""

    def __init__(self, write: Callable[[Any], Any], retry_sleep: float, writers: int = 1) -> None:
        self._write = write
        self.retry_sleep = retry_sleep
        self._writers = max(1, writers)
        self._queue: asyncio.Queue[Any] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        #: set while someone waits in flush(): a write that cannot reach the server is dropped then
        #: instead of retried (the caller is shutting down; upstream's Shutdown does not wait at all)
        self._flushing = asyncio.Event()

    def put(self, item: Any) -> None:
        if self._queue is None:
            self._queue = asyncio.Queue(MAX_QUEUED_EVENTS)
        queue = self._queue
        self._tasks = [t for t in self._tasks if not t.done()]
        self._tasks += [asyncio.create_task(self._run(queue), name="event-sink")
                        for _ in range(self._writers - len(self._tasks))]
        try:
            queue.put_nowait(item)
        except asyncio.QueueFull:
            log.debug("event queue full; dropping an event")

    async def flush(self, timeout: float) -> None:
        """Wait for the queue to drain, at most ``timeout`` seconds: a server that cannot be reached
        (its writes retried for minutes) must not hold up a component's shutdown."""
        if self._queue is not None and any(not t.done() for t in self._tasks):
            self._flushing.set()
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._queue.join(), timeout)
            finally:
                self._flushing.clear()

    async def close(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self, queue: asyncio.Queue[Any]) -> None:
        while True:
            item = await queue.get()
            try:
                for attempt in range(MAX_TRIES):
                    try:
                        await self._write(item)
                        break
                    except errors.ConnectionFailed as error:
                        if attempt + 1 == MAX_TRIES or self._flushing.is_set():
                            log.warning("unable to write event (will not retry): %s", error)
                            break
                        # randomised, so clients do not all come back at once after an outage; a
                        # flush cuts the wait short
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._flushing.wait(),
                                                   self.retry_sleep * random.uniform(1.0, 1.25))
                    except errors.APIError as error:
                        # client-go logs these as errors: a refusal (RBAC, validation) is worth seeing
                        log.warning("server rejected event (will not retry): %s", error)
                        break
                    except Exception:  # recording must never take the component down
                        log.exception("unexpected error writing an event")
                        break
            finally:
                queue.task_done()


# ------------------------------------------------------------------ core/v1 recorder


class EventRecorder:
    """client-go's ``EventRecorder`` for core/v1 Events (controllers, the kubelet, the proxy)."""

    def __init__(self, client: APIClient, component: str, host: str = "", *,
                 correlator: EventCorrelator | None = None, clock: Clock = time.time,
                 retry_sleep: float = RETRY_SLEEP) -> None:
        self.client = client
        self.component = component
        self.host = host
        self.clock = clock
        self.correlator = correlator or EventCorrelator(clock)
        self._sink = _Sink(self._write, retry_sleep)

    def event(self, obj: Object, event_type: str, reason: str, message: str) -> None:
        """Fire and forget: correlate now (so repeats count in call order) and queue the write."""
        if event_type not in ("Normal", "Warning"):
            log.error("unsupported event type %r", event_type)
            return
        correlated = self.correlator.correlate(self.make_event(obj, event_type, reason, message))
        if correlated is not None:
            self._sink.put(correlated)

    def make_event(self, obj: Object, event_type: str, reason: str, message: str) -> Object:
        """``makeEvent``: named ``<object>.<nanoseconds in hex>`` in the object's namespace."""
        now = self.clock()
        ref = object_reference(obj)
        stamp = _time(now)
        return {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": _event_name(ref, now), "namespace": ref.get("namespace") or "default"},
            "involvedObject": ref, "reason": reason, "message": message, "type": event_type,
            "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
            "source": {"component": self.component, **({"host": self.host} if self.host else {})},
            "reportingComponent": self.component, "reportingInstance": self.host,
        }

    async def flush(self, timeout: float = FLUSH_TIMEOUT) -> None:
        """Wait until every event recorded so far is written (tests, shutdown), at most ``timeout``."""
        await self._sink.flush(timeout)

    async def close(self) -> None:
        await self._sink.close()

    async def _write(self, correlated: Correlated) -> None:
        """``recordEvent``: a repeat is a PATCH; a create when it is new or its Event is gone."""
        event = correlated.event
        namespace = event["metadata"]["namespace"]
        written: Object | None = None
        if correlated.patch is not None and int(event.get("count") or 1) > 1:
            with contextlib.suppress(errors.NotFoundError):
                written = await self.client.patch(_EVENTS, event["metadata"]["name"], correlated.patch, namespace,
                                                  patch_type="strategic")
        if written is None:
            body = {**event, "metadata": {k: v for k, v in event["metadata"].items() if k != "resourceVersion"}}
            try:
                written = await self.client.create(_EVENTS, body, namespace)
            except errors.AlreadyExistsError:
                return  # as client-go: the same event recorded twice at once; nothing to retry
        self.correlator.update_state(written)


# ------------------------------------------------------------------ events.k8s.io/v1 recorder


@dataclass(slots=True)
class _Cached:
    """One isomorphic event remembered for its series. The event is kept serialised: the scheduler
    records a ``Scheduled`` event per pod, which never repeats, and holds each for six minutes; as
    nested dicts under a key of nested tuples each took 2,161 bytes (up to 16,384 of them: 35 MB),
    serialised (event and key) 1,006."""
    event: bytes
    recorded_at: float
    #: repeats seen (1: no series yet) and the time of the last one
    count: int = 1
    observed_at: float = 0.0

    def with_series(self) -> Object:
        """The event with its ``series`` as it stands now (a fresh object: the count goes on)."""
        event: Object = orjson.loads(self.event)
        event["series"] = {"count": self.count, "lastObservedTime": _micro_time(self.observed_at)}
        return event


class SeriesRecorder:
    """client-go's ``tools/events`` recorder: events.k8s.io/v1 Events with ``series`` for repeats."""

    def __init__(self, client: APIClient, controller: str, instance: str = "", *, clock: Clock = time.time,
                 retry_sleep: float = RETRY_SLEEP, sweep_interval: float = SERIES_SWEEP) -> None:
        self.client = client
        self.controller = controller
        # NewRecorder: "<controller>-<hostname>"
        self.instance = instance or f"{controller}-{_hostname()}"
        self.clock = clock
        # client-go's map is pruned only by the sweep; a scheduler placing thousands of pods a minute
        # would hold every one of them, so the cache is also an LRU (a series pushed out early loses
        # its uncounted repeats, never an Event)
        self._cache: cachetools.LRUCache[bytes, _Cached] = cachetools.LRUCache(SERIES_CACHE_ENTRIES)
        self.sweep_interval = sweep_interval
        self._sink = _Sink(self._write, retry_sleep, SERIES_WRITERS)
        self._housekeeping: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        """Events remembered for their series (bounded: the sweep and the LRU)."""
        return len(self._cache)

    def event(self, obj: Object, event_type: str, reason: str, message: str, action: str = "",
              related: Object | None = None) -> None:
        if event_type not in ("Normal", "Warning"):
            log.error("unsupported event type %r", event_type)
            return
        now = self.clock()
        regarding = object_reference(obj)
        related_ref = object_reference(related) if related is not None else None
        # getKey: action, reason, reporting controller and instance (this recorder's, the same for
        # every key), regarding and related; serialised, one bytes object instead of nested tuples
        key = dumps_kept((event_type, action, reason, regarding, related_ref), option=orjson.OPT_SORT_KEYS)
        cached = self._cache.get(key)
        if cached is not None:
            cached.count += 1
            cached.observed_at = now
            if cached.count == 2:  # the series starts: written at once; later counts when it ends
                self._queue(cached.with_series())
            return
        event = {
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": _event_name(regarding, now), "namespace": regarding.get("namespace") or "default"},
            "eventTime": _micro_time(now), "reportingController": self.controller,
            "reportingInstance": self.instance, "action": action, "reason": reason, "regarding": regarding,
            "note": message, "type": event_type,
            **({"related": related_ref} if related_ref else {}),
        }
        self._cache[key] = _Cached(dumps_kept(event), now)
        self._queue(event)

    def _queue(self, event: Object) -> None:
        self._sink.put(event)
        if self._housekeeping is None or self._housekeeping.done():
            self._housekeeping = asyncio.create_task(self._keep_house(), name="event-series")

    async def flush(self, timeout: float = FLUSH_TIMEOUT) -> None:
        await self._sink.flush(timeout)

    async def close(self) -> None:
        if self._housekeeping is not None:
            self._housekeeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._housekeeping
        await self._sink.close()

    def finish_series(self) -> None:
        """``finishSeries``: a series quiet for 6 minutes is written with its final count and
        forgotten; a single event is forgotten 6 minutes after it happened."""
        cutoff = self.clock() - SERIES_FINISH
        for key, cached in list(self._cache.items()):
            if cached.count > 1:
                if cached.observed_at < cutoff:
                    self._sink.put(cached.with_series())
                    del self._cache[key]
            elif cached.recorded_at < cutoff:
                del self._cache[key]

    def refresh_series(self) -> None:
        """``refreshExistingEventSeries``: running series are written every 30 minutes."""
        for cached in self._cache.values():
            if cached.count > 1:
                self._sink.put(cached.with_series())

    async def _keep_house(self) -> None:
        # Upstream sweeps every 6 minutes (wait.Until(finishSeries, finishTime)), so a single event
        # stays 6 to 12 minutes; sweeping every minute forgets it after 6 to 7, the same rule with
        # a little over half the events held at a steady rate, and finished series written on time.
        last_refresh = time.monotonic()
        while self._cache:
            await asyncio.sleep(self.sweep_interval)
            self.finish_series()
            if time.monotonic() - last_refresh >= SERIES_REFRESH:
                self.refresh_series()
                last_refresh = time.monotonic()

    async def _write(self, event: Object) -> None:
        """``recordEvent``: a series is a PATCH of ``series``, a create when new or gone; a series
        whose create finds the Event made meanwhile (two repeats at once) patches it after all."""
        namespace, name = event["metadata"]["namespace"], event["metadata"]["name"]
        for _ in range(2):
            if event.get("series") is not None:
                with contextlib.suppress(errors.NotFoundError):
                    await self.client.patch(_EVENTS_V1, name, {"series": event["series"]}, namespace,
                                            patch_type="strategic")
                    return
            try:
                await self.client.create(_EVENTS_V1, event, namespace)
                return
            except errors.AlreadyExistsError:
                if event.get("series") is None:
                    return


def _hostname() -> str:
    return socket.gethostname()
