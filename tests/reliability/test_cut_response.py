"""A response cut short (the API server SIGKILLed while it writes one, found by the chaos harness) is a
``ConnectionFailed`` like any other lost connection, which every retry loop of the components
expects. It was aiohttp's ``ClientPayloadError``, which is not a ``ClientConnectionError``: it escaped
the agent's lease and node-status loops, whose tasks died, and the nodes went NotReady ("Kubelet
stopped posting node status") for good while their agent kept running."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from pilothouse.client import errors
from pilothouse.client.rest import APIClient


@pytest.fixture
async def cutting_server() -> AsyncIterator[str]:
    """Answers every request with a 200 whose body stops after a few of its promised bytes."""
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (await reader.readline()).strip():
            pass  # the request's head; these requests have no body
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
                     b'{"kind": "Lease", ')
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.close()
    await server.wait_closed()


async def test_a_cut_response_is_connection_failed(cutting_server: str) -> None:
    async with APIClient(cutting_server) as client:
        with pytest.raises(errors.ConnectionFailed):
            await client.request("GET", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n")
