"""kubelet's websocket port-forward protocol (``v4.channel.k8s.io``), which the official Python
client's ``kubernetes.stream.portforward`` speaks (kubectl tunnels SPDY instead, see
:mod:`.portforward`).

One websocket carries the ports given in the query: port *i* has a data channel ``2i`` and an error
channel ``2i+1``, each opened by the server with the port number (two bytes, little endian). Every
frame is a channel byte followed by payload. The agent connects to each port at once and copies
bytes both ways; when every port's connection has ended (an error is written to its error channel
first, worded as the kubelet words it) the websocket closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from pilothouse.components.agent.streaming.portforward import Connector

__all__ = ["ChannelPortForward", "parse_ports"]

log = logging.getLogger("pilothouse.agent.portforward")

Sender = Callable[[bytes], Awaitable[None]]

_CHUNK = 32 * 1024


def parse_ports(values: list[str]) -> list[int]:
    """Ports from the ``port`` query values (the API server passes ``ports`` through as ``port``;
    each value may be a comma-separated list). ValueError says what is wrong, as the kubelet does."""
    ports: list[int] = []
    for value in values:
        if not value:
            raise ValueError('query parameter "port" cannot be empty')
        for text in value.split(","):
            if not text.isdigit() or int(text) > 65535:  # strconv.ParseUint(p, 10, 16)'s two failures
                reason = "invalid syntax" if not text.isdigit() else "value out of range"
                raise ValueError(f'unable to parse "{value}" as a port: strconv.ParseUint: parsing "{text}": {reason}')
            if int(text) < 1:
                raise ValueError(f'port "{value}" must be > 0')
            ports.append(int(text))
    if not ports:
        raise ValueError('query parameter "port" is required')
    return ports


class ChannelPortForward:
    """The ports of one websocket: :meth:`run` until every port's connection is over."""

    def __init__(self, send: Sender, connect: Connector, ports: list[int], target: str) -> None:
        self._send = send
        self._connect = connect
        self._ports = ports
        self._target = target
        self._inbound: list[asyncio.Queue[bytes | None]] = [asyncio.Queue() for _ in ports]

    def feed(self, frame: bytes) -> None:
        """A frame from the client: bytes for a port's data channel (anything else is ignored)."""
        if len(frame) < 2 or frame[0] % 2:
            return
        index = frame[0] // 2
        if index < len(self._inbound):
            self._inbound[index].put_nowait(frame[1:])

    def client_gone(self) -> None:
        for queue in self._inbound:
            queue.put_nowait(None)

    async def run(self) -> None:
        for index, port in enumerate(self._ports):
            opening = port.to_bytes(2, "little")
            await self._send(bytes((2 * index,)) + opening)
            await self._send(bytes((2 * index + 1,)) + opening)
        await asyncio.gather(*(self._forward(index, port) for index, port in enumerate(self._ports)))

    async def _forward(self, index: int, port: int) -> None:
        try:
            reader, writer = await self._connect(port)
        except (TimeoutError, OSError, LookupError) as error:
            message = f"error forwarding port {port} to pod {self._target}: {error or type(error).__name__}"
            log.info("%s", message)
            await self._send(bytes((2 * index + 1,)) + message.encode())
            return
        upload = asyncio.create_task(self._upload(index, writer))
        try:
            while chunk := await reader.read(_CHUNK):
                await self._send(bytes((2 * index,)) + chunk)
        except (ConnectionError, OSError) as error:
            log.debug("port-forward to port %d ended: %s", port, error)
        finally:
            upload.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await upload
            writer.close()

    async def _upload(self, index: int, writer: asyncio.StreamWriter) -> None:
        while (chunk := await self._inbound[index].get()) is not None:
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
