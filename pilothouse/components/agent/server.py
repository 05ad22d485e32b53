"""The node agent's streaming server: kubelet's ``/containerLogs``, ``/exec``, ``/attach``, ``/portForward``.

The API server proxies ``kubectl logs/exec/attach/port-forward`` here (to the address and port the
Node advertises in ``status.addresses`` and ``status.daemonEndpoints.kubeletEndpoint``), so the paths,
query parameters, error texts and stream protocols are kubelet's:

- ``GET /containerLogs/{namespace}/{pod}/{container}`` with ``follow``, ``previous``, ``tailLines``,
  ``sinceSeconds``/``sinceTime``, ``timestamps``, ``limitBytes``: chunked ``text/plain``, each chunk
  written as the engine produces it. Errors are plain text, as kubelet writes them; the API server
  turns them into a Status.
- ``/exec/{namespace}/{pod}/{container}?command=..&stdin=&stdout=&stderr=&tty=`` and ``/attach/...``:
  websocket, channel protocol v5 (or v4), see :mod:`.streaming.remotecommand`.
- ``/portForward/{namespace}/{pod}``: websocket ``SPDY/3.1+portforward.k8s.io`` whose binary payloads
  form one SPDY byte stream (kubectl), see :mod:`.streaming.portforward`; or the websocket channel
  protocol ``v4.channel.k8s.io`` with ``?port=`` (the official Python client), see
  :mod:`.streaming.wsportforward`.

The raw ``Upgrade: SPDY/3.1`` fallback is refused with 400: aiohttp's server parser hands over the
socket only for ``websocket``/``tcp`` upgrades, and kubectl 1.32 uses websockets by default.
Plain HTTP without authentication by default; with ``ssl_context`` and ``middlewares`` (see
:mod:`.servingtls`) HTTPS, authenticated and authorised as kubelet's port is.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from aiohttp import WSMsgType, web
from prometheus_client import CONTENT_TYPE_LATEST

from pilothouse.components.agent.runtime.interface import ContainerNotFound, ContainerRuntime, RuntimeError_
from pilothouse.components.agent.streaming import channels
from pilothouse.components.agent.streaming.lookup import PodLookup, StreamTargetError
from pilothouse.components.agent.streaming.portforward import Connector, PortForwardSession
from pilothouse.components.agent.streaming.remotecommand import StreamOptions, serve_session
from pilothouse.components.agent.streaming.spdy import SpdyError
from pilothouse.components.agent.streaming.wsportforward import ChannelPortForward, parse_ports
from pilothouse.components.componentserver import metrics_response
from pilothouse.machinery.errors import bad_request
from pilothouse.machinery.query import flag as query_flag

__all__ = ["DEFAULT_PORT", "PORTFORWARD_PROTOCOL", "StreamingServer"]

log = logging.getLogger("pilothouse.agent.server")

DEFAULT_PORT = 10250
PORTFORWARD_PROTOCOL = "SPDY/3.1+portforward.k8s.io"
#: The websocket channel protocol of port-forward (the official Python client's); no subprotocol
#: at all means the same, binary.
CHANNEL_PROTOCOLS = ("v4.channel.k8s.io",)


def _text_error(status: int, message: str) -> web.Response:
    # kubelet answers with go-restful's WriteError: the error text, plain.
    return web.Response(status=status, text=message, content_type="text/plain")


def _upgrade_required() -> web.Response:
    body = bad_request("Upgrade request required").to_status()
    return web.Response(status=400, body=orjson.dumps(body), content_type="application/json")


def _is_websocket(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


async def _watch_disconnect(request: web.Request, task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` once the client's connection is gone (aiohttp does not cancel handlers)."""
    while not task.done():
        transport = request.transport
        if transport is None or transport.is_closing():
            task.cancel()
            return
        await asyncio.sleep(0.5)


