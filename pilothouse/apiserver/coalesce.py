"""A response body written in pieces but sent in as few writes as it can: one, when it is small.

Why: the streamed LIST wrote its head, each page, its tail and the chunked terminator as four
``transport.write`` calls, so a 50-pod page went out as four TLS records (four ``SSL_write``
calls, each with its MAC, four sends) and reached the client as four chunks to reassemble. Over
plain HTTP that costs a little; over TLS every write is a record the client must decrypt apart
(measured on the HTTPS server: four ``SSL_write`` per list, docs/decisions/tls.md). Here the pieces are
gathered until they pass ``limit``: a body that never does goes out as one ``web.Response`` with a
Content-Length (one write with its headers); a larger one is streamed in chunks of about
``limit``, so a 10,000-pod list still never sits in memory whole.
"""

from __future__ import annotations

from aiohttp import web

__all__ = ["CoalescedBody"]

#: Gathered before the first write (and between later ones): a list page of 500 pods is ~750 KB.
DEFAULT_LIMIT = 256 * 1024


class CoalescedBody:
    def __init__(self, request: web.Request, content_type: str, limit: int = DEFAULT_LIMIT) -> None:
        self.request = request
        self.content_type = content_type
        self.limit = limit
        self._parts: list[bytes] = []
        self._size = 0
        self._stream: web.StreamResponse | None = None

    async def write(self, data: bytes) -> None:
        self._parts.append(data)
        self._size += len(data)
        if self._size >= self.limit:
            await self._flush()

    async def _flush(self) -> None:
        if self._stream is None:
            self._stream = web.StreamResponse()
            self._stream.content_type = self.content_type
            self._stream.enable_chunked_encoding()
            await self._stream.prepare(self.request)
        await self._stream.write(self._take())

    def _take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        self._size = 0
        return data

    async def finish(self) -> web.StreamResponse:
        """The response: whole, when nothing was sent yet; else the rest and the end of the stream,
        in one write."""
        if self._stream is None:
            return web.Response(body=self._take(), content_type=self.content_type)
        await self._stream.write_eof(self._take())
        return self._stream
