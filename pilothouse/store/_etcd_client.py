"""A small asyncio client for etcd's v3 JSON gateway (``/v3/kv/*``, ``/v3/watch``) over aiohttp.

Why the gateway and not gRPC: see :mod:`pilothouse.store.etcd`. This module knows HTTP, endpoints,
timeouts, base64 and etcd's error strings; it knows nothing about the Store protocol except the error
classes it maps etcd failures to.

Endpoint failover: requests go to the endpoint that last answered; when it cannot be reached, the next
one is tried, so a stopped member costs one refused connection. A write is re-sent to another member
only when it certainly was not applied (the connection was refused, or etcd answered "no leader"
before proposing it); a write that timed out after being sent is ambiguous and surfaces as
:class:`UnavailableError` rather than being applied twice.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import time
from collections.abc import AsyncGenerator
from typing import Any

import aiohttp
import orjson

from pilothouse.store.interface import (
    CompactedError,
    FutureRevisionError,
    KeyValue,
    NoSpaceError,
    StoreError,
    UnavailableError,
)

__all__ = [
    "ERR_COMPACTED",
    "ERR_FUTURE_REV",
    "EtcdClient",
    "EtcdResponseError",
    "b64",
    "kv_from_json",
    "prefix_end",
    "unb64",
]

ERR_COMPACTED = "required revision has been compacted"
ERR_FUTURE_REV = "required revision is a future revision"
ERR_NO_SPACE = "database space exceeded"  # etcd's ErrNoSpace (its quota alarm is raised)
# etcd answers these before a proposal enters raft, so re-sending elsewhere cannot apply twice.
_NOT_APPLIED = ("no leader", "not capable", "too many requests")


def b64(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode()
    return base64.b64encode(data).decode("ascii")


def unb64(text: str | None) -> bytes:
    return base64.b64decode(text) if text else b""


def prefix_end(prefix: bytes) -> bytes:
    """etcd's range end for "every key starting with prefix" (``\\0`` = to the end of the keyspace)."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"


def kv_from_json(d: dict[str, Any]) -> KeyValue:
    return KeyValue(unb64(d.get("key")).decode(), unb64(d.get("value")),
                    int(d.get("create_revision", 0)), int(d.get("mod_revision", 0)))


class EtcdResponseError(StoreError):
    """etcd answered with an error this client has no better class for."""


class _NotSent(Exception):
    """The request certainly did not reach (or was not applied by) this endpoint: try the next one."""