class StreamingServer:
    """kubelet's streaming endpoints over a :class:`ContainerRuntime` and a :class:`PodLookup`."""

    def __init__(self, runtime: ContainerRuntime, lookup: PodLookup, *, address: str = "0.0.0.0",
                 port: int = DEFAULT_PORT, connect: Callable[[str, int], Any] | None = None,
                 ssl_context: ssl.SSLContext | None = None, middlewares: tuple[Any, ...] = (),
                 resource_metrics: Callable[[], Awaitable[bytes]] | None = None) -> None:
        self.runtime = runtime
        self.lookup = lookup
        self.address = address
        self.port = port
        #: (host, port) → (reader, writer); tests may route pod addresses elsewhere.
        self._open_connection = connect or asyncio.open_connection
        self._runner: web.AppRunner | None = None
        self.ssl_context = ssl_context
        self.middlewares = middlewares
        #: the kubelet's /metrics/resource page (agent/resourcemetrics.py), when the agent has pods to read
        self.resource_metrics = resource_metrics

    # ------------------------------------------------------------------ lifecycle

    def build_app(self) -> web.Application:
        app = web.Application(middlewares=self.middlewares)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics)  # kubelet's; authorised as nodes/metrics over TLS
        app.router.add_get("/metrics/resource", self._resource_metrics)
        app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", self._logs)
        for verb in ("exec", "attach"):
            app.router.add_route("*", f"/{verb}/{{namespace}}/{{pod}}/{{container}}", self._remote_command)
        app.router.add_route("*", "/portForward/{namespace}/{pod}", self._port_forward)
        return app

    async def start(self) -> None:
        self._runner = web.AppRunner(self.build_app(), access_log=None, handle_signals=False,
                                     shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.address, self.port, reuse_address=True,
                           ssl_context=self.ssl_context)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        if self.port == 0 and sockets:
            self.port = int(sockets[0].getsockname()[1])
        log.info("streaming server listening on %s:%d", self.address, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok", content_type="text/plain")

    async def _metrics(self, request: web.Request) -> web.Response:
        return metrics_response(request)

    async def _resource_metrics(self, request: web.Request) -> web.Response:
        if self.resource_metrics is None:
            raise web.HTTPNotFound()
        return web.Response(body=await self.resource_metrics(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _container(self, namespace: str, pod: str, container: str, previous: bool = False) -> str | None:
        try:
            return await self.lookup.container_id(namespace, pod, container, previous)
        except ContainerNotFound:
            return None

    # ------------------------------------------------------------------ logs

    async def _logs(self, request: web.Request) -> web.StreamResponse:
        namespace, pod, container = (request.match_info[k] for k in ("namespace", "pod", "container"))
        query = request.query
        try:
            tail = int(query["tailLines"]) if query.get("tailLines") else None
            limit = int(query["limitBytes"]) if query.get("limitBytes") else None
            since: float | None = None
            if query.get("sinceSeconds"):
                since = time.time() - int(query["sinceSeconds"])
            elif query.get("sinceTime"):
                since = dt.datetime.fromisoformat(query["sinceTime"].replace("Z", "+00:00")).timestamp()
        except ValueError as error:
            return _text_error(400, f"unable to decode query: {error}")
        previous = query_flag(request.query, "previous")
        try:
            container_id = await self._container(namespace, pod, container, previous)
        except StreamTargetError as error:
            return _text_error(error.status, error.message)
        if container_id is None:
            if previous:
                return _text_error(400, f'previous terminated container "{container}" in pod "{pod}" not found')
            return _text_error(400, f'container "{container}" in pod "{pod}" is waiting to start: '
                                    f"ContainerCreating")
        stream = self.runtime.logs(container_id, follow=query_flag(request.query, "follow"), tail=tail, since=since,
                                   timestamps=query_flag(request.query, "timestamps"))
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        response.enable_chunked_encoding()
        pump = asyncio.create_task(self._copy_logs(request, response, stream, limit))
        watcher = asyncio.create_task(_watch_disconnect(request, pump))
        try:
            await pump
        except asyncio.CancelledError:
            if not pump.cancelled():
                raise
        except ContainerNotFound:
            if not response.prepared:
                return _text_error(404, f'container "{container}" not found in pod "{pod}"')
        except (ConnectionError, RuntimeError_) as error:
            log.debug("log stream of %s/%s/%s ended: %s", namespace, pod, container, error)
        finally:
            watcher.cancel()
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()
        if not response.prepared:
            await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            await response.write_eof()
        return response

    @staticmethod
    async def _copy_logs(request: web.Request, response: web.StreamResponse, stream: AsyncIterator[bytes],
                         limit: int | None) -> None:
        first = True
        async for chunk in stream:
            if first:
                # Headers go out with the first bytes (or at the end): an engine error before any
                # output can still become an HTTP error.
                await response.prepare(request)
                first = False
            if limit is not None:
                chunk = chunk[:limit]
                limit -= len(chunk)
            if chunk:
                await response.write(chunk)
            if limit is not None and limit <= 0:
                return

    # ------------------------------------------------------------------ exec / attach

    async def _remote_command(self, request: web.Request) -> web.StreamResponse:
        namespace, pod, container = (request.match_info[k] for k in ("namespace", "pod", "container"))
        is_exec = request.path.startswith("/exec/")
        command = request.query.getall("command", [])
        stdin, stdout, stderr, tty = (query_flag(request.query, name) for name in ("stdin", "stdout", "stderr", "tty"))
        if not (stdin or stdout or stderr):
            return _text_error(400, "you must specify at least 1 of stdin, stdout, stderr")
        if tty and stderr:
            stderr = False  # kubelet: a tty merges stderr into stdout
        if is_exec and not command:
            return _text_error(400, "you must specify at least one command for the container")
        try:
            container_id = await self._container(namespace, pod, container)
            if container_id is not None:
                state = await self.runtime.inspect_container(container_id)
                if state.state != "running":
                    container_id = None
        except StreamTargetError as error:
            return _text_error(error.status, error.message)
        except ContainerNotFound:
            container_id = None
        if container_id is None:
            return _text_error(500, f'container not found ("{container}")')
        if not _is_websocket(request):
            return _upgrade_required()
        ws = web.WebSocketResponse(protocols=channels.SUPPORTED_PROTOCOLS, max_msg_size=0, autoping=True)
        await ws.prepare(request)
        opts = StreamOptions(stdin=stdin, stdout=stdout, stderr=stderr, tty=tty, command=command if is_exec else None)
        try:
            if is_exec:
                session = await self.runtime.exec(container_id, command, tty=tty, stdin=stdin,
                                                  stdout=stdout, stderr=stderr)
            else:
                session = await self.runtime.attach(container_id, stdin=stdin, tty=tty)
        except (RuntimeError_, OSError) as error:
            what = "error executing command in container" if is_exec else "error attaching to container"
            status = channels.status_failure(f"Internal error occurred: {what}: {error}")
            await ws.send_bytes(channels.encode(channels.ERROR, orjson.dumps(status)))
            await ws.close()
            return ws
        await serve_session(ws, session, opts)
        return ws

    # ------------------------------------------------------------------ port-forward

    async def _port_forward(self, request: web.Request) -> web.StreamResponse:
        namespace, pod = request.match_info["namespace"], request.match_info["pod"]
        try:
            pod_ip = await self.lookup.pod_ip(namespace, pod)
        except StreamTargetError as error:
            return _text_error(error.status, error.message)
        if not pod_ip:
            return _text_error(404, f'pod "{namespace}/{pod}" does not exist')
        if not _is_websocket(request):
            return _upgrade_required()
        channel_ports: list[int] = []
        if request.headers.get("Sec-WebSocket-Protocol", "").strip() != PORTFORWARD_PROTOCOL:
            try:  # the websocket channel protocol needs its ports up front (the SPDY one names them per stream)
                channel_ports = parse_ports(request.query.getall("port", []) + request.query.getall("ports", []))
            except ValueError as error:
                return _text_error(400, str(error))
        ws = web.WebSocketResponse(protocols=(PORTFORWARD_PROTOCOL, *CHANNEL_PROTOCOLS), max_msg_size=0,
                                   autoping=True)
        await ws.prepare(request)
        open_connection = self._open_connection

        async def connect(port: int) -> Any:
            return await asyncio.wait_for(open_connection(pod_ip, port), 10)

        connector: Connector = connect
        if ws.ws_protocol != PORTFORWARD_PROTOCOL:
            await _serve_channel_port_forward(ws, ChannelPortForward(ws.send_bytes, connector, channel_ports,
                                                                     f"{namespace}/{pod}"))
            return ws
        session = PortForwardSession(ws.send_bytes, connector, f"{namespace}/{pod}")
        try:
            async for message in ws:
                if message.type == WSMsgType.BINARY:
                    await session.feed(message.data)
                if session.closed.is_set():
                    break
        except SpdyError as error:
            log.info("port-forward to %s/%s: bad SPDY stream: %s", namespace, pod, error)
        except ConnectionError:
            pass
        finally:
            await session.close()
            await ws.close()
        return ws


async def _serve_channel_port_forward(ws: web.WebSocketResponse, session: ChannelPortForward) -> None:
    """Run ``session`` over ``ws`` until every port is done, or the client leaves."""

    async def read_frames() -> None:
        async for message in ws:
            if message.type == WSMsgType.BINARY:
                session.feed(message.data)
            elif message.type == WSMsgType.TEXT:  # the kubelet takes text frames as bytes too
                session.feed(message.data.encode())
        session.client_gone()

    reading = asyncio.create_task(read_frames())
    running = asyncio.create_task(session.run())
    try:
        await asyncio.wait((reading, running), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (reading, running):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await ws.close()
