"""kubelet's port-forward protocol over one SPDY/3.1 connection: stream pairs in, TCP to the pod out.

Per local connection kubectl opens two SPDY streams carrying the headers ``streamtype`` (``error`` or
``data``), ``port`` and ``requestid``; it half-closes the error stream at once and sends the local
bytes on the data stream. Once both streams of a request id are there, the session connects to the
pod's port and pipes the bytes both ways; when the pod side closes, the data stream gets a FIN, and
so does the error stream (after any error text: kubectl prints what arrives there). RST_STREAM from
the client drops the connection, PING is echoed, GOAWAY ends the session.

The transport is abstract (``send`` for outgoing bytes, :meth:`PortForwardSession.feed` for incoming
ones) because the same session runs over websocket messages and over a raw upgraded socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from pilothouse.components.agent.streaming import spdy

__all__ = ["Connector", "PortForwardSession"]

log = logging.getLogger("pilothouse.agent.portforward")

Connector = Callable[[int], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]
Sender = Callable[[bytes], Awaitable[None]]

#: Bytes per DATA frame sent to the client.
_CHUNK = 32 * 1024


@dataclass
class _Pair:
    request_id: str
    port: int = 0
    error_stream: int = 0
    data_stream: int = 0
    inbound: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None
    reset: bool = False


class PortForwardSession:
    def __init__(self, send: Sender, connect: Connector, target: str = "") -> None:
        self._send_raw = send
        self._connect = connect
        self._target = target  # for error messages: "<pod>, uid <uid>" as kubelet words it
        self._codec = spdy.SpdyCodec()
        self._write_lock = asyncio.Lock()
        self._pairs: dict[str, _Pair] = {}
        self._by_stream: dict[int, _Pair] = {}
        self.closed = asyncio.Event()

    async def _send(self, *frames: spdy.Frame) -> None:
        # One lock over encode+send: header compression is stateful and frames must not interleave.
        async with self._write_lock:
            payload = b"".join(self._codec.encode(frame) for frame in frames)
            await self._send_raw(payload)

    async def feed(self, data: bytes) -> None:
        """Handle received bytes (any split); raises :class:`spdy.SpdyError` on a broken stream."""
        for frame in self._codec.feed(data):
            await self._handle(frame)

    async def _handle(self, frame: spdy.Frame) -> None:
        if isinstance(frame, spdy.SynStream):
            await self._on_syn_stream(frame)
        elif isinstance(frame, spdy.DataFrame):
            pair = self._by_stream.get(frame.stream_id)
            if pair is None or frame.stream_id != pair.data_stream:
                return  # the error stream's empty FIN, or a stream already gone
            if frame.data:
                pair.inbound.put_nowait(frame.data)
            if frame.fin:
                pair.inbound.put_nowait(None)
        elif isinstance(frame, spdy.RstStream):
            pair = self._by_stream.get(frame.stream_id)
            if pair is not None:
                pair.reset = True
                self._drop(pair)
        elif isinstance(frame, spdy.Ping):
            await self._send(spdy.Ping(frame.id))
        elif isinstance(frame, spdy.GoAway):
            await self.close()
        # SETTINGS, WINDOW_UPDATE, HEADERS: spdystream does no flow control; nothing to do.

    async def _on_syn_stream(self, frame: spdy.SynStream) -> None:
        headers = {name: values[0] if values else "" for name, values in frame.headers.items()}
        stream_type = headers.get("streamtype", "")
        port_text = headers.get("port", "")
        problem = ""
        if not port_text:
            problem = '"port" header is required'
        elif not port_text.isdigit() or not 0 < int(port_text) < 65536:
            problem = f'unable to parse "{port_text}" as a port'
        elif stream_type not in ("error", "data"):
            problem = f'invalid stream type "{stream_type}"' if stream_type else '"streamType" header is required'
        if problem:
            log.info("port-forward stream %d rejected: %s", frame.stream_id, problem)
            await self._send(spdy.RstStream(frame.stream_id, spdy.RST_CANCEL))
            return
        await self._send(spdy.SynReply(frame.stream_id))
        request_id = headers.get("requestid") or str(
            frame.stream_id if stream_type == "error" else frame.stream_id - 2)
        pair = self._pairs.setdefault(request_id, _Pair(request_id))
        pair.port = int(port_text)
        if stream_type == "error":
            pair.error_stream = frame.stream_id
        else:
            pair.data_stream = frame.stream_id
        self._by_stream[frame.stream_id] = pair
        if pair.error_stream and pair.data_stream and pair.task is None:
            pair.task = asyncio.create_task(self._forward(pair))

    def _drop(self, pair: _Pair) -> None:
        self._pairs.pop(pair.request_id, None)
        for stream_id in (pair.error_stream, pair.data_stream):
            self._by_stream.pop(stream_id, None)
        if pair.task is not None and not pair.task.done() and pair.task is not asyncio.current_task():
            pair.task.cancel()

    async def _forward(self, pair: _Pair) -> None:
        writer: asyncio.StreamWriter | None = None
        try:
            try:
                reader, writer = await self._connect(pair.port)
            except (TimeoutError, OSError, LookupError) as error:
                message = (f"error forwarding port {pair.port} to pod {self._target}: "
                           f"{error or type(error).__name__}")
                log.info("%s", message)
                await self._send(spdy.DataFrame(pair.error_stream, message.encode()))
                return
            upload = asyncio.create_task(self._upload(pair, writer))
            try:
                while True:
                    chunk = await reader.read(_CHUNK)
                    if not chunk:
                        break
                    await self._send(spdy.DataFrame(pair.data_stream, chunk))
            finally:
                upload.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await upload
        except (ConnectionError, OSError) as error:
            log.debug("port-forward %s ended: %s", pair.request_id, error)
        finally:
            if writer is not None:
                writer.close()
            if not pair.reset and not self.closed.is_set():
                with contextlib.suppress(Exception):
                    await self._send(spdy.DataFrame(pair.data_stream, flags=spdy.DATA_FLAG_FIN),
                                     spdy.DataFrame(pair.error_stream, flags=spdy.DATA_FLAG_FIN))
            self._drop(pair)

    async def _upload(self, pair: _Pair, writer: asyncio.StreamWriter) -> None:
        while True:
            chunk = await pair.inbound.get()
            if chunk is None:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(chunk)
            await writer.drain()

    async def close(self) -> None:
        """End every forwarded connection (the transport is gone or the client said GOAWAY)."""
        self.closed.set()
        tasks = [p.task for p in self._pairs.values() if p.task is not None]
        for pair in list(self._pairs.values()):
            self._drop(pair)
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
