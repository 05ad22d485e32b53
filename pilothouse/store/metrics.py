"""kube-apiserver's storage metrics for either backend: ``etcd_request_duration_seconds`` and
``etcd_requests_total`` around every call into the store, as ``storage/etcd3/metrics`` records them.

Kubernetes 1.32 labels them ``operation`` (``get``, ``create``, ``update``, ``delete``, ``list``,
``listWithCount``) and ``type``, the resource as ``GroupResource.String()`` (``pods``,
``deployments.apps``), which :func:`resource_type` reads off the store key. The name says etcd; the
SQLite store reports under the same names so one dashboard serves both (kube's own name is kept,
since that is what existing dashboards and alerts query). Watches are not timed, as in Kubernetes.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

from pilothouse.machinery.fastmetrics import CounterVec, HistogramVec
from pilothouse.store.interface import KeyValue, ListIndex, ListResult, Store, WatchEvent, WatchTrigger

__all__ = ["REQUEST_BUCKETS", "InstrumentedStore", "resource_type"]

_T = TypeVar("_T")

#: apiserver_request_duration_seconds' and etcd_request_duration_seconds' buckets (the API call SLO's).
REQUEST_BUCKETS = (0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30,
                   45, 60)

# Recorded on every store call: the event loop's cheap metrics (machinery/fastmetrics.py), the
# request count read off the histogram.
_DURATION = HistogramVec("etcd_request_duration_seconds",
                         "Etcd request latency in seconds for each operation and object type.",
                         ("operation", "type"), REQUEST_BUCKETS,
                         count_as=("etcd_requests_total", "Etcd request counts for each operation and object type."))
_ERRORS = CounterVec("etcd_request_errors_total", "Etcd failed request counts for each operation and object type.",
                     ("operation", "type"))


def resource_type(key: str) -> str:
    """``/registry/<group|core>/<plural>/...`` → ``plural[.group]``; other keys (the allocators'
    ``/registry/ranges/...``) → their second segment."""
    parts = key.split("/", 4)
    if len(parts) < 4 or not parts[3]:
        return parts[2] if len(parts) > 2 else key
    group, plural = parts[2], parts[3]
    return plural if group == "core" else f"{plural}.{group}"


class _Recorder:
    """One (operation, type)'s children, looked up once per store key prefix."""

    __slots__ = ("duration", "errors")

    def __init__(self, operation: str, kind: str) -> None:
        self.duration = _DURATION.labels(operation, kind)
        self.errors = _ERRORS.labels(operation, kind)

    def record(self, started: float, failed: bool) -> None:
        self.duration.observe(time.perf_counter() - started)
        if failed:
            self.errors.inc()


class InstrumentedStore:
    """The backend with every request timed; everything else (watch, lifecycle, backend-specific
    attributes) passes through."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        #: by (operation, key up to its last "/"): namespace and name vary, the resource does not
        self._recorders: dict[tuple[str, str], _Recorder] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _recorder(self, operation: str, key: str) -> _Recorder:
        cache_key = (operation, key[:key.rfind("/")])
        recorder = self._recorders.get(cache_key)
        if recorder is None:
            recorder = self._recorders[cache_key] = _Recorder(operation, resource_type(key))
        return recorder

    async def start(self) -> None:
        await self.inner.start()

    async def close(self) -> None:
        await self.inner.close()

    async def current_revision(self) -> int:
        return await self.inner.current_revision()

    async def _timed(self, operation: str, key: str, call: Awaitable[_T]) -> _T:
        recorder, started = self._recorder(operation, key), time.perf_counter()
        try:
            result = await call
        except BaseException:
            recorder.record(started, True)
            raise
        recorder.record(started, False)
        return result

    async def get(self, key: str) -> KeyValue | None:
        return await self._timed("get", key, self.inner.get(key))

    async def list(self, prefix: str, *, limit: int = 0, start_after: str = "", revision: int = 0,
                   index: ListIndex | None = None) -> ListResult:
        return await self._timed("list", prefix, self.inner.list(prefix, limit=limit, start_after=start_after,
                                                                   revision=revision, index=index))

    async def count(self, prefix: str) -> int:
        return await self._timed("listWithCount", prefix, self.inner.count(prefix))

    async def create(self, key: str, value: bytes, *, ttl: int = 0) -> KeyValue:
        return await self._timed("create", key, self.inner.create(key, value, ttl=ttl))

    async def update(self, key: str, value: bytes, *, expected_mod_revision: int, ttl: int = 0) -> KeyValue:
        return await self._timed("update", key, self.inner.update(
            key, value, expected_mod_revision=expected_mod_revision, ttl=ttl))

    async def delete(self, key: str, *, expected_mod_revision: int = 0) -> KeyValue:
        return await self._timed("delete", key, self.inner.delete(key, expected_mod_revision=expected_mod_revision))

    def watch(self, prefix: str, start_revision: int,
              trigger: WatchTrigger | None = None) -> AsyncIterator[WatchEvent]:
        return self.inner.watch(prefix, start_revision, trigger)

    async def compact(self, revision: int) -> None:
        await self.inner.compact(revision)

    async def compacted_revision(self) -> int:
        return await self.inner.compacted_revision()
