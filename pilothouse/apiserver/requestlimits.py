"""Limits on what one request may take: kube-apiserver's max-in-flight filter and its request deadline.

- API Priority and Fairness (``--enable-priority-and-fairness``, on by default, as in kube-apiserver):
  requests are classified by FlowSchema into priority levels that share the server's seats
  (apiserver/flowcontrol). With it off, the max-in-flight filter below.
- ``--max-requests-inflight`` (400) and ``--max-mutating-requests-inflight`` (200): requests served at
  once, read-only (get, list) and mutating counted apart, as ``WithMaxInFlightLimit`` does. One more is
  answered at once with 429 and ``Retry-After: 1`` instead of queueing (a flood cannot pile up work the
  server then does for clients that have long given up). Long-running requests (watches, exec, attach,
  logs, port-forward, proxy) hold no seat, and ``system:masters`` is never refused ("a super-admin or a
  loopback connection"). 0 turns a limit off. kube-apiserver answers this 429 in plain text; here it is
  a ``Status`` (reason ``TooManyRequests``, ``details.retryAfterSeconds``), which client-go reads the
  same way and which keeps every 4xx of this API a Status.
- ``--request-timeout`` (60s) and the request's own ``?timeout=``: a non-long-running request that has
  not answered by then gets a 504 ``Timeout`` Status (``WithRequestDeadline`` and
  ``WithTimeoutForNonLongRunningRequests``). As there, the handler is not interrupted: it finishes in the
  background (a write half-cancelled mid-transaction would be worse than a late one) and keeps its seat
  until it does.
- ``--min-request-timeout`` (1800s): a watch without ``timeoutSeconds`` lives a random time between
  it and twice it, so that watchers reconnect spread out rather than all at once, and none forever.

The middleware runs after authentication and authorization (it needs the user for the
``system:masters`` exemption and for priority and fairness' classification); a refused caller is
refused before it takes a seat.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import Gauge

from pilothouse.apiserver.auth import CALLER, REQUEST_INFO, SYSTEM_MASTERS
from pilothouse.apiserver.flowcontrol.controller import PriorityAndFairness, add_classification_headers
from pilothouse.apiserver.requestinfo import RequestInfo, parse_request_info
from pilothouse.machinery.errors import StatusError, bad_request, too_many_requests
from pilothouse.machinery.query import integer

__all__ = ["INFLIGHT", "RequestLimitOptions", "RequestLimits", "install", "is_long_running", "parse_go_duration",
           "watch_timeout"]

log = logging.getLogger("pilothouse.apiserver.limits")

#: kube-apiserver's ``nonMutatingRequestVerbs``: everything else takes a mutating seat.
_READ_ONLY_VERBS = frozenset({"get", "list", "watch"})
#: ``BasicLongRunningRequestCheck(sets.NewString("watch", "proxy"), sets.NewString("attach", "exec",
#: "proxy", "log", "portforward"))`` as kube-apiserver configures it.
_LONG_RUNNING_VERBS = frozenset({"watch", "proxy"})
_LONG_RUNNING_SUBRESOURCES = frozenset({"attach", "exec", "proxy", "log", "portforward"})

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_go_duration(text: str) -> float:
    """Go's ``time.ParseDuration`` in seconds (``60s``, ``1m30s``, ``500ms``, ``0``). Raises ValueError."""
    if text == "0":
        return 0.0
    # Not machinery's other Go-duration parsers: they yield timedeltas, which round ``1ns`` to zero.
    seconds, position = 0.0, 0
    while position < len(text):
        match = _DURATION_PART.match(text, position)
        if match is None:
            raise ValueError(f'time: invalid duration "{text}"')
        seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if not text:
        raise ValueError('time: invalid duration ""')
    return seconds


@dataclass(frozen=True)
class RequestLimitOptions:
    """kube-apiserver's flags of the same names, with its defaults."""

    max_requests_inflight: int = 400
    max_mutating_requests_inflight: int = 200
    request_timeout: float = 60.0
    min_request_timeout: int = 1800
    enable_priority_and_fairness: bool = True
    #: Seconds a connection may sit without a whole request: before its first one (a client that
    #: trickles its headers, slow-loris) and between two. kube-apiserver's http.Server has
    #: IdleTimeout 90s (and ReadHeaderTimeout 32s); aiohttp's keep-alive timer covers both, as it is
    #: armed when the connection opens and after each answer, not moved by partial headers.
    idle_timeout: float = 90.0


def is_long_running(info: RequestInfo) -> bool:
    return info.is_resource_request and (info.verb in _LONG_RUNNING_VERBS
                                         or info.subresource in _LONG_RUNNING_SUBRESOURCES)


#: kube-apiserver's gauge of the seats taken, by kind (``readOnly``, ``mutating``).
INFLIGHT = Gauge("apiserver_current_inflight_requests",
                 "Maximal number of currently used inflight request limit of this apiserver per request kind "
                 "in last second.", ["request_kind"])

_KEY_OPTIONS = web.AppKey("pilothouse.requestlimits", RequestLimitOptions)
_KEY_STARTED = web.RequestKey("pilothouse.response-started", bool)


def watch_timeout(request: web.Request) -> float:
    """A watch's lifetime in seconds: its ``timeoutSeconds``, else ``--min-request-timeout`` times a
    random factor in [1, 2) (kube-apiserver's ``restfulListResource``)."""
    asked = integer(request.query, "timeoutSeconds")
    if asked:
        return float(asked)
    minimum = request.app.get(_KEY_OPTIONS, RequestLimitOptions()).min_request_timeout
    return minimum * (random.random() + 1.0) if minimum > 0 else 0.0


