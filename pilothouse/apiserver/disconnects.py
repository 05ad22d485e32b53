"""Clients that leave early: a request whose client went away mid-body or mid-response, and a watch
whose client closed its connection.

Neither is the server's fault, so neither is an internal error. kube-apiserver sees the first as a
read or write error on a closed connection and the second through the request's context, cancelled
by net/http when the connection closes; its watch loop selects on that context and returns at once,
freeing the watcher. aiohttp does neither by itself: it does not cancel handlers on disconnect (its
``handler_cancellation`` is off, and turning it on would cancel writes half-way), and the body read
of a dropped request raises ``ConnectionResetError`` out of the handler, which the catch-all
middleware logged as an internal error and answered 500 (the answer going nowhere).

* :func:`middleware` (the innermost one) turns an exception raised while the client is gone into a
  counted, info-logged disconnect answered with nginx's 499 "Client Closed Request", so the request
  metrics do not count a 500 for it.
* :func:`end_on_disconnect` registers a serving watch; one sweeper task per event loop checks the
  registered watches' transports every :data:`SWEEP_SECONDS` and ends those whose client has gone,
  so a watch on an idle resource does not keep its task and its hub registration until the next
  event or its timeout. A sweep (a few attribute reads per watch) is cheaper than a second waiter
  per watch, and aiohttp offers no per-request disconnect callback for a bodiless GET.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from pilothouse.machinery.errors import StatusError
from pilothouse.machinery.fastmetrics import CounterVec

__all__ = ["CLIENT_CLOSED_REQUEST", "CLIENT_DISCONNECTS", "SWEEP_SECONDS", "client_gone", "end_on_disconnect",
           "middleware"]

log = logging.getLogger("pilothouse.apiserver.disconnects")

#: How often the watches' connections are checked: a watch whose client left ends within this.
SWEEP_SECONDS = 1.0
#: nginx's status for a request whose client closed the connection before the answer.
CLIENT_CLOSED_REQUEST = 499

CLIENT_DISCONNECTS = CounterVec(
    "pilothouse_apiserver_client_disconnects_total",
    "Requests whose client closed the connection before the answer was complete, by phase: request "
    "(while its body was read), response (while it was answered) or watch (a watch ended on it).",
    ("phase",))


def client_gone(request: web.BaseRequest) -> bool:
    """The connection is closed or closing (aiohttp drops the transport on connection_lost)."""
    transport = request.transport
    return transport is None or transport.is_closing()


@web.middleware
async def middleware(request: web.Request,
                     handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    try:
        return await handler(request)
    except (StatusError, web.HTTPException):
        raise
    except Exception as error:
        if not client_gone(request):
            raise  # the server's own failure: the outer middleware logs it and answers 500
        # The body was not read to its end: the client left while sending it.
        phase = "response" if request.content.at_eof() else "request"
        CLIENT_DISCONNECTS.labels(phase).inc()
        log.info("client %s disconnected during the %s of %s %s (%s: %s)", request.remote, phase,
                 request.method, request.path, type(error).__name__, error)
        return web.Response(status=CLIENT_CLOSED_REQUEST, reason="Client Closed Request")


class _Sweeper:
    """The watches being served on one event loop, and the task that ends those whose client left."""

    def __init__(self) -> None:
        self.watches: dict[asyncio.Queue[Any], web.BaseRequest] = {}
        self.task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        while self.watches:
            await asyncio.sleep(SWEEP_SECONDS)
            for queue, request in list(self.watches.items()):
                if client_gone(request):
                    del self.watches[queue]
                    CLIENT_DISCONNECTS.labels("watch").inc()
                    # None ends the serving loop; a full queue means the sender is writing, and
                    # that write fails on the closed connection just as well.
                    with contextlib.suppress(asyncio.QueueFull):
                        queue.put_nowait(None)


_SWEEPERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Sweeper] = weakref.WeakKeyDictionary()


def end_on_disconnect(request: web.BaseRequest, queue: asyncio.Queue[Any]) -> Callable[[], object]:
    """Until the returned function is called, ``None`` is put into ``queue`` within
    :data:`SWEEP_SECONDS` of the client of ``request`` closing its connection."""
    loop = asyncio.get_running_loop()
    sweeper = _SWEEPERS.get(loop)
    if sweeper is None:
        sweeper = _SWEEPERS[loop] = _Sweeper()
    sweeper.watches[queue] = request
    if sweeper.task is None or sweeper.task.done():
        sweeper.task = loop.create_task(sweeper.run())
    return functools.partial(sweeper.watches.pop, queue, None)
