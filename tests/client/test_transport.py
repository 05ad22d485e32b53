"""The API client's unary transport (``client/transport.py``): against the real API server, and
against aiohttp's web server for what the API server does not do at will (chunked answers, closing
after an answer, an idle timeout, a stalled handler, a connection cut mid-answer). Each test runs on
the standard loop and on uvloop (``conftest.py``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from pilothouse.client import errors, transport
from pilothouse.client.rest import APIClient, resource
from tests.conftest import ServerProcess, free_port

CONFIGMAPS = resource("", "v1", "configmaps")

NAMESPACES = resource("", "v1", "namespaces")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def test_requests_against_the_api_server_share_one_connection(server: ServerProcess) -> None:
    async with APIClient(server.url) as client:
        body = {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "transport", "labels": {"tier": "a.b", "app": "x"}}, "data": {"k": "v"}}
        created = await client.create(CONFIGMAPS, body, "default")
        assert created["metadata"]["uid"]
        for _ in range(20):
            assert (await client.get(CONFIGMAPS, "transport", "default"))["data"] == {"k": "v"}
        # queries that need encoding: a selector's '=', ',', '!', parentheses and spaces
        for selector in ("app=x,tier!=b", "tier in (a.b, c),app"):
            found = await client.list(CONFIGMAPS, "default", label_selector=selector)
            assert [i["metadata"]["name"] for i in found["items"]] == ["transport"], selector
        assert (await client.list(CONFIGMAPS, "default", label_selector="tier notin (a.b)"))["items"] == []
        patched = await client.patch(CONFIGMAPS, "transport", {"data": {"k": "w"}}, "default")
        assert patched["data"] == {"k": "w"}
        with pytest.raises(errors.NotFoundError):
            await client.get(CONFIGMAPS, "absent", "default")
        with pytest.raises(errors.InvalidError) as invalid:
            await client.create(CONFIGMAPS, {**body, "metadata": {"name": "Not_A_Name"}}, "default")
        assert invalid.value.status["reason"] == "Invalid"
        await client.delete(CONFIGMAPS, "transport", "default")
        assert client.connections.connections_made == 1  # one request at a time: one kept-alive connection


async def test_a_view_speaks_with_its_own_token_over_the_pools_connections(server: ServerProcess) -> None:
    async with APIClient(server.url, user_agent="pool-agent") as pool:
        view = pool.as_token("a-token")
        assert (await view.get(NAMESPACES, "default"))["metadata"]["name"] == "default"
        assert view.connections is pool.connections and pool.connections.connections_made == 1
        with pytest.raises(ValueError):  # a header that would split the request is refused, as aiohttp does
            await pool.as_token("one\r\nX-Injected: yes").get(NAMESPACES, "default")


@pytest.fixture
async def web_server() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    runners: list[web.AppRunner] = []

    async def start(handler: Handler, keepalive_timeout: float = 75.0) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app, keepalive_timeout=keepalive_timeout)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        return f"http://127.0.0.1:{port}"

    yield start  # type: ignore[misc]
    for runner in runners:
        await runner.cleanup()


async def test_chunked_and_closing_answers(web_server: Callable[..., Awaitable[str]]) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        if request.path == "/chunked":
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            response.enable_chunked_encoding()
            await response.prepare(request)
            for part in (b'{"items": [', b"1, 2", b", 3]}"):
                await response.write(part)
            await response.write_eof()
            return response
        response = web.json_response({"closing": True})
        response.force_close()
        return response

    async with APIClient(await web_server(handler)) as client:
        assert await client.request("GET", "/chunked") == {"items": [1, 2, 3]}
        assert await client.request("GET", "/chunked") == {"items": [1, 2, 3]}
        assert client.connections.connections_made == 1
        for _ in range(3):
            assert await client.request("GET", "/close") == {"closing": True}
        # the first closing answer came over the chunked answers' connection; each ended its connection
        assert client.connections.connections_made == 3


async def test_a_connection_the_server_closed_while_idle_is_not_reused(
        web_server: Callable[..., Awaitable[str]]) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.json_response({"ok": True})

    async with APIClient(await web_server(handler, keepalive_timeout=0.2)) as client:
        assert await client.request("PUT", "/a", body={"x": 1}) == {"ok": True}
        await asyncio.sleep(0.6)  # the server's idle timeout closes the kept-alive connection
        assert await client.request("POST", "/a", body={"x": 2}) == {"ok": True}
        assert client.connections.connections_made == 2


async def test_a_stalled_answer_times_out_and_the_next_request_gets_a_new_connection(
        web_server: Callable[..., Awaitable[str]]) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        if request.path == "/stall":
            await asyncio.sleep(5)
        return web.json_response({"path": request.path})

    async with APIClient(await web_server(handler)) as client:
        assert await client.request("GET", "/quick") == {"path": "/quick"}
        started = time.monotonic()
        with pytest.raises(errors.ConnectionFailed):
            await client.request("GET", "/stall", timeout=0.3)
        assert time.monotonic() - started < 2
        assert await client.request("GET", "/after") == {"path": "/after"}
        assert client.connections.connections_made == 2  # the stalled one was dropped, not reused


async def test_an_answer_cut_short_is_a_lost_connection(web_server: Callable[..., Awaitable[str]]) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json", "Content-Length": "100"})
        await response.prepare(request)
        await response.write(b'{"partial": ')
        assert request.transport is not None
        request.transport.close()
        return response

    async with APIClient(await web_server(handler)) as client:
        with pytest.raises(errors.ConnectionFailed):
            await client.request("POST", "/cut", body={})


async def test_too_many_requests_with_retry_after_is_sent_again(web_server: Callable[..., Awaitable[str]]) -> None:
    calls: list[float] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        calls.append(time.monotonic())
        if len(calls) == 1:
            return web.json_response({"kind": "Status", "reason": "TooManyRequests", "code": 429}, status=429,
                                     headers={"Retry-After": "1"})
        return web.json_response({"ok": True}, status=201)

    async with APIClient(await web_server(handler)) as client:
        assert await client.request("POST", "/x", body={}) == {"ok": True}
    assert len(calls) == 2 and calls[1] - calls[0] >= 0.9


async def test_a_refused_connection_is_connection_failed() -> None:
    async with APIClient(f"http://127.0.0.1:{free_port()}") as client:
        with pytest.raises(errors.ConnectionFailed):
            await client.request("GET", "/healthz")


async def test_head_idle_limit_and_a_non_ascii_path(web_server: Callable[..., Awaitable[str]],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.json_response({"path": request.path})

    async with APIClient(await web_server(handler)) as client:
        # a HEAD answer's Content-Length describes a body that is not sent: the connection stays usable
        assert await client.request("HEAD", "/head") is None
        assert await client.request("GET", "/héllo wörld") == {"path": "/héllo wörld"}
        assert client.connections.connections_made == 1
        monkeypatch.setattr(transport, "IDLE_LIMIT", 0.1)
        await asyncio.sleep(0.3)  # idle past the limit: not reused, though the server keeps it open
        assert await client.request("GET", "/later") == {"path": "/later"}
        assert client.connections.connections_made == 2
