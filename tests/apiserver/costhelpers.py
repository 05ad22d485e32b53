"""Helpers of the tests that count what the server's work costs (test_per_pod_cost.py,
test_lease_cost.py): the HTTP watch stream served in process over a bare watch hub (events are
published by hand), and a count of the stored objects the registry decodes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bench.watch_fanout import HubStore
from pilothouse.apiserver import admission, registry, watchstream
from pilothouse.apiserver.registry import ResourceStorage
from pilothouse.machinery.kinds import ResourceType
from pilothouse.store.interface import KeyValue
from pilothouse.store.watchhub import WatchHub

__all__ = ["count_decodes", "watch_server"]


def count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The mod_revision of every stored entry the registry decodes from now on, in order."""
    decoded: list[int] = []
    real = registry.decode_stored

    def counting(kv: KeyValue) -> dict[str, Any]:
        decoded.append(kv.mod_revision)
        return real(kv)

    monkeypatch.setattr(registry, "decode_stored", counting)
    return decoded


@asynccontextmanager
async def watch_server(hub: WatchHub, resource: ResourceType,
                       path: str) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    """A client of a server whose ``path`` watches ``resource`` (all namespaces) over ``hub``."""
    storage = ResourceStorage(resource, HubStore(hub), admission.NamespaceLifecycle(HubStore(hub)))  # type: ignore[arg-type]

    async def handler(request: web.Request) -> web.StreamResponse:
        return await watchstream.serve(request, storage, None)

    app = web.Application()
    app.router.add_get(path, handler)
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()
