"""A minimal HTTP/1.1 keep-alive client for load generation: one connection per worker, requests
written as prebuilt bytes, responses read by Content-Length or chunked framing.

Why not aiohttp's client here: on this 2-core machine the load generator shares the CPU with the
server it measures, and aiohttp's client spent ~250 µs of CPU per request (more than half of what
the API server spends on a create). This one spends a fraction of that, so the figures say more
about the server. It only speaks what the benchmarks need: HTTP/1.1, over TLS when given a
:class:`ResumingContext` (with session reuse, as Go's and browsers' clients resume), no redirects,
no proxies.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any


class ResumingContext(ssl.SSLContext):
    """A client SSLContext that offers the last TLS session it saw on every new connection.

    asyncio wraps each connection with ``wrap_bio`` itself and has no parameter for a session, so the
    session is offered here; :class:`LeanConnection` keeps ``session`` up to date. A resumed handshake
    skips the certificate exchange and the server's signature, which is most of a handshake's cost.
    """

    session: ssl.SSLSession | None = None

    def wrap_bio(self, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO, server_side: bool = False,
                 server_hostname: Any = None, session: ssl.SSLSession | None = None) -> ssl.SSLObject:
        return super().wrap_bio(incoming, outgoing, server_side, server_hostname, session or self.session)


class LeanConnection:
    def __init__(self, host: str, port: int, ssl_context: ResumingContext | None = None) -> None:
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        #: Whether this connection's TLS handshake resumed an earlier session.
        self.resumed = False
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        """Open the connection now (a benchmark does it before its clock starts)."""
        if self.writer is None:
            await self._connect()

    async def _connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(
            self.host, self.port, limit=1 << 22, ssl=self.ssl_context,
            server_hostname=self.host if self.ssl_context else None)
        ssl_object = self.writer.get_extra_info("ssl_object")
        self.resumed = bool(ssl_object and ssl_object.session_reused)

    def _remember_session(self) -> None:
        """TLS 1.3 sends its session tickets after the handshake: after a first response, the
        connection's session can be resumed by the next connection."""
        if self.ssl_context is not None and self.ssl_context.session is None and self.writer is not None:
            ssl_object = self.writer.get_extra_info("ssl_object")
            if ssl_object is not None and ssl_object.session is not None and ssl_object.session.has_ticket:
                self.ssl_context.session = ssl_object.session

    async def request(self, method: str, path: str, body: bytes = b"",
                      content_type: str = "application/json", accept: str = "application/json",
                      headers: str = "") -> tuple[int, bytes]:
        """``headers``: further header lines, each ending in CRLF (``Authorization``, ``User-Agent``)."""
        if self.writer is None:
            await self._connect()
        assert self.reader is not None and self.writer is not None
        head = (f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nAccept: {accept}\r\n{headers}"
                f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n").encode()
        self.writer.write(head + body)
        header = await self.reader.readuntil(b"\r\n\r\n")
        status = int(header[9:12])
        lowered = header.lower()
        index = lowered.find(b"content-length:")
        if index >= 0:
            end = lowered.index(b"\r\n", index)
            payload = await self.reader.readexactly(int(header[index + 15:end]))
        elif b"transfer-encoding: chunked" in lowered:
            parts = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n"))[:-2].split(b";")[0], 16)
                data = await self.reader.readexactly(size + 2)
                if size == 0:
                    break
                parts.append(data[:-2])
            payload = b"".join(parts)
        else:
            raise RuntimeError(f"response without framing: {header!r}")
        self._remember_session()
        return status, payload

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except OSError:
                pass
            self.writer = None
