"""A watch's events in chunks: a trickle of events on a busy stream shares chunks (at most one send
per ``FLUSH_INTERVAL``), an idle stream's event goes out at once, and every event arrives, in order.

In process, over a bare watch hub: the test publishes the events itself at the pace it chooses, so
what is tested does not hang on how fast this machine writes to its store (a first version of this
test drove a server process with PATCHes and assumed each took less than the interval; on a loaded CI
machine they did not, every event was rightly a chunk of its own, and the test failed). The chunks
are read raw off the socket: what is counted is the server's sends, not lines a client reassembles.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from pilothouse.apiserver import watchstream
from pilothouse.machinery.kinds import BUILTIN_RESOURCES
from pilothouse.store.interface import EventType, KeyValue, WatchEvent
from pilothouse.store.watchhub import WatchHub
from tests.apiserver.costhelpers import watch_server

CONFIGMAPS = next(r for r in BUILTIN_RESOURCES if r.plural == "configmaps" and not r.group)


@pytest.fixture
async def watch_client(hub: WatchHub) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    async with watch_server(hub, CONFIGMAPS, "/configmaps") as client:
        yield client


def publish(hub: WatchHub, n: int) -> None:
    """The configmap ``trickle`` changed to ``data.n = n``."""
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "trickle", "namespace": "default"},
                  "data": {"n": str(n)}}
    hub.publish([WatchEvent(EventType.PUT, KeyValue(CONFIGMAPS.key("default", "trickle"), orjson.dumps(config_map),
                                                    1, hub.revision + 1), None)])


class ChunkReader:
    """A watch over a raw connection: each chunk of the chunked response, with the loop time it came."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.chunks: list[tuple[float, bytes]] = []

    @classmethod
    async def open(cls, client: TestClient[web.Request, web.Application], path: str) -> ChunkReader:
        reader, writer = await asyncio.open_connection(client.host, client.port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {client.host}:{client.port}\r\n\r\n".encode())
        status = await reader.readline()
        assert b" 200 " in status, status
        while await reader.readline() not in (b"\r\n", b""):
            pass  # the headers
        return cls(reader, writer)

    async def read_until(self, events: int, timeout: float = 10) -> None:
        """Read chunks until ``events`` events have come (or fail after ``timeout`` seconds)."""
        async with asyncio.timeout(timeout):
            while len(self.events()) < events:
                size = int((await self.reader.readline()).strip() or b"0", 16)
                assert size, "the watch ended"
                data = await self.reader.readexactly(size)
                await self.reader.readline()
                self.chunks.append((asyncio.get_running_loop().time(), data))

    def events(self) -> list[dict[str, Any]]:
        return [orjson.loads(line) for _, chunk in self.chunks for line in chunk.splitlines() if line.strip()]

    def close(self) -> None:
        self.writer.close()


WATCH = "/configmaps?watch=true&resourceVersion=1"


async def test_a_trickle_of_events_shares_chunks_and_loses_none(
        hub: WatchHub, watch_client: TestClient[web.Request, web.Application], monkeypatch: pytest.MonkeyPatch) -> None:
    interval = 0.1  # ten times the real one: the bound below holds however slow this machine is
    monkeypatch.setattr(watchstream, "FLUSH_INTERVAL", interval)
    publish(hub, 1)  # revision 1: the watch starts after it
    watch = await ChunkReader.open(watch_client, WATCH)
    try:
        publish(hub, 2)
        await watch.read_until(1)  # an idle stream: the event went at once, and the stream is now busy
        loop = asyncio.get_running_loop()
        started = loop.time()
        updates = 60
        for n in range(3, updates + 2):
            publish(hub, n)
            # Time for the event to reach the sender, which before the interval wrote it at once,
            # each to a chunk of its own.
            await asyncio.sleep(0.002)
        await watch.read_until(updates)
        events = watch.events()
        assert [e["object"]["data"]["n"] for e in events] == [str(n) for n in range(2, updates + 2)]
        # The sends after the first are `interval` apart at least, all between `started` and the
        # last chunk's arrival (same loop, same clock): no more chunks than that span allows.
        span = watch.chunks[-1][0] - started
        allowed = 1 + int(span / interval) + 1
        assert len(watch.chunks) <= allowed, f"{len(watch.chunks)} chunks for {updates} events in {span:.3f} s"
        # And the trickle did share: 59 events, published 2 ms apart, in far fewer sends.
        assert len(watch.chunks) <= updates // 4, f"{len(watch.chunks)} chunks in {span:.3f} s"
    finally:
        watch.close()


async def test_an_idle_streams_event_goes_out_at_once_and_a_busy_ones_waits(
        hub: WatchHub, watch_client: TestClient[web.Request, web.Application], monkeypatch: pytest.MonkeyPatch) -> None:
    interval = 1.0
    monkeypatch.setattr(watchstream, "FLUSH_INTERVAL", interval)
    publish(hub, 1)
    watch = await ChunkReader.open(watch_client, WATCH)
    try:
        await asyncio.sleep(0.05)
        loop = asyncio.get_running_loop()
        published = loop.time()
        publish(hub, 2)
        await watch.read_until(1)
        # Idle: not held for the interval, it left with the write (a generous bound for a loaded machine).
        assert watch.chunks[0][0] - published < interval / 2
        publish(hub, 3)  # now busy: held until the interval since the first send has passed
        await watch.read_until(2)
        assert watch.chunks[1][0] - watch.chunks[0][0] >= interval * 0.9
        assert [e["object"]["data"]["n"] for e in watch.events()] == ["2", "3"]
    finally:
        watch.close()
