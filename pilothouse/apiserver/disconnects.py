"""Clients that leave early: a request whose client went away mid-body or mid-response, and a watch
whose client closed its connection.

Neither is the server's fault, so neither is an internal error. kube-apiserver sees the first as a
read or write error on a closed connection and the second through the request's context, cancelled
by net/http when the connection closes; its watch loop selects on that context and returns at once,
freeing the watcher. The body read of a dropped request raises ``ConnectionResetError`` out of
the handler, which the catch-all middleware logged as an internal error and answered 500 (the answer going nowhere).

* :func:`middleware` (the innermost one) turns an exception raised while the client is gone into a
  counted, info-logged disconnect answered with nginx's 499 "Client Closed Request", so the request
  metrics do not count a 500 for it.
* A handler whose client closed its connection is cancelled by aiohttp's ``handler_cancellation``
  (apiserver/serve.py), as Go cancels the request's context; requestlimits.py lets a write finish
  even then. :func:`middleware` counts such a cancellation as a disconnect too, and a watch ends at
  once (apiserver/watchstream.py counts it under ``watch``), releasing its task and hub registration.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from pilothouse.machinery.errors import StatusError
from pilothouse.machinery.fastmetrics import CounterVec

__all__ = ["CLIENT_CLOSED_REQUEST", "CLIENT_DISCONNECTS", "client_gone", "count",
           "middleware"]

log = logging.getLogger("pilothouse.apiserver.disconnects")

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
        count(request, error)
        return web.Response(status=CLIENT_CLOSED_REQUEST, reason="Client Closed Request")
    except asyncio.CancelledError as cancelled:
        # aiohttp's handler_cancellation: the client closed the connection (a watch ends quietly and
        # counts itself, apiserver/watchstream.py)
        if client_gone(request):
            count(request, cancelled)
        raise


def count(request: web.BaseRequest, error: BaseException, phase: str = "") -> None:
    """Count and log (at info) a request whose client left, by phase."""
    # The body was not read to its end: the client left while sending it.
    phase = phase or ("response" if request.content.at_eof() else "request")
    CLIENT_DISCONNECTS.labels(phase).inc()
    log.info("client %s disconnected during the %s of %s %s (%s: %s)", request.remote, phase,
             request.method, request.path, type(error).__name__, error)
