"""client-go's ``EventSourceObjectSpamFilter``: at most a burst of events per source and object.

``k8s.io/client-go/tools/record/events_cache.go``: every (source component, source host, involved
object kind, namespace, name, uid, apiVersion) gets a token bucket of 25 events refilled at one per
5 minutes, kept in an LRU of 4,096 keys; an event finding its bucket empty is dropped before any
write. This is what keeps a ReplicaSet scaled to 5,000 replicas from writing 5,000 SuccessfulCreate
events (it writes 25, then one per 5 minutes), while each pod's own events (Scheduled, its kubelet's)
are unaffected, their object being the pod.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

__all__ = ["SPAM_BURST", "SPAM_QPS", "SpamFilter"]

SPAM_BURST = 25
SPAM_QPS = 1.0 / 300.0
_LRU_ENTRIES = 4096


class SpamFilter:
    def __init__(self, burst: int = SPAM_BURST, qps: float = SPAM_QPS, size: int = _LRU_ENTRIES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.burst = burst
        self.qps = qps
        self.size = size
        self.clock = clock
        # key -> (tokens, when they were counted)
        self._buckets: OrderedDict[tuple[str, ...], tuple[float, float]] = OrderedDict()

    def allow(self, component: str, host: str, involved: dict[str, Any]) -> bool:
        """Take one token from the bucket of this source and object: False when there is none."""
        key = (component, host, str(involved.get("kind", "")), str(involved.get("namespace", "")),
               str(involved.get("name", "")), str(involved.get("uid", "")), str(involved.get("apiVersion", "")))
        now = self.clock()
        tokens, then = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - then) * self.qps)
        allowed = tokens >= 1.0
        self._buckets[key] = (tokens - 1.0 if allowed else tokens, now)
        if len(self._buckets) > self.size:
            self._buckets.popitem(last=False)
        return allowed
