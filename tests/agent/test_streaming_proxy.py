"""The API server's node proxy and the agent's streaming server over a fake runtime (no podman):
the wire seen by a client — log chunks, v5 channel frames, SPDY inside the websocket tunnel."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from pilothouse.apiserver.nodeproxy import NODE_PROXY_HANDLERS
from pilothouse.apiserver.serve import RunningServer, ServerConfig, start_server
from pilothouse.components.agent.runtime.interface import (
    LABEL_CONTAINER_NAME,
    LABEL_POD_NAME,
    LABEL_POD_NAMESPACE,
    LABEL_ROLE,
    ContainerNotFound,
    ContainerState,
)
from pilothouse.components.agent.server import PORTFORWARD_PROTOCOL, StreamingServer
from pilothouse.components.agent.streaming import channels, spdy
from pilothouse.components.agent.streaming.lookup import RuntimeLabelLookup


class FakeSession:
    """``cat`` with an exit code: stdin comes back upper-cased on stdout, then 'bye' on stderr."""

    def __init__(self, exit_code: int) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.code = exit_code
        self.sizes: list[tuple[int, int]] = []

    async def write_stdin(self, data: bytes) -> None:
        self.queue.put_nowait(data)

    async def close_stdin(self) -> None:
        self.queue.put_nowait(None)

    async def output(self) -> AsyncIterator[tuple[int, bytes]]:
        while (data := await self.queue.get()) is not None:
            yield 1, data.upper()
        yield 2, f"bye {self.sizes}".encode()

    async def resize(self, width: int, height: int) -> None:
        self.sizes.append((width, height))

    async def exit_code(self) -> int | None:
        return self.code

    async def close(self) -> None:
        pass


class FakeRuntime:
    def __init__(self) -> None:
        pod = {LABEL_POD_NAMESPACE: "default", LABEL_POD_NAME: "web"}
        self.states = [
            ContainerState("sandbox", "s", {**pod, LABEL_ROLE: "sandbox"}, "pause", "p", "running", ip="127.0.0.1",
                           started_at="2024-01-01T00:00:00Z"),
            ContainerState("app-1", "a1", {**pod, LABEL_ROLE: "container", LABEL_CONTAINER_NAME: "app"}, "i", "i",
                           "exited", exit_code=1, started_at="2024-01-01T00:00:01Z"),
            ContainerState("app-2", "a2", {**pod, LABEL_ROLE: "container", LABEL_CONTAINER_NAME: "app"}, "i", "i",
                           "running", started_at="2024-01-01T00:00:05Z"),
        ]
        self.follow_gate = asyncio.Event()
        self.log_requests: list[dict[str, Any]] = []

    async def list_containers(self, labels: dict[str, str] | None = None) -> list[ContainerState]:
        return [s for s in self.states if all(s.labels.get(k) == v for k, v in (labels or {}).items())]

    async def inspect_container(self, container_id: str) -> ContainerState:
        for state in self.states:
            if state.id == container_id:
                return state
        raise ContainerNotFound(container_id)

    async def logs(self, container_id: str, *, follow: bool = False, tail: int | None = None,
                   since: float | None = None, timestamps: bool = False) -> AsyncIterator[bytes]:
        self.log_requests.append({"id": container_id, "follow": follow, "tail": tail, "since": since})
        yield f"{container_id} line1\n".encode()
        if follow:
            await self.follow_gate.wait()
            yield b"after the gate\n"

    async def exec(self, container_id: str, command: list[str], *, tty: bool, stdin: bool,
                   stdout: bool = True, stderr: bool = True) -> FakeSession:
        return FakeSession(int(command[-1]))

    async def attach(self, container_id: str, *, stdin: bool, tty: bool) -> FakeSession:
        return FakeSession(0)


class Cluster:
    def __init__(self, api: RunningServer, agent: StreamingServer, runtime: FakeRuntime) -> None:
        self.api, self.agent, self.runtime = api, agent, runtime

    async def call(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> Any:
        async with aiohttp.ClientSession() as session, session.request(
                method, self.api.url + path, data=json.dumps(body) if body is not None else None,
                headers={"Content-Type": content_type}) as response:
            return response.status, await response.read()


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    api = await start_server(ServerConfig(tmp_path, port=0))
    api.api.rest.subresources.update(NODE_PROXY_HANDLERS)
    runtime = FakeRuntime()
    agent = StreamingServer(runtime, RuntimeLabelLookup(runtime), address="127.0.0.1", port=0)  # type: ignore[arg-type]
    await agent.start()
    result = Cluster(api, agent, runtime)
    assert (await result.call("POST", "/api/v1/nodes", {"metadata": {"name": "n1"}}))[0] == 201
    status = {"status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                         "daemonEndpoints": {"kubeletEndpoint": {"Port": agent.port}}}}
    assert (await result.call("PATCH", "/api/v1/nodes/n1/status", status, "application/merge-patch+json"))[0] == 200
    # No controller manager runs: the account ServiceAccount admission wants before it admits a pod.
    assert (await result.call("POST", "/api/v1/namespaces/default/serviceaccounts",
                              {"metadata": {"name": "default"}}))[0] == 201
    pod = {"metadata": {"name": "web"}, "spec": {"nodeName": "n1", "containers": [{"name": "app", "image": "i"}]}}
    assert (await result.call("POST", "/api/v1/namespaces/default/pods", pod))[0] == 201
    yield result
    await agent.stop()
    await api.stop()


async def test_logs_previous_and_follow_are_streamed(cluster: Cluster) -> None:
    status, body = await cluster.call("GET", "/api/v1/namespaces/default/pods/web/log?tailLines=5")
    assert (status, body) == (200, b"app-2 line1\n")
    assert cluster.runtime.log_requests[-1] == {"id": "app-2", "follow": False, "tail": 5, "since": None}
    status, body = await cluster.call("GET", "/api/v1/namespaces/default/pods/web/log?previous=true")
    assert (status, body) == (200, b"app-1 line1\n")
    async with aiohttp.ClientSession() as session, session.get(
            cluster.api.url + "/api/v1/namespaces/default/pods/web/log?follow=true") as response:
        assert response.headers["Transfer-Encoding"] == "chunked"
        first = await asyncio.wait_for(response.content.readline(), 5)  # flushed before the stream ends
        assert first == b"app-2 line1\n"
        cluster.runtime.follow_gate.set()
        assert await asyncio.wait_for(response.content.read(), 5) == b"after the gate\n"


async def test_agent_errors_become_statuses(cluster: Cluster) -> None:
    cluster.runtime.states = cluster.runtime.states[:1]  # only the sandbox: no app container
    status, body = await cluster.call("GET", "/api/v1/namespaces/default/pods/web/log")
    assert status == 400
    assert json.loads(body)["message"] == 'container "app" in pod "web" is waiting to start: ContainerCreating'
    status, body = await cluster.call("GET", "/api/v1/namespaces/default/pods/web/log?previous=1")
    assert json.loads(body)["message"] == 'previous terminated container "app" in pod "web" not found'
    await cluster.agent.stop()
    status, body = await cluster.call("GET", "/api/v1/namespaces/default/pods/web/log")
    assert status == 500 and "/containerLogs/default/web/app" in json.loads(body)["message"]


async def _exec(cluster: Cluster, query: str) -> tuple[aiohttp.ClientSession, aiohttp.ClientWebSocketResponse]:
    session = aiohttp.ClientSession()
    ws = await session.ws_connect(cluster.api.url + "/api/v1/namespaces/default/pods/web/exec?" + query,
                                  protocols=(channels.PROTOCOL_V5,))
    return session, ws


async def test_exec_over_the_v5_channel_protocol(cluster: Cluster) -> None:
    session, ws = await _exec(cluster, "command=cat&command=3&stdin=true&stdout=true&stderr=true&container=app")
    async with session:
        assert ws.protocol == channels.PROTOCOL_V5
        assert await ws.receive_bytes(timeout=5) == b"\x01"  # the "stream is up" message
        await ws.send_bytes(b"\x04" + b'{"Width":80,"Height":24}\n')
        await ws.send_bytes(b"\x00hello")
        assert await ws.receive_bytes(timeout=5) == b"\x01HELLO"
        await ws.send_bytes(b"\xff\x00")  # v5: stdin is done
        assert await ws.receive_bytes(timeout=5) == b"\x02bye [(80, 24)]"
        status = await ws.receive_bytes(timeout=5)
        assert status[0] == channels.ERROR
        assert json.loads(status[1:])["details"] == {"causes": [{"reason": "ExitCode", "message": "3"}]}
        closing = await ws.receive(timeout=5)
        assert closing.type == aiohttp.WSMsgType.CLOSE and ws.close_code == 1000


async def test_attach_ends_with_success(cluster: Cluster) -> None:
    session = aiohttp.ClientSession()
    async with session:
        ws = await session.ws_connect(cluster.api.url + "/api/v1/namespaces/default/pods/web/attach?stdin=1&stdout=1",
                                      protocols=(channels.PROTOCOL_V5,))
        assert await ws.receive_bytes(timeout=5) == b"\x01"
        await ws.send_bytes(b"\xff\x00")
        assert await ws.receive_bytes(timeout=5) == b"\x03" + json.dumps(channels.status_success()).encode()


async def test_exec_refusals_are_relayed(cluster: Cluster) -> None:
    # a plain request (kubectl's SPDY fallback lands here): the agent's answer, relayed
    status, body = await cluster.call("POST", "/api/v1/namespaces/default/pods/web/exec?command=ls&stdout=1")
    assert (status, json.loads(body)["message"]) == (400, "Upgrade request required")
    status, body = await cluster.call("POST", "/api/v1/namespaces/default/pods/web/exec?command=ls")
    assert (status, body) == (400, b"you must specify at least 1 of stdin, stdout, stderr")
    cluster.runtime.states[2].state = "exited"
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await _exec(cluster, "command=ls&command=0&stdout=1")
    assert refused.value.status == 500
    status, body = await cluster.call("GET", "/api/v1/namespaces/default/pods/web/exec?command=ls&stdout=1")
    assert (status, body) == (500, b'container not found ("app")')


async def test_port_forward_through_the_websocket_tunnel(cluster: Cluster) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"pong:" + await reader.readexactly(4))
        await writer.drain()
        writer.close()

    target = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = target.sockets[0].getsockname()[1]
    codec, reader = spdy.SpdyCodec(), spdy.SpdyCodec()
    async with target, aiohttp.ClientSession() as session:
        ws = await session.ws_connect(cluster.api.url + "/api/v1/namespaces/default/pods/web/portforward",
                                      protocols=(PORTFORWARD_PROTOCOL,))
        assert ws.protocol == PORTFORWARD_PROTOCOL
        wire = b"".join(codec.encode(f) for f in (
            spdy.SynStream(1, {"streamtype": ["error"], "port": [str(port)], "requestid": ["0"]}),
            spdy.DataFrame(1, b"", spdy.DATA_FLAG_FIN),
            spdy.SynStream(3, {"streamtype": ["data"], "port": [str(port)], "requestid": ["0"]}),
            spdy.DataFrame(3, b"ping")))
        for index in range(0, len(wire), 9):  # frames split across messages, as kubectl does
            await ws.send_bytes(wire[index:index + 9])
        frames: list[spdy.Frame] = []
        while spdy.DataFrame(1, b"", spdy.DATA_FLAG_FIN) not in frames:
            frames.extend(reader.feed(await ws.receive_bytes(timeout=5)))
        assert frames[:2] == [spdy.SynReply(1), spdy.SynReply(3)]
        assert b"".join(f.data for f in frames if isinstance(f, spdy.DataFrame) and f.stream_id == 3) == b"pong:ping"
        await ws.send_bytes(codec.encode(spdy.Ping(1)))
        assert reader.feed(await ws.receive_bytes(timeout=5)) == [spdy.Ping(1)]
        await ws.close()
