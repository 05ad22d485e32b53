"""Keep-alive HTTP/1.1 connections for the API client's unary requests (GET, POST, PUT, PATCH, DELETE).

Why not aiohttp's client request here: it costs ~545 µs of CPU per request on top of the ~365 µs the
same request costs through a minimal client on the machines we measure (``bench/agent_client.py
--clients api,lean``, ``docs/decisions/density.md``): its request, response and connector objects,
URL building, cookie handling and a writer task per request. Every component sends a few such requests
per pod, and 5,000 simulated kubelets renew 500 Leases a second on the server's own cores. Watches,
logs and upgraded streams stay on aiohttp, where a request's fixed cost is spread over a long stream.

What this speaks is what the API server answers to an API client: HTTP/1.1 with keep-alive, a
``Content-Length`` or chunked body, ``Connection: close`` honoured, over TCP or TLS (the client's
:class:`ssl.SSLContext`, so client certificates work as before). No redirects, proxies, cookies,
compression (no ``Accept-Encoding`` is sent) or ``Expect: 100-continue``.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from typing import cast
from urllib.parse import quote, urlsplit

__all__ = ["IDLE_LIMIT", "ConnectionPool", "Response"]

#: A response's header block may not be longer than this (aiohttp's client allows 8 KiB a line).
_MAX_HEAD = 64 * 1024
#: Sent again once when a kept-alive connection turns out closed (aiohttp's ``IDEMPOTENT_METHODS``).
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
#: A connection idle longer than this is closed rather than reused (aiohttp's client keeps 15 s): well
#: inside the servers' own idle timeouts (aiohttp's server 75 s, kube-apiserver's and Go's 90 s), so
#: a request does not go out on a connection the server is closing at that moment.
IDLE_LIMIT = 15.0
#: What a request target may carry unescaped; anything else (a non-ASCII path) is percent-encoded.
_TARGET_SAFE = "!#$%&'()*+,/:;=?@[]~"


@dataclass(frozen=True)
class Response:
    status: int
    reason: str
    #: header names lower-cased; a repeated header keeps its last value
    headers: dict[str, str]
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()


class ProtocolViolation(ConnectionError):
    """The server's answer was not HTTP/1.1 as this client reads it: the connection is dropped."""


class IncompleteAnswer(ConnectionError):
    """The connection ended part way through an answer."""


