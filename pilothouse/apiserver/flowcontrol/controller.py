"""The priority and fairness filter's state: kube-apiserver's APF config controller and ``Handle``
(``staging/src/k8s.io/apiserver/pkg/util/flowcontrol/apf_controller.go``,
``pkg/server/filters/priority-and-fairness.go``).

The FlowSchemas and PriorityLevelConfigurations are read from two watch-fed caches (as the RBAC
authorizer reads its objects: no store read per request). A request is classified by the first
FlowSchema, by ``matchingPrecedence`` then name, that matches its user and attributes and whose
priority level exists (a dangling schema is skipped); none matching is the mandatory ``catch-all``.
An ``Exempt`` level runs the request at once; a ``Limited`` one gives it a seat, a place in a queue,
or a 429. Classifications are cached per user and request attributes, dropped whenever a schema or
level changes, so a request pays one dict lookup once warm.

Seats: the server's concurrency limit is ``--max-requests-inflight`` plus
``--max-mutating-requests-inflight`` (600 by default), shared among the limited levels in proportion
to their ``nominalConcurrencyShares`` (rounded up), as the nominal limits of kube-apiserver.
Not done here, and why: borrowing between levels (``lendablePercent``, ``borrowingLimitPercent``:
every level keeps exactly its nominal seats, so an idle level's seats stay idle), the Retry-After that
grows with repeated rejections (always 1 s), and watches, which are classified (their answers carry
the headers) but hold no seat at all (kube-apiserver has one taken while a watch initialises); see
docs/decisions/flowcontrol.md.

A queued request waits at most a quarter of its deadline (``getRequestWaitContext``: 15 s of the
default 60 s request timeout, never more than a minute); then, or when its queue is full, it gets
kube-apiserver's "Too many requests, please try again later." as a 429 ``Status``. Every classified
request's answer names the FlowSchema and priority level by UID (``X-Kubernetes-PF-FlowSchema-UID``,
``X-Kubernetes-PF-PriorityLevel-UID``), on a 429 as well.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import REGISTRY
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pilothouse.apiserver.auth import ALL_UNAUTHENTICATED, ANONYMOUS, CALLER, UserInfo
from pilothouse.apiserver.flowcontrol.matching import flow_distinguisher, matches_flowschema
from pilothouse.apiserver.flowcontrol.queueset import QueueSet, Rejected, flow_hash
from pilothouse.apiserver.rbacauthz import NotifyingCache
from pilothouse.apiserver.requestinfo import RequestInfo
from pilothouse.machinery.errors import too_many_requests
from pilothouse.machinery.fastmetrics import CounterVec
from pilothouse.machinery.kinds.flowcontrol import BOOTSTRAP_OBJECTS
from pilothouse.machinery.meta import Object
from pilothouse.store.interface import Store

__all__ = ["CLASSIFICATION", "Classification", "PriorityAndFairness", "Release"]

Release = Callable[[], None]

_PREFIX = "/registry/flowcontrol.apiserver.k8s.io/"
#: Beyond this many cached classifications the cache starts over (a bound on memory, not a policy).
_MAX_CLASSIFICATIONS = 20_000
#: ``defaultRequestWaitLimit``'s cap: no request waits in a queue longer than this.
_MAX_WAIT = 60.0
_DEFAULT_WAIT = 15.0
_ANONYMOUS = UserInfo(ANONYMOUS, (ALL_UNAUTHENTICATED,))
_BOOTSTRAP_SCHEMAS = [obj for obj in BOOTSTRAP_OBJECTS if obj["kind"] == "FlowSchema"]
_BOOTSTRAP_LEVELS = [obj for obj in BOOTSTRAP_OBJECTS if obj["kind"] == "PriorityLevelConfiguration"]

DISPATCHED = CounterVec("apiserver_flowcontrol_dispatched_requests_total",
                        "Number of requests executed by API Priority and Fairness subsystem",
                        ("flow_schema", "priority_level"))
REJECTED = CounterVec("apiserver_flowcontrol_rejected_requests_total",
                      "Number of requests rejected by API Priority and Fairness subsystem",
                      ("flow_schema", "priority_level", "reason"))


@dataclass(frozen=True, slots=True)
class Classification:
    schema_name: str
    schema_uid: str
    level_name: str
    level_uid: str
    #: None for an Exempt level.
    queues: QueueSet | None
    #: The flow's queues (shuffle sharding), empty for a Reject level.
    hand: tuple[int, ...]


CLASSIFICATION = web.RequestKey("pilothouse.flowcontrol", Classification)


def _uid(obj: Object) -> str:
    return str(obj["metadata"].get("uid") or "")


def _nothing() -> None:
    """The release of an exempt request: it took no seat."""


def _expire(queues: QueueSet, waiter: asyncio.Future[int]) -> None:
    """A queued request's wait limit passed: out of its queue, and its await fails."""
    if not waiter.done():
        queues.withdraw(waiter, "time-out")
        waiter.set_exception(Rejected("time-out"))


