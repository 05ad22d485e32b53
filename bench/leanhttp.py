"""A minimal HTTP/1.1 keep-alive client for load generation: one connection per worker, requests
written as prebuilt bytes, responses read by Content-Length or chunked framing.

Why not aiohttp's client here: on this 2-core machine the load generator shares the CPU with the
server it measures, and aiohttp's client spent ~250 µs of CPU per request (more than half of what
the API server spends on a create). This one spends a fraction of that, so the figures say more
about the server. It only speaks what the benchmarks need: no TLS, no redirects, no proxies.
"""

from __future__ import annotations

import asyncio


class LeanConnection:
    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        """Open the connection now (a benchmark does it before its clock starts)."""
        if self.writer is None:
            await self._connect()

    async def _connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port, limit=1 << 22)

    async def request(self, method: str, path: str, body: bytes = b"",
                      content_type: str = "application/json", accept: str = "application/json") -> tuple[int, bytes]:
        if self.writer is None:
            await self._connect()
        assert self.reader is not None and self.writer is not None
        head = (f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nAccept: {accept}\r\n"
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
        return status, payload

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except OSError:
                pass
            self.writer = None
