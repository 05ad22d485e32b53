"""Helpers of the tests that count what the server's work costs (test_per_pod_cost.py,
test_lease_cost.py, test_write_cost.py, test_pod_binding.py): the HTTP watch stream served in process
over a bare watch hub (events are published by hand), the generic REST handler serving pods over a
SQLite store, and a count of the stored objects the registry decodes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bench.watch_fanout import HubStore
from pilothouse.apiserver import admission, codec, registry, subresources, watchstream
from pilothouse.apiserver.registry import ResourceStorage, StorageHooks
from pilothouse.apiserver.requestinfo import parse_request_info
from pilothouse.apiserver.rest import RestHandler
from pilothouse.machinery.errors import StatusError
from pilothouse.machinery.kinds import BUILTIN_RESOURCES, ResourceRegistry, ResourceType
from pilothouse.store.interface import KeyValue
from pilothouse.store.sqlite import SQLiteStore
from pilothouse.store.watchhub import WatchHub

__all__ = ["Client", "count_decodes", "pods_rest", "watch_server"]

PODS = next(r for r in BUILTIN_RESOURCES if r.plural == "pods" and not r.group)
Client = TestClient[web.Request, web.Application]


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
    async with _serve(app) as client:
        yield client


@asynccontextmanager
async def _serve(app: web.Application) -> AsyncIterator[Client]:
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


@asynccontextmanager
async def pods_rest(tmp_path: Path, hooks: StorageHooks | None = None) -> AsyncIterator[tuple[Client, ResourceStorage]]:
    """A client of the generic REST handler serving pods (and their subresources) in namespace
    ``default`` over a SQLite store; a refusal is answered as the server's error middleware does."""
    async with SQLiteStore(tmp_path / "state.db", compact_interval=None, sweep_interval=None) as store:
        await store.create(admission.NAMESPACE_KEY_PREFIX + "default", orjson.dumps(
            {"metadata": {"name": "default"}, "status": {"phase": "Active"}}))
        storage = ResourceStorage(PODS, store, admission.NamespaceLifecycle(store), hooks)
        handler = RestHandler(ResourceRegistry([PODS]), {PODS: storage}, dict(subresources.SUBRESOURCE_HANDLERS))

        async def handle(request: web.Request) -> web.StreamResponse:
            try:
                return await handler.handle(request, parse_request_info(request.method, request.path, request.query))
            except StatusError as error:
                return codec.status_response(error)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        async with _serve(app) as client:
            yield client, storage
