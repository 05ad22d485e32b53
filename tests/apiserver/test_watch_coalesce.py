"""A watch's events in chunks: a trickle of events on a busy stream shares chunks (at most one send
per ``FLUSH_INTERVAL``), an idle stream's event goes out at once, and every event arrives, in order.

Raw HTTP over a socket, so that the chunks are what is counted, not the lines a client reassembles.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from tests.conftest import ServerProcess

CONFIGMAPS = "/api/v1/namespaces/default/configmaps"


def send(server: ServerProcess, method: str, path: str, body: Any) -> dict[str, Any]:
    request = urllib.request.Request(server.url + path, data=json.dumps(body).encode(), method=method,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return dict(json.loads(response.read()))


class ChunkReader:
    """A watch over a raw socket: each chunk of the chunked response, as it arrives, with its time."""

    def __init__(self, server: ServerProcess, path: str) -> None:
        address = urlsplit(server.url)
        self.socket = socket.create_connection((address.hostname, address.port), timeout=30)
        self.socket.sendall(f"GET {path} HTTP/1.1\r\nHost: {address.netloc}\r\n\r\n".encode())
        self.file = self.socket.makefile("rb")
        while self.file.readline() not in (b"\r\n", b""):
            pass  # the status line and headers
        self.chunks: list[tuple[float, bytes]] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            while True:
                size = int(self.file.readline().strip() or b"0", 16)
                if size == 0:
                    return
                data = self.file.read(size)
                self.file.readline()
                self.chunks.append((time.monotonic(), data))
        except OSError:
            return

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for _, chunk in self.chunks for line in chunk.splitlines() if line.strip()]

    def close(self) -> None:
        self.socket.close()


def test_a_trickle_of_events_shares_chunks_and_loses_none(server: ServerProcess) -> None:
    created = send(server, "POST", CONFIGMAPS, {"apiVersion": "v1", "kind": "ConfigMap",
                                                 "metadata": {"name": "trickle"}, "data": {"n": "0"}})
    revision = created["metadata"]["resourceVersion"]
    watch = ChunkReader(server, f"{CONFIGMAPS}?watch=true&resourceVersion={revision}"
                                f"&fieldSelector=metadata.name%3Dtrickle")
    try:
        # One update at a time, each answered before the next: events reach the watch one by one,
        # a few milliseconds apart (before, each went out as its own chunk).
        updates = 60
        for n in range(1, updates + 1):
            request = urllib.request.Request(
                f"{server.url}{CONFIGMAPS}/trickle", data=json.dumps({"data": {"n": str(n)}}).encode(),
                method="PATCH", headers={"Content-Type": "application/merge-patch+json"})
            urllib.request.urlopen(request, timeout=30).read()
        deadline = time.monotonic() + 10
        while len(watch.events()) < updates and time.monotonic() < deadline:
            time.sleep(0.05)
        events = watch.events()
        assert [e["object"]["data"]["n"] for e in events] == [str(n) for n in range(1, updates + 1)]
        assert all(e["type"] == "MODIFIED" for e in events)
        assert len(watch.chunks) <= updates * 2 // 3, f"{len(watch.chunks)} chunks for {updates} events"
    finally:
        watch.close()


def test_an_idle_streams_event_goes_out_at_once(server: ServerProcess) -> None:
    created = send(server, "POST", CONFIGMAPS, {"apiVersion": "v1", "kind": "ConfigMap",
                                                 "metadata": {"name": "idle"}, "data": {"n": "0"}})
    watch = ChunkReader(server, f"{CONFIGMAPS}?watch=true&resourceVersion={created['metadata']['resourceVersion']}"
                                f"&fieldSelector=metadata.name%3Didle")
    try:
        time.sleep(0.5)  # the stream has sent nothing for far longer than FLUSH_INTERVAL
        request = urllib.request.Request(
            f"{server.url}{CONFIGMAPS}/idle", data=json.dumps({"data": {"n": "1"}}).encode(),
            method="PATCH", headers={"Content-Type": "application/merge-patch+json"})
        urllib.request.urlopen(request, timeout=30).read()
        answered = time.monotonic()
        deadline = answered + 10
        while not watch.chunks and time.monotonic() < deadline:
            time.sleep(0.001)
        assert watch.events()[0]["object"]["data"] == {"n": "1"}
        # Not held for FLUSH_INTERVAL: it left with the write (a generous bound for a loaded machine).
        assert watch.chunks[0][0] - answered < 0.5
    finally:
        watch.close()