class _Connection(asyncio.Protocol):
    """One connection; a response is parsed as its bytes arrive and handed over whole."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._buffer = bytearray()
        self._waiter: asyncio.Future[Response] | None = None
        # the response being read
        self._head: tuple[int, str, dict[str, str]] | None = None
        self._length: int | None = None  # bytes of body expected; None: chunked or until close
        self._chunked = False
        self._chunks: list[bytes] = []
        self._no_body = False  # the answer to a HEAD: its Content-Length describes a body not sent
        self.keep_alive = True
        #: the loop's time when its last answer was read
        self.idle_since = 0.0

    # --------------------------------------------------------------- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, though they behave as one
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            if self._head is not None and self._length is None and not self._chunked:
                self._finish(bytes(self._buffer))  # a body delimited by the connection's end
            elif self._head is None and not self._buffer:
                self._waiter.set_exception(ConnectionResetError(
                    f"the server closed the connection before answering{': ' + str(exc) if exc else ''}"))
            else:  # not sent again: the server may have acted on the request
                self._waiter.set_exception(IncompleteAnswer(
                    f"the server closed the connection in the middle of its answer{': ' + str(exc) if exc else ''}"))

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self._waiter is None or self._waiter.done():
            if self._buffer:  # nothing was asked: the connection is out of step
                self.abort()
            return
        try:
            self._parse()
        except (ProtocolViolation, ValueError) as error:
            self._waiter.set_exception(ProtocolViolation(f"malformed response: {error}"))
            self.abort()

    # --------------------------------------------------------------------- requests

    def send(self, request: bytes, no_body: bool = False) -> asyncio.Future[Response]:
        assert self.transport is not None and self._waiter is None
        self._waiter = asyncio.get_running_loop().create_future()
        self._no_body = no_body
        self.transport.write(request)
        return self._waiter

    @property
    def usable(self) -> bool:
        return not self.closed and self.transport is not None and not self.transport.is_closing()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    # ---------------------------------------------------------------------- parsing

    def _parse(self) -> None:
        if self._head is None:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > _MAX_HEAD:
                    raise ProtocolViolation("header block too long")
                return
            self._read_head(bytes(self._buffer[:end]))
            del self._buffer[:end + 4]
        if self._chunked:
            self._parse_chunks()
        elif self._length is not None and len(self._buffer) >= self._length:
            if len(self._buffer) == self._length:  # the usual case: one copy, not a slice and a copy
                body = bytes(self._buffer)
                self._buffer.clear()
            else:
                body = bytes(self._buffer[:self._length])
                del self._buffer[:self._length]
            self._finish(body)

    def _read_head(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        code, _, reason = rest.partition(" ")
        if not version.startswith("HTTP/1.") or not code.isdigit():
            raise ProtocolViolation(f"status line {lines[0][:80]!r}")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                raise ProtocolViolation(f"header line {line[:80]!r}")
            headers[name.strip().lower()] = value.strip()
        status = int(code)
        self._head = (status, reason, headers)
        connection = headers.get("connection", "").lower()
        self.keep_alive = version == "HTTP/1.1" and "close" not in connection
        if self._no_body:
            self._length = 0
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            self._chunked = True
        elif "content-length" in headers:
            self._length = int(headers["content-length"])
            if self._length < 0:
                raise ProtocolViolation("negative Content-Length")
        elif status in (204, 304) or 100 <= status < 200:
            self._length = 0
        else:
            self.keep_alive = False  # the body ends with the connection

    def _parse_chunks(self) -> None:
        while True:
            line_end = self._buffer.find(b"\r\n")
            if line_end < 0:
                return
            size = int(bytes(self._buffer[:line_end]).split(b";", 1)[0].strip(), 16)
            if size == 0:
                # the last chunk, then trailers (none expected) up to an empty line
                trailer_end = self._buffer.find(b"\r\n\r\n", line_end)
                if trailer_end < 0:
                    return
                del self._buffer[:trailer_end + 4]
                self._finish(b"".join(self._chunks))
                return
            if len(self._buffer) < line_end + 2 + size + 2:
                return
            start = line_end + 2
            self._chunks.append(bytes(self._buffer[start:start + size]))
            del self._buffer[:start + size + 2]

    def _finish(self, body: bytes) -> None:
        assert self._head is not None and self._waiter is not None
        status, reason, headers = self._head
        waiter = self._waiter
        self._waiter, self._head, self._length, self._chunked, self._chunks = None, None, None, False, []
        waiter.set_result(Response(status, reason, headers, body))


class ConnectionPool:
    """Connections to one server, at most ``limit`` at once; an idle one is reused (the most recent
    first, so that the pool shrinks back under the server's idle timeout when the load falls)."""

    def __init__(self, server: str, ssl_context: ssl.SSLContext | None, limit: int) -> None:
        self.server = server
        url = urlsplit(server)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"not an http(s) URL: {server!r}")
        self.host = url.hostname
        self.port = url.port or (443 if url.scheme == "https" else 80)
        self.prefix = url.path.rstrip("/")
        self.ssl = (ssl_context or ssl.create_default_context()) if url.scheme == "https" else None
        host = f"[{self.host}]" if ":" in self.host else self.host
        default_port = self.port == (443 if self.ssl else 80)
        self.authority = host if default_port else f"{host}:{self.port}"
        self._slots = asyncio.Semaphore(limit)
        self._idle: list[_Connection] = []
        self._open: set[_Connection] = set()
        #: connections made so far (a reused one is not counted again)
        self.connections_made = 0

    async def request(self, method: str, target: str, headers: str, body: bytes | None) -> Response:
        """``target``: the path and query, encoded; ``headers``: header lines, each ending in CRLF.
        A timeout is the caller's (``asyncio.timeout``): a request cut short drops its connection."""
        if not target.isascii():
            target = quote(target, safe=_TARGET_SAFE)
        head = f"{method} {self.prefix}{target} HTTP/1.1\r\nHost: {self.authority}\r\n{headers}"
        if body is not None:
            request = f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body
        else:
            request = f"{head}\r\n".encode()
        no_body = method == "HEAD"
        async with self._slots:
            connection, reused = await self._connection()
            try:
                response = await connection.send(request, no_body)
            except ConnectionResetError:
                self._drop(connection)
                if not (reused and method in _IDEMPOTENT):
                    raise
                # The server closed a kept-alive connection as the request went out (its idle timeout):
                # once more on a new one, as aiohttp's client and Go's transport do for such methods.
                connection, _ = await self._connection(fresh=True)
                try:
                    response = await connection.send(request, no_body)
                except BaseException:
                    self._drop(connection)
                    raise
            except BaseException:
                self._drop(connection)  # cancelled or failed mid-request: its framing is lost
                raise
            if connection.keep_alive and connection.usable:
                connection.idle_since = asyncio.get_running_loop().time()
                self._idle.append(connection)
            else:
                self._drop(connection)
            return response

    async def _connection(self, fresh: bool = False) -> tuple[_Connection, bool]:
        """A connection and whether it was used before."""
        loop = asyncio.get_running_loop()
        while self._idle and not fresh:
            connection = self._idle.pop()
            if connection.usable and loop.time() - connection.idle_since < IDLE_LIMIT:
                return connection, True
            self._drop(connection)
        _, connection = await loop.create_connection(
            _Connection, self.host, self.port, ssl=self.ssl, server_hostname=self.host if self.ssl else None)
        self._open.add(connection)
        self.connections_made += 1
        return connection, False

    def _drop(self, connection: _Connection) -> None:
        connection.abort()
        self._open.discard(connection)

    def close(self) -> None:
        for connection in self._open:
            if connection.transport is not None:
                connection.transport.close()
        self._open.clear()
        self._idle.clear()