class PriorityAndFairness:
    """One per served application: the configuration, the levels' queues, and :meth:`acquire`."""

    def __init__(self, store: Store, server_concurrency_limit: int) -> None:
        self.server_concurrency_limit = server_concurrency_limit
        self.schemas = NotifyingCache(store, _PREFIX + "flowschemas/", self._changed)
        self.levels = NotifyingCache(store, _PREFIX + "prioritylevelconfigurations/", self._changed)
        #: Level name -> its queues, kept across configuration changes that keep the level's shape
        #: (queued and executing requests stay where they are).
        self.queue_sets: dict[str, QueueSet] = {}
        self._ordered: list[tuple[Object, Object]] = []  # (schema, its level), in matching order
        self._levels_by_name: dict[str, Object] = {}
        self._classifications: dict[tuple[Any, ...], Classification] = {}
        self._stale = True

    def start(self) -> None:
        GAUGES.flow_control = self  # the page reports the server's (the last started, in a test process)
        self.schemas.start()
        self.levels.start()

    async def close(self) -> None:
        await self.schemas.close()
        await self.levels.close()

    def _changed(self) -> None:
        self._stale = True
        self._classifications.clear()

    # ------------------------------------------------------------------ configuration

    def _configured(self, cache: NotifyingCache, bootstrap: list[Object]) -> list[Object]:
        """What the cache holds once it has listed; the bootstrap objects until then (the server
        creates them at start: the first requests are classified as they will be)."""
        return list(cache.bucket("")) if cache.synced else bootstrap

    def _reconfigure(self) -> None:
        self._stale = False
        levels = {obj["metadata"]["name"]: obj for obj in self._configured(self.levels, _BOOTSTRAP_LEVELS)}
        for name, obj in ((o["metadata"]["name"], o) for o in _BOOTSTRAP_LEVELS if o["metadata"]["name"]
                          in ("exempt", "catch-all")):
            levels.setdefault(name, obj)  # deleted mandatory objects are re-created; meanwhile, these
        schemas = self._configured(self.schemas, _BOOTSTRAP_SCHEMAS)
        if not any(s["metadata"]["name"] == "catch-all" for s in schemas):
            schemas = [*schemas, *(s for s in _BOOTSTRAP_SCHEMAS if s["metadata"]["name"] == "catch-all")]
        ordered = sorted(((s.get("spec") or {}).get("matchingPrecedence") or 1000, s["metadata"]["name"], s)
                         for s in schemas)
        self._ordered = [(schema, levels[level]) for _, _, schema in ordered
                         if (level := ((schema.get("spec") or {}).get("priorityLevelConfiguration") or {})
                             .get("name")) in levels]
        self._levels_by_name = levels
        self._shape_levels(levels.values())

    def _shape_levels(self, levels: Iterable[Object]) -> None:
        limited = [(obj["metadata"]["name"], (obj.get("spec") or {}).get("limited") or {}) for obj in levels
                   if (obj.get("spec") or {}).get("type") == "Limited"]
        exempt_shares = sum(((obj.get("spec") or {}).get("exempt") or {}).get("nominalConcurrencyShares") or 0
                            for obj in levels if (obj.get("spec") or {}).get("type") == "Exempt")
        total = sum(spec.get("nominalConcurrencyShares", 30) for _, spec in limited) + exempt_shares
        kept: dict[str, QueueSet] = {}
        for name, spec in limited:
            shares = spec.get("nominalConcurrencyShares", 30)
            limit = math.ceil(self.server_concurrency_limit * shares / total) if total else 0
            response = spec.get("limitResponse") or {}
            queuing = (response.get("queuing") or {}) if response.get("type") == "Queue" else {}
            shape = (queuing.get("queues", 0), queuing.get("handSize", 0), queuing.get("queueLengthLimit", 0))
            current = self.queue_sets.get(name)
            if current is None or current.shape != (shape[0], min(shape[1], shape[0]), shape[2]):
                current = QueueSet(name, limit, *shape)
            else:
                current.limit = limit
                current.dispatch()
            kept[name] = current
        self.queue_sets = kept

    # ------------------------------------------------------------------ classification

    def classify(self, user: UserInfo, info: RequestInfo) -> Classification:
        key = (user.name, user.groups, info.verb, info.is_resource_request, info.group, info.resource,
               info.subresource, info.namespace, "" if info.is_resource_request else info.path)
        found = self._classifications.get(key)
        if found is not None:
            return found
        if self._stale:
            self._reconfigure()
        found = self._classify(user, info)
        if len(self._classifications) >= _MAX_CLASSIFICATIONS:
            self._classifications.clear()
        self._classifications[key] = found
        return found

    def _classify(self, user: UserInfo, info: RequestInfo) -> Classification:
        matched = next(((s, level) for s, level in self._ordered if matches_flowschema(s, user, info)), None)
        if matched is None:  # no catch-all in the ordered list can only mean its level is gone
            matched = (next(s for s in _BOOTSTRAP_SCHEMAS if s["metadata"]["name"] == "catch-all"),
                       self._levels_by_name["catch-all"])
        schema, level = matched
        level_name = level["metadata"]["name"]
        queues = self.queue_sets.get(level_name) if (level.get("spec") or {}).get("type") == "Limited" else None
        hand: tuple[int, ...] = ()
        if queues is not None and queues.dealer is not None:
            hand = queues.hand(flow_hash(schema["metadata"]["name"], flow_distinguisher(schema, user, info)))
        return Classification(schema["metadata"]["name"], _uid(schema), level_name, _uid(level), queues, hand)

    # ------------------------------------------------------------------ admission

    def note_watch(self, request: web.Request, info: RequestInfo) -> None:
        """A watch: classified, so that its answer names its schema and level, but holding no seat."""
        caller = request.get(CALLER)
        request[CLASSIFICATION] = self.classify(caller.user if caller is not None else _ANONYMOUS, info)

    async def acquire(self, request: web.Request, info: RequestInfo, deadline: float) -> Release:
        """A seat for ``request`` (the function that gives it back), after queueing if need be.
        Raises the 429 ``Status`` of a rejected request."""
        caller = request.get(CALLER)
        found = self.classify(caller.user if caller is not None else _ANONYMOUS, info)
        request[CLASSIFICATION] = found
        queues = found.queues
        if queues is None:
            DISPATCHED.labels(found.schema_name, found.level_name).inc()
            return _nothing
        try:
            entered = queues.enter(found.hand)
        except Rejected as rejected:
            raise self._reject(found, rejected.reason) from None
        if isinstance(entered, int):
            DISPATCHED.labels(found.schema_name, found.level_name).inc()
            return lambda: queues.release(entered)
        # One timer that withdraws the waiter and fails it: cheaper than asyncio.timeout and a
        # shield around the await (a queued request pays this on top of the seat's wait).
        wait = min(deadline / 4 if deadline else _DEFAULT_WAIT, _MAX_WAIT)
        timer = asyncio.get_running_loop().call_later(wait, _expire, queues, entered)
        try:
            index = await entered
        except Rejected:
            raise self._reject(found, "time-out") from None
        except asyncio.CancelledError:
            queues.withdraw(entered, "cancelled")  # the seat back if it had been given meanwhile
            REJECTED.labels(found.schema_name, found.level_name, "cancelled").inc()
            raise
        finally:
            timer.cancel()
        DISPATCHED.labels(found.schema_name, found.level_name).inc()
        return lambda: queues.release(index)

    @staticmethod
    def _reject(found: Classification, reason: str) -> Exception:
        REJECTED.labels(found.schema_name, found.level_name, reason).inc()
        return too_many_requests("Too many requests, please try again later.")

    def levels_in_use(self) -> Iterator[QueueSet]:
        if self._stale:
            self._reconfigure()
        return iter(self.queue_sets.values())