class EtcdClient:
    """Talks to one etcd cluster through any of ``urls`` (``http(s)://host:port``)."""

    def __init__(self, urls: list[str], *, request_timeout: float = 5.0, connect_timeout: float = 1.0,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        if not urls:
            raise ValueError("no etcd endpoints")
        self.urls = [u.rstrip("/") for u in urls]
        self.request_timeout = request_timeout
        self.connect_timeout = connect_timeout
        self._ssl = ssl_context
        self._session: aiohttp.ClientSession | None = None
        self._current = 0  # index of the endpoint that last answered

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=256, ssl=self._ssl if self._ssl is not None else False)
        self._session = aiohttp.ClientSession(
            connector=connector, json_serialize=lambda o: orjson.dumps(o).decode(),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise UnavailableError("etcd client is closed")
        return self._session

    def _order(self) -> list[int]:
        n = len(self.urls)
        return [(self._current + i) % n for i in range(n)]

    def rotate(self) -> None:
        """Prefer the next member from now on (the current one proved unfit, e.g. lagging)."""
        self._current = (self._current + 1) % len(self.urls)

    async def call(self, path: str, body: dict[str, Any], *, write: bool) -> dict[str, Any]:
        """POST ``body`` to ``path`` on some member; the decoded response, or a StoreError."""
        deadline = time.monotonic() + self.request_timeout
        last: BaseException | None = None
        # Two passes over the members: right after a leader change every member may say "no leader"
        # for a moment; a short pause and a second pass usually lands on the new leader.
        for attempt in range(2):
            for i in self._order():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    result = await self._call_one(self.urls[i], path, body, remaining, write)
                except _NotSent as exc:
                    last = exc.__cause__ or exc
                    continue
                self._current = i
                return result
            if attempt == 0 and deadline - time.monotonic() > 0.2:
                await asyncio.sleep(0.1)
        raise UnavailableError(f"no etcd member answered {path} within {self.request_timeout}s: {last}")

    async def _call_one(self, url: str, path: str, body: dict[str, Any], timeout: float,
                        write: bool) -> dict[str, Any]:
        data = orjson.dumps(body)
        try:
            async with self.session.post(url + path, data=data, timeout=aiohttp.ClientTimeout(
                    total=timeout, sock_connect=min(self.connect_timeout, timeout)),
                    headers={"Content-Type": "application/json"}) as resp:
                raw = await resp.read()
                status = resp.status
        except aiohttp.ClientConnectorError as exc:
            raise _NotSent(str(exc)) from exc  # refused: the member is down, nothing was sent
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            if not write or _certainly_not_sent(exc):
                raise _NotSent(str(exc)) from exc
            # Sent, then no answer (timeout, reset): the write may or may not be applied. Re-sending
            # could apply it twice or report our own create as a conflict; let the caller decide.
            raise UnavailableError(f"etcd request {path} to {url} failed: {exc!r}") from exc
        try:
            doc: dict[str, Any] = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError as exc:
            raise UnavailableError(f"etcd {url}{path}: undecodable answer ({status})") from exc
        if status == 200 and "error" not in doc:
            return doc
        message = str(doc.get("message") or doc.get("error") or raw[:200].decode(errors="replace"))
        if any(s in message for s in _NOT_APPLIED):
            raise _NotSent(message)
        error = error_from_message(message, status, url + path)
        if not write and isinstance(error, UnavailableError):
            # A read that a member could not serve ("leader changed" while its leader was killed, a
            # timeout) changed nothing: ask the next member, as clientv3 retries reads (a 503 for one
            # member of three down, found by the chaos harness).
            raise _NotSent(message)
        raise error

    async def watch_stream(self, body: dict[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
        """One ``/v3/watch`` stream on some member: yields each decoded ``result`` message.

        Raises UnavailableError if no member accepts the stream; the iterator ends (or raises an
        aiohttp/OS error) when the stream breaks, and the caller resumes from its last revision.
        """
        return await self.stream("/v3/watch", body)

    async def stream(self, path: str, body: dict[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
        """A server-streaming gateway call (``/v3/watch``, ``/v3/maintenance/snapshot``) on some member."""
        last: BaseException | None = None
        for i in self._order():
            try:
                resp = await self.session.post(
                    self.urls[i] + path, data=orjson.dumps(body),
                    timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout,
                                                  sock_read=None),
                    headers={"Content-Type": "application/json"})
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                last = exc
                continue
            if resp.status != 200:
                raw = await resp.read()
                resp.release()
                last = UnavailableError(f"{path} on {self.urls[i]}: HTTP {resp.status} {raw[:200]!r}")
                continue
            self._current = i
            return _lines(resp)
        raise UnavailableError(f"no etcd member accepted {path}: {last}")


async def _lines(resp: aiohttp.ClientResponse) -> AsyncGenerator[dict[str, Any], None]:
    # The gateway writes one JSON document per line. Read raw chunks and split ourselves: a batch of
    # events can exceed aiohttp's readline() limit.
    buf = b""
    try:
        async for chunk in resp.content.iter_any():
            buf += chunk
            while True:
                nl = buf.find(b"\n")
                if nl < 0:
                    break
                line, buf = buf[:nl], buf[nl + 1:]
                if not line.strip():
                    continue
                doc = orjson.loads(line)
                if "error" in doc:
                    err = doc["error"]
                    msg = err.get("message", str(err)) if isinstance(err, dict) else str(err)
                    raise error_from_message(msg, 0, "watch")
                yield doc.get("result", {})
    finally:
        resp.close()


def _certainly_not_sent(exc: BaseException) -> bool:
    """Whether a failed request provably never reached etcd's request handler (safe to re-send a write).

    Two cases besides a refused connection: the body could not be fully written (the gateway needs the
    whole JSON body before it proposes anything), and a TLS certificate alert. The latter matters with
    TLS 1.3, where the client's handshake completes before the server checks the client certificate:
    the server's rejection (bad, unknown or missing certificate) then surfaces on the first write or
    read of the request instead of at connect time, yet the request was never processed.
    """
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            reason = (seen.reason or str(seen)).upper()
            if "ALERT" in reason and ("CERTIFICATE" in reason or "UNKNOWN_CA" in reason):
                return True
        if isinstance(seen, aiohttp.ClientOSError) and "Can not write request body" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def error_from_message(message: str, status: int, where: str) -> StoreError:
    if ERR_COMPACTED in message:
        return CompactedError(message)  # the caller fills in the compaction point
    if ERR_FUTURE_REV in message:
        return FutureRevisionError(message)
    if ERR_NO_SPACE in message:
        return NoSpaceError(f"etcd {where}: {message}")
    if status in (0, 408, 429, 500, 502, 503, 504) or any(
            s in message for s in ("timed out", "leader changed", "unavailable", "Unavailable",
                                   "stopped", "deadline")):
        return UnavailableError(f"etcd {where}: {message}")
    return EtcdResponseError(f"etcd {where}: HTTP {status}: {message}")
