"""A watcher that falls behind is ended and resumes; it is not told to relist (issue 16).

kube-apiserver's cacher ends a watcher it cannot keep up with ("Forcing watcher close due to
unresponsiveness") by closing its stream without an error; the reflector then watches again from the
last resourceVersion it received, which the watch cache still holds. Ours used to answer an
overflowing store queue with a 410 ERROR event: at 5,000 nodes the scheduler's and controller
manager's pod informers fell behind under load, were sent 410, and relisted 110,000 pods each time,
which took the server's CPU (every pod decoded for the scheduler's selector) and kept them behind.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from bench.watch_fanout import bare_hub
from pilothouse.apiserver import admission
from pilothouse.apiserver.metrics import TERMINATED_WATCHERS
from pilothouse.apiserver.registry import ListOptions, ResourceStorage, WriteContext
from pilothouse.machinery.kinds import BUILTIN_RESOURCES
from pilothouse.store.interface import (
    CompactedError,
    EventType,
    KeyValue,
    WatcherTooSlowError,
    WatchEvent,
)
from pilothouse.store.sqlite import SQLiteStore
from pilothouse.store.watchhub import WatchHub
from tests.apiserver.costhelpers import watch_server

CONFIGMAPS = next(r for r in BUILTIN_RESOURCES if r.plural == "configmaps" and not r.group)
NAMESPACE = "default"


def _configmap(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": NAMESPACE},
            "data": {"k": name}}


def _events(hub: WatchHub, names: list[str]) -> list[WatchEvent]:
    """Creations of configmaps as the store would publish them, from the hub's next revision on."""
    events = []
    for offset, name in enumerate(names, start=1):
        revision = hub.revision + offset
        events.append(WatchEvent(EventType.PUT, KeyValue(CONFIGMAPS.key(NAMESPACE, name),
                                                         orjson.dumps(_configmap(name)), revision, revision), None))
    return events


async def _read_stream(client: TestClient[web.Request, web.Application], revision: int) -> list[dict[str, Any]]:
    """Every event of one watch from ``revision`` until the server ends it (bounded by 10 s)."""
    response = await client.get("/configmaps", params={"watch": "true", "resourceVersion": str(revision)})
    assert response.status == 200
    body = await asyncio.wait_for(response.read(), 10)
    return [orjson.loads(line) for line in body.splitlines() if line]


async def test_an_overflowing_watch_ends_without_an_error_and_resumes_without_a_gap() -> None:
    hub = bare_hub(queue_size=3)
    hub.publish(_events(hub, ["before"]))
    start = hub.revision
    terminated = TERMINATED_WATCHERS.labels("", "configmaps")
    ended_before = terminated.value
    async with watch_server(hub, CONFIGMAPS, "/configmaps") as client:
        response = await client.get("/configmaps", params={"watch": "true", "resourceVersion": str(start)})
        assert response.status == 200
        for _ in range(100):  # until the server's store watch is open (bounded: 1 s)
            if hub._watchers:
                break
            await asyncio.sleep(0.01)
        assert hub._watchers, "the watch never reached the store"
        names = [f"cm-{i}" for i in range(10)]
        hub.publish(_events(hub, names))  # one batch of 10 for a queue of 3: this watcher is behind
        body = await asyncio.wait_for(response.read(), 10)
        events = [orjson.loads(line) for line in body.splitlines() if line]
        # The stream ended, and not with a 410 ERROR event (which makes a reflector relist).
        assert all(event["type"] != "ERROR" for event in events), events
        received = [event["object"]["metadata"]["name"] for event in events]
        last = max([start, *(int(event["object"]["metadata"]["resourceVersion"]) for event in events)])
        # Watching again from the last resourceVersion received gets every later change, in order.
        hub_end = hub.revision
        resume = asyncio.create_task(_read_stream(client, last))
        await asyncio.sleep(0.2)
        hub.publish(_events(hub, ["after"]))
        await asyncio.sleep(0.2)
        hub.close()  # ends the resumed stream
        resumed = await resume
        assert hub_end == start + 10
        names_after = [event["object"]["metadata"]["name"] for event in resumed]
        assert received + names_after == [*names, "after"], (received, names_after)
        assert all(event["type"] == "ADDED" for event in resumed)
    assert terminated.value == ended_before + 1


async def test_an_overflowing_store_watch_resumes_from_the_stores_history(tmp_path: Path) -> None:
    """The same over SQLite with a ring of 2 events: the resumed watch is served from the history on
    disk. An in-process consumer still sees a CompactedError (and relists)."""
    async with SQLiteStore(tmp_path / "state.db", compact_interval=None, sweep_interval=None,
                           ring_size=2, watch_queue_size=3) as store:
        await store.create(admission.NAMESPACE_KEY_PREFIX + NAMESPACE, orjson.dumps(
            {"metadata": {"name": NAMESPACE}, "status": {"phase": "Active"}}))
        storage = ResourceStorage(CONFIGMAPS, store, admission.NamespaceLifecycle(store))
        ctx = WriteContext(field_manager="test")
        first = await storage.create(NAMESPACE, _configmap("first"), ctx)
        start = first["metadata"]["resourceVersion"]
        events = storage.watch(NAMESPACE, ListOptions(resource_version=str(int(start) - 1)), send_initial=False)
        seen = await anext(events)
        assert seen.object["metadata"]["name"] == "first"
        names = [f"cm-{i}" for i in range(8)]
        for name in names:  # nobody reads the watch meanwhile: its queue of 3 overflows
            await storage.create(NAMESPACE, _configmap(name), ctx)
        with pytest.raises(CompactedError) as ended:
            await anext(events)
        assert isinstance(ended.value, WatcherTooSlowError)
        resumed = storage.watch(NAMESPACE, ListOptions(resource_version=start), send_initial=False)
        got = [(await anext(resumed)) for _ in names]
        assert [e.type for e in got] == ["ADDED"] * len(names)
        assert [e.object["metadata"]["name"] for e in got] == names
        await resumed.aclose()  # type: ignore[attr-defined]  # an async generator
