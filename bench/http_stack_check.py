"""Check, concretely, the HTTP features pilothouse needs from its server, for each candidate stack.

Why this exists: speed (bench/http_stack.py) is only half of the HTTP stack decision recorded in
docs/decisions/http-stack.md. The API server must also
- answer a websocket upgrade with a subprotocol it picked from the client's offer, in the client's order
  of preference as the Kubernetes apiserver does: `v5.channel.k8s.io` (exec/attach) and
  `SPDY/3.1+portforward.k8s.io` (port-forward tunnelled over a websocket, what kubectl >= 1.30 tries
  first). The latter is not an RFC 7230 token ('/' is a separator), so a strict parser may refuse it;
- stream a chunked response whose every write reaches the client at once (a watch that buffers is a
  watch that hangs);
- be drivable by an in-process test client that sees the stream as it is written.

Each check talks raw HTTP/1.1 over a socket where the claim is about the server's bytes, so that no
client library can hide or add behaviour. Prints one PASS/FAIL line per check; exits 1 if the aiohttp
checks fail (aiohttp is the chosen stack; the Starlette lines are there for the record).

Usage: .venv/bin/python bench/http_stack_check.py
"""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import os
import socket
import sys
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["main"]

HOST = "127.0.0.1"
# What kubectl 1.32 offers for exec/attach (newest first), and for port-forward over a websocket.
EXEC_OFFER = "v5.channel.k8s.io, v4.channel.k8s.io, v3.channel.k8s.io, v2.channel.k8s.io, channel.k8s.io"
PORT_FORWARD_OFFER = "SPDY/3.1+portforward.k8s.io"
SERVER_PROTOCOLS = ("v4.channel.k8s.io", "v5.channel.k8s.io", "SPDY/3.1+portforward.k8s.io")
STALL_S = 2.0  # a first watch line that has not arrived after this long was buffered, not flushed

results: list[tuple[str, str, bool, str]] = []


def record(stack: str, check: str, ok: bool, detail: str) -> None:
    results.append((stack, check, ok, detail))
    print(f"{'PASS' if ok else 'FAIL'}  {stack:26} {check:44} {detail}", flush=True)


async def raw_upgrade(port: int, path: str, offer: str) -> tuple[str, dict[str, str]]:
    """Send a websocket upgrade by hand; return the status line and the response headers."""
    reader, writer = await asyncio.open_connection(HOST, port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Protocol: {offer}\r\n\r\n"
        ).encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    writer.close()
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
    return lines[0], headers


async def raw_first_chunk(port: int, path: str, release: asyncio.Event) -> tuple[dict[str, str], bytes | None]:
    """GET a gated stream; return headers and the first line if it arrived while the handler still waits."""
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), STALL_S)
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
        first: bytes | None = None
        try:
            await asyncio.wait_for(reader.readline(), STALL_S)  # chunk size line
            first = await asyncio.wait_for(reader.readline(), STALL_S)
        except TimeoutError:
            first = None
        return headers, first
    except TimeoutError:
        return {}, None
    finally:
        release.set()
        try:  # let the handler finish its last write instead of failing on a closed socket
            await asyncio.wait_for(reader.read(), STALL_S)
        except TimeoutError:
            pass
        writer.close()


async def check_upgrades(stack: str, port: int) -> None:
    for offer, want in ((EXEC_OFFER, "v5.channel.k8s.io"), (PORT_FORWARD_OFFER, PORT_FORWARD_OFFER)):
        try:
            status, headers = await raw_upgrade(port, "/exec", offer)
            got = headers.get("sec-websocket-protocol")
            ok = status.startswith("HTTP/1.1 101") and got == want
            detail = f"{status!r}, Sec-WebSocket-Protocol={got!r}"
        except Exception as exc:
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        record(stack, f"ws upgrade picks {want}", ok, detail)


async def check_flush(stack: str, port: int, release: asyncio.Event) -> None:
    headers, first = await raw_first_chunk(port, "/gated", release)
    ok = headers.get("transfer-encoding") == "chunked" and first == b'{"type":"ADDED"}\n'
    detail = f"transfer-encoding={headers.get('transfer-encoding')!r}, first line before 2nd write={first!r}"
    record(stack, "chunked watch flushes each write", ok, detail)

    # The apiserver flushes the headers of a watch before any event exists; a client that waits
    # for headers (client-go does) must not hang on a quiet watch.
    release.clear()
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(f"GET /gated?quiet=1 HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
    try:
        head: bytes | None = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), STALL_S)
    except TimeoutError:
        head = None
    release.set()
    await asyncio.wait_for(reader.read(), STALL_S)
    writer.close()
    status = head.split(b"\r\n", 1)[0].decode() if head else None
    record(stack, "quiet watch sends headers before 1st event", head is not None, f"status={status!r}")


# --------------------------------------------------------------------------------------------- aiohttp