class RequestLimits:
    """The seats and the deadline; one per served application."""

    def __init__(self, options: RequestLimitOptions, flow_control: PriorityAndFairness | None = None) -> None:
        self.options = options
        #: Priority and fairness: its seats replace the max-in-flight limits.
        self.flow_control = flow_control
        self.in_flight = {False: 0, True: 0}  # mutating → requests holding a seat

    def _limit(self, mutating: bool) -> int:
        return self.options.max_mutating_requests_inflight if mutating else self.options.max_requests_inflight

    def _deadline(self, request: web.Request) -> float:
        """``--request-timeout``, shortened by the request's ``?timeout=`` (never lengthened)."""
        deadline = self.options.request_timeout
        asked = request.query.get("timeout")
        if asked:
            try:
                seconds = parse_go_duration(asked)
            except ValueError as error:
                raise bad_request(f"invalid timeout specified in the request URL - {error}") from None
            if seconds > 0:
                deadline = min(deadline, seconds) if deadline > 0 else seconds
        return deadline

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        info = request.get(REQUEST_INFO) or parse_request_info(request.method, request.path, request.query)
        if is_long_running(info):
            if self.flow_control is not None and info.verb == "watch":
                self.flow_control.note_watch(request, info)  # classified (its answer says so), no seat
            return await handler(request)  # type: ignore[no-any-return]
        deadline = self._deadline(request)
        mutating = info.verb not in _READ_ONLY_VERBS
        if self.flow_control is not None:
            give_back = await self.flow_control.acquire(request, info, deadline)
        else:
            limit = self._limit(mutating)
            if limit and self.in_flight[mutating] >= limit and not self._privileged(request):
                raise too_many_requests("Too many requests, please try again later.")
            give_back = _nothing
        self.in_flight[mutating] += 1
        # The handler runs as a task of its own so that it can outlive its 504 (see the module doc).
        task: asyncio.Task[web.StreamResponse] = asyncio.ensure_future(handler(request))

        def release(_: object) -> None:
            self.in_flight[mutating] -= 1
            give_back()

        task.add_done_callback(release)
        # A future woken by whichever comes first, the handler or the deadline: about a third of
        # asyncio.wait's cost per request, which every request pays.
        loop = asyncio.get_running_loop()
        woken = loop.create_future()
        task.add_done_callback(lambda _: _wake(woken))
        timer = loop.call_later(deadline, _wake, woken) if deadline else None
        try:
            await woken
        except asyncio.CancelledError:
            # The client went away (the server cancels handlers on disconnect). A read is nobody's
            # answer any more: stop it, as Go cancels the request's context, so that an overloaded
            # server does not keep serving clients that gave up and retried (issue 16). A write
            # finishes, as after a 504.
            if not mutating:
                task.cancel()
            raise
        finally:
            if timer is not None:
                timer.cancel()
        if not deadline:
            return task.result()
        if task.done():
            return task.result()
        task.add_done_callback(_log_late_failure)
        if not request.content.is_eof():
            # A body still arriving (a slow-loris writer): its reader fails now, as Go closes the
            # body of a timed-out request, so that the handler ends and gives its seat back.
            request.content.set_exception(ConnectionResetError("the request timed out while its body was read"))
        if request.get(_KEY_STARTED):
            # The answer has begun (a streamed list): no Status can follow it. kube-apiserver aborts
            # the connection then (http.ErrAbortHandler); so do we, and stop the read.
            task.cancel()
            if request.transport is not None:
                request.transport.close()
            raise asyncio.CancelledError
        # apierrors.NewTimeoutError(..., 0): retryAfterSeconds 0 leaves details empty.
        raise StatusError(504, "Timeout", "Timeout: request did not complete within requested timeout - "
                                          "context deadline exceeded", {})

    @staticmethod
    def _privileged(request: web.Request) -> bool:
        caller = request.get(CALLER)
        return caller is not None and SYSTEM_MASTERS in caller.user.groups


def _nothing() -> None:
    """The max-in-flight filter's seats are its counts alone."""


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _log_late_failure(task: asyncio.Future[Any]) -> None:
    """The timed-out handler's outcome is nobody's answer any more; a failure is still worth a line."""
    if not task.cancelled() and task.exception() is not None:
        error = task.exception()
        if not isinstance(error, StatusError | web.HTTPException | ConnectionResetError):
            log.warning("request finished after its 504 with %s: %s", type(error).__name__, error)


def install(app: web.Application, options: RequestLimitOptions, *, gauges: bool = True,
            flow_control: PriorityAndFairness | None = None) -> None:
    """Innermost middleware of ``app`` (after authentication and authorization). ``gauges``: this
    application's seats are the ones ``apiserver_current_inflight_requests`` reports (the secure
    port's; the insecure port has seats of its own, left out, as kube-apiserver's were).
    ``flow_control``: priority and fairness instead of the max-in-flight limits, started and closed
    with the application."""
    app[_KEY_OPTIONS] = options
    limits = RequestLimits(options, flow_control)
    if flow_control is not None:
        app.on_response_prepare.append(add_classification_headers)
        app.on_startup.append(lambda _: _start(flow_control))
        app.on_cleanup.append(lambda _: flow_control.close())
    app.middlewares.append(limits.middleware)
    if gauges:
        INFLIGHT.labels("readOnly").set_function(lambda: limits.in_flight[False])
        INFLIGHT.labels("mutating").set_function(lambda: limits.in_flight[True])
    app.on_response_prepare.append(_mark_started)


async def _start(flow_control: PriorityAndFairness) -> None:
    flow_control.start()


async def _mark_started(request: web.Request, response: web.StreamResponse) -> None:
    request[_KEY_STARTED] = True
