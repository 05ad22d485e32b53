"""Leases for the etcd store's keys with a TTL: one lease shared by the writes of about a minute.

A key written with ``ttl`` is put under an etcd lease of at least that TTL, and etcd deletes it when
the lease expires (a delete in the revision order, seen by every watcher). Granting a lease per write
would double the writes and leave etcd with one lease per Event, so, as kube-apiserver's
``leaseManager`` (``storage/etcd3/lease_manager.go``), the last lease is reused while it expires
between ``ttl`` and ``ttl + reuse`` from now, where ``reuse`` is the smaller of 60 s and 5 % of the TTL,
for at most 1,000 keys; a new lease is granted for ``ttl + reuse``. A key therefore lives between
``ttl`` and ``ttl + reuse`` after its last write, as it does in Kubernetes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["LeaseManager"]

#: kube-apiserver's defaults (``newDefaultLeaseManager``, ``defaultLeaseMaxObjectCount``).
REUSE_SECONDS = 60
REUSE_PERCENT = 0.05
MAX_OBJECTS = 1000

#: One etcd gateway call: (path, body) → the answer (the store's ``_call`` with ``write=True``).
Call = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


class LeaseManager:
    def __init__(self, call: Call) -> None:
        self._call = call
        # One lock: concurrent writes wait for the one grant instead of each granting a lease.
        self._lock = asyncio.Lock()
        self._lease = ""
        self._expires = 0.0
        self._attached = 0
        #: Leases granted so far (tests and benchmarks see the reuse).
        self.granted = 0

    async def lease_for(self, ttl: int) -> str:
        """The ID of a lease (etcd's int64, as the gateway spells it) a key of ``ttl`` seconds goes under."""
        async with self._lock:
            now = time.monotonic()
            reuse = min(REUSE_SECONDS, int(REUSE_PERCENT * ttl))
            self._attached += 1
            if (now + ttl < self._expires < now + ttl + reuse) and self._attached <= MAX_OBJECTS:
                return self._lease
            answer = await self._call("/v3/lease/grant", {"TTL": str(ttl + reuse)})
            self._lease, self._expires, self._attached = str(answer["ID"]), now + ttl + reuse, 1
            self.granted += 1
            return self._lease

    def forget(self, lease: str) -> None:
        """etcd no longer knows ``lease``: the next write gets a new one (unless one did already)."""
        if lease == self._lease:
            self._lease, self._expires = "", 0.0