async def check_aiohttp() -> None:
    from aiohttp import WSMsgType, web
    from aiohttp.test_utils import TestClient, TestServer

    release = asyncio.Event()

    async def exec_ws(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(protocols=SERVER_PROTOCOLS)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:  # channel 0 (stdin) in, echoed on channel 1 (stdout)
                await ws.send_bytes(b"\x01" + msg.data[1:])
        return ws

    async def gated(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        if request.query.get("quiet"):
            await asyncio.wait_for(release.wait(), 10)  # the reader must see the headers first
        await resp.write(b'{"type":"ADDED"}\n')
        await asyncio.wait_for(release.wait(), 10)  # the reader must see line 1 before we go on
        await resp.write(b'{"type":"DELETED"}\n')
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_get("/exec", exec_ws)
    app.router.add_get("/gated", gated)
    # In-process server and client on one loop: the same tools pilothouse's tests will use.
    server = TestServer(app, host=HOST)
    client: TestClient[web.Request, web.Application] = TestClient(server)
    async with server, client:
        port = server.port
        assert port is not None
        await check_upgrades("aiohttp", port)
        await check_flush("aiohttp", port, release)

        # aiohttp's own client must speak both subprotocols too (pilothouse's exec and port-forward).
        for offer in (("v5.channel.k8s.io", "v4.channel.k8s.io"), (PORT_FORWARD_OFFER,)):
            ws = await client.ws_connect("/exec", protocols=offer)
            await ws.send_bytes(b"\x00hello")
            msg = await asyncio.wait_for(ws.receive(), 5)
            await ws.close()
            ok = ws.protocol == offer[0] and msg.data == b"\x01hello"
            detail = f"protocol={ws.protocol!r}, got={msg.data!r}"
            record("aiohttp", f"TestClient ws round trip {offer[0]}", ok, detail)

        if importlib.util.find_spec("websockets"):
            await check_websockets_client(port)

        release.clear()
        resp = await client.get("/gated")
        try:
            line: bytes | None = await asyncio.wait_for(resp.content.readline(), STALL_S)
        except TimeoutError:
            line = None
        release.set()
        await resp.read()
        record("aiohttp", "TestClient sees watch line as written", line == b'{"type":"ADDED"}\n', f"{line!r}")


async def check_websockets_client(port: int) -> None:
    """Stack B's websocket client (`websockets`) against a server known to accept both subprotocols."""
    from websockets.asyncio.client import connect

    for protocol in ("v5.channel.k8s.io", PORT_FORWARD_OFFER):
        try:
            async with connect(f"ws://{HOST}:{port}/exec", subprotocols=[protocol]) as ws:  # type: ignore[list-item]
                await ws.send(b"\x00hello")
                got = await asyncio.wait_for(ws.recv(), 5)
            ok, detail = ws.subprotocol == protocol and got == b"\x01hello", f"got={got!r}"
        except Exception as exc:
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        record("websockets (client)", f"offers {protocol}", ok, detail)


# --------------------------------------------------------------------------------------------- starlette


def starlette_app(release: asyncio.Event) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import StreamingResponse
    from starlette.routing import Route, WebSocketRoute
    from starlette.websockets import WebSocket

    async def exec_ws(ws: WebSocket) -> None:
        offered = ws.scope.get("subprotocols", [])
        chosen = next((p for p in offered if p in SERVER_PROTOCOLS), None)
        await ws.accept(subprotocol=chosen)
        await ws.close()

    async def lines(quiet: bool) -> Any:
        if quiet:
            await asyncio.wait_for(release.wait(), 10)
        yield b'{"type":"ADDED"}\n'
        await asyncio.wait_for(release.wait(), 10)
        yield b'{"type":"DELETED"}\n'

    async def gated(request: Request) -> StreamingResponse:
        return StreamingResponse(lines(bool(request.query_params.get("quiet"))), media_type="application/json")

    return Starlette(routes=[WebSocketRoute("/exec", exec_ws), Route("/gated", gated)])


async def check_starlette(ws_impl: str) -> None:
    import uvicorn

    stack = f"uvicorn (ws={ws_impl})"
    release = asyncio.Event()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind((HOST, 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(starlette_app(release), ws=ws_impl, log_level="critical", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        await check_upgrades(stack, port)
        if ws_impl == "websockets":  # the HTTP side does not depend on the websocket implementation
            await check_flush("uvicorn", port, release)
    finally:
        server.should_exit = True
        await task


async def check_httpx_in_process() -> None:
    """Starlette's in-process async testing goes through httpx.ASGITransport: does it stream?"""
    import httpx

    release = asyncio.Event()
    transport = httpx.ASGITransport(app=starlette_app(release))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:

        async def first_line() -> str:
            async with client.stream("GET", "/gated") as resp:
                async for line in resp.aiter_lines():
                    return line
            return ""

        task = asyncio.create_task(first_line())
        try:
            line: str | None = await asyncio.wait_for(asyncio.shield(task), STALL_S)
        except TimeoutError:
            line = None
        release.set()
        await task
    record("starlette", "httpx.ASGITransport sees line as written", line == '{"type":"ADDED"}', f"{line!r}")


async def run() -> int:
    await check_aiohttp()
    have = all(importlib.util.find_spec(m) for m in ("starlette", "uvicorn", "httpx", "websockets"))
    if not have:
        print(
            "SKIP  starlette/uvicorn checks: not installed (.venv/bin/pip install starlette uvicorn httpx websockets)"
        )
    else:
        checks: list[Callable[[], Awaitable[None]]] = [
            lambda: check_starlette("websockets"),  # deprecated legacy implementation
            lambda: check_starlette("auto"),  # uvicorn's default: websockets-sansio
            check_httpx_in_process,
        ]
        if importlib.util.find_spec("wsproto"):
            checks.insert(2, lambda: check_starlette("wsproto"))
        for check in checks:
            await check()
    return 0 if all(ok for stack, _, ok, _ in results if stack == "aiohttp") else 1


def main() -> int:
    # uvicorn warns that its legacy `websockets` implementation is deprecated; that is checked on purpose.
    warnings.filterwarnings("ignore", message=".*websockets.*deprecated", category=UserWarning)
    return asyncio.run(run())


if __name__ == "__main__":
    sys.exit(main())