async def add_classification_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``setResponseHeaders``: the UIDs, not the names, so that a rejected client learns nothing of how
    the administrator ranks it."""
    found = request.get(CLASSIFICATION)
    if found is not None:
        response.headers["X-Kubernetes-PF-FlowSchema-UID"] = found.schema_uid
        response.headers["X-Kubernetes-PF-PriorityLevel-UID"] = found.level_uid


class LevelGauges(Collector):
    """The levels' seats and queues at scrape time, by kube-apiserver's metric names."""

    def __init__(self) -> None:
        self.flow_control: PriorityAndFairness | None = None
        REGISTRY.register(self)

    def collect(self) -> Iterator[Metric]:
        families: dict[str, tuple[str, Callable[[QueueSet], int]]] = {
            "nominal_limit_seats": ("Nominal number of execution seats configured for each priority level",
                                    lambda q: q.limit),
            "current_limit_seats": ("current derived number of execution seats available to each priority level",
                                    lambda q: q.limit),
            "current_executing_requests": ("Number of requests in initial (for a WATCH) or any (for a non-WATCH) "
                                           "execution stage in the API Priority and Fairness subsystem",
                                           lambda q: q.executing),
            "current_inqueue_requests": ("Number of requests currently pending in queues of the API Priority and "
                                         "Fairness subsystem", lambda q: q.waiting),
        }
        levels = list(self.flow_control.levels_in_use()) if self.flow_control is not None else []
        for suffix, (documentation, value) in families.items():
            family = GaugeMetricFamily(f"apiserver_flowcontrol_{suffix}", documentation, labels=["priority_level"])
            for queues in levels:
                family.add_metric([queues.name], float(value(queues)))
            yield family


GAUGES = LevelGauges()
