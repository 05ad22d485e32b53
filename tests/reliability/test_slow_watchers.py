"""Watchers that stop reading (issue 15): the API server's memory stays bounded, the watcher is closed
(as kube-apiserver's cacher closes an unresponsive watcher; the client relists and re-watches) and the
closure is counted in ``apiserver_terminated_watchers_total``."""

from __future__ import annotations

import asyncio
import re
import socket
import time
import urllib.request
from pathlib import Path

from pilothouse.client.rest import APIClient, resource
from tests.conftest import ServerProcess

CONFIGMAPS = resource("", "v1", "configmaps")
# 20 MB of events per watcher: more than the kernel's socket buffers hold (4 MB here), so the rest
# waits in the server.
WATCHERS, WRITES, VALUE = 40, 100, "x" * 200_000


def rss_bytes(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    assert found, status
    return int(found.group(1)) * 1024


def stalled_watch(port: int, path: str) -> socket.socket:
    """A watch whose client never reads: a small receive buffer, so the kernel absorbs little and
    the rest has to wait in the server."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n\r\n".encode())
    return sock


def closed_by_server(sock: socket.socket, timeout: float) -> bool:
    """Drain what the kernel holds; True once the server has closed (EOF or reset)."""
    sock.settimeout(timeout)
    try:
        while sock.recv(1 << 20):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


def terminated_watchers(url: str, resource_name: str) -> float:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    assert "# TYPE apiserver_terminated_watchers_total counter" in text, text
    line = rf'^apiserver_terminated_watchers_total\{{group="",resource="{resource_name}"\}} (\S+)$'
    found = re.search(line, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def test_watchers_that_never_read_are_closed_and_memory_stays_bounded(server: ServerProcess) -> None:
    namespace_path = "/api/v1/namespaces/default/configmaps"
    async with APIClient(server.url) as client:
        # Warm up: the same writes once (the store's event ring, the allocator's arenas), so what
        # grows afterwards is what the watchers hold.
        for i in range(WRITES):
            await client.create(CONFIGMAPS, {"metadata": {"name": f"warm-{i}"}, "data": {"v": VALUE}}, "default")
        for i in range(WRITES):
            await client.delete(CONFIGMAPS, f"warm-{i}", "default")
        before = rss_bytes(server.process.pid)
        stalled = [stalled_watch(server.port, f"{namespace_path}?watch=1") for _ in range(WATCHERS)]
        # A well-behaved watcher alongside: it reads everything and is never cut off.
        seen: list[str] = []

        async def follow() -> None:
            async for event in client.watch(CONFIGMAPS, "default", resource_version="0"):
                name = event["object"]["metadata"].get("name", "")
                if event["type"] == "ADDED" and name.startswith("cm-"):
                    seen.append(name)
                if len(seen) == WRITES:
                    return

        reader = asyncio.create_task(follow())
        await asyncio.sleep(1)
        try:
            for i in range(WRITES):
                await client.create(CONFIGMAPS, {"metadata": {"name": f"cm-{i}"}, "data": {"v": VALUE}}, "default")
            await asyncio.wait_for(reader, 60)
            assert seen == [f"cm-{i}" for i in range(WRITES)]
            peak = rss_bytes(server.process.pid)
            # Unbounded, each stalled watcher held its own copy of every event the kernel did not take
            # (about 600 MB here, growing with every write); bounded, they share one copy of a few
            # dozen events until they are closed (about 90 MB, half of it the writes' own).
            growth = peak - before
            assert growth < 160 * 2**20, f"API server RSS grew by {growth / 2**20:.0f} MiB"
            deadline = time.monotonic() + 30
            while terminated_watchers(server.url, "configmaps") < WATCHERS:
                assert time.monotonic() < deadline, terminated_watchers(server.url, "configmaps")
                await asyncio.sleep(0.5)
            closed = await asyncio.to_thread(lambda: [closed_by_server(s, 5) for s in stalled])
            assert all(closed), closed.count(False)
        finally:
            reader.cancel()
            for sock in stalled:
                sock.close()
