"""What one node Lease renewal costs the API server (issue 16, bench/lease_renewal.py): the work
counted, not timed. At 5,000 nodes the renewals alone are 500 PUTs a second.

- A PUT parses the stored object once, not twice: its mutation is a copy of the body and never
  reads the stored object, so it is not handed a copy of its own.
- A watch keeps one timer for its deadline and next bookmark, not one per event (each Lease
  renewal is an event for the node lifecycle controller's informer, each reaching an empty queue).
- A response's ``Audit-Id`` reads no system randomness of its own (one read per request was a
  release of the GIL each, taken by the store's writer thread), and a random UUID is spelled
  without building a ``uuid.UUID``.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, make_mocked_request

from pilothouse.apiserver import admission, watchstream
from pilothouse.apiserver.audit import filter as audit_filter
from pilothouse.apiserver.registry import ResourceStorage, WriteContext
from pilothouse.machinery import meta
from pilothouse.machinery.errors import StatusError
from pilothouse.machinery.kinds import BUILTIN_RESOURCES
from pilothouse.store.interface import EventType, KeyValue, WatchEvent
from pilothouse.store.sqlite import SQLiteStore
from pilothouse.store.watchhub import WatchHub
from tests.apiserver.costhelpers import count_decodes, watch_server

LEASES = next(r for r in BUILTIN_RESOURCES if r.plural == "leases" and r.group == "coordination.k8s.io")
NAMESPACE = "kube-node-lease"


def _lease(name: str, renewed: str) -> dict[str, Any]:
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": name, "namespace": NAMESPACE,
                         "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": name, "uid": "u-" + name}]},
            "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": renewed}}


async def test_a_lease_renewal_parses_the_stored_lease_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with SQLiteStore(tmp_path / "state.db", compact_interval=None) as store:
        await store.create(admission.NAMESPACE_KEY_PREFIX + NAMESPACE, orjson.dumps(
            {"metadata": {"name": NAMESPACE}, "status": {"phase": "Active"}}))
        storage = ResourceStorage(LEASES, store, admission.NamespaceLifecycle(store))
        kubelet = WriteContext(field_manager="kubelet")
        latest = await storage.create(NAMESPACE, _lease("n1", "2026-12-05T10:00:00.000000Z"), kubelet)
        decoded = count_decodes(monkeypatch)
        renewed = dict(latest, spec={**latest["spec"], "renewTime": "2026-12-05T10:00:10.000000Z"})
        stored, created = await storage.update(NAMESPACE, "n1", renewed, kubelet)
        # The stored object it replaces, then the one it wrote (the answer). Before: the stored
        # object twice (once for the mutation, which ignored it), then the one written.
        assert len(decoded) == 2, decoded
        assert not created
        assert stored["spec"]["renewTime"] == "2026-12-05T10:00:10.000000Z"
        assert int(stored["metadata"]["resourceVersion"]) > int(latest["metadata"]["resourceVersion"])
        assert stored == await storage.get(NAMESPACE, "n1")
        # What the PUT was handed is not changed by it (the retry of a lost race starts from it again).
        assert renewed["metadata"]["resourceVersion"] == latest["metadata"]["resourceVersion"]
        assert "managedFields" in renewed["metadata"] and renewed["metadata"]["managedFields"] \
            == latest["metadata"]["managedFields"]
        # The renewal from the old object now loses: its resourceVersion is a precondition.
        with pytest.raises(StatusError) as refused:
            await storage.update(NAMESPACE, "n1", dict(renewed), kubelet)
        assert refused.value.code == 409


def test_audit_ids_draw_from_the_uid_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[int] = []
    real = os.urandom

    def counting(size: int) -> bytes:
        reads.append(size)
        return real(size)

    monkeypatch.setattr("os.urandom", counting)
    request = make_mocked_request("PUT", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1")
    ids = [audit_filter._audit_id(request) for _ in range(100)]
    assert len(reads) <= 1, reads  # before: one read per request (uuid.uuid4)
    assert len(set(ids)) == 100
    assert all(len(i) == 36 and i[14] == "4" and i[19] in "89ab" for i in ids)  # random UUIDs (version 4)
    relayed = make_mocked_request("GET", "/api", headers={"Audit-ID": "from-the-client"})
    assert audit_filter._audit_id(relayed) == "from-the-client"


@pytest.fixture
async def watch_client(hub: WatchHub) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    async with watch_server(hub, LEASES, "/leases") as client:
        yield client


def _renewal(hub: WatchHub, name: str, renewed: str) -> WatchEvent:
    key = LEASES.key(NAMESPACE, name)
    revision = hub.revision + 1
    return WatchEvent(EventType.PUT, KeyValue(key, orjson.dumps(_lease(name, renewed)), 1, revision), None)


async def test_a_watch_arms_one_timer_not_one_per_event(hub: WatchHub,
                                                         watch_client: TestClient[web.Request, web.Application],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # This client asks for each event only after the last arrived, so with FLUSH_INTERVAL every event
    # would wait out its own interval (a timer each, by design: test_watch_coalesce.py); what is
    # tested here is the deadline's and bookmarks' alarm, so the flush interval is off.
    monkeypatch.setattr(watchstream, "FLUSH_INTERVAL", 0.0)
    hub.publish([_renewal(hub, "n0", "2026-12-05T10:00:00.000000Z")])
    response = await watch_client.get("/leases", params={"timeoutSeconds": "30", "resourceVersion": "1",
                                                         "allowWatchBookmarks": "true"})
    assert response.status == 200
    await asyncio.sleep(0.05)
    loop = asyncio.get_running_loop()
    armed: list[str] = []
    real = loop.call_at

    def counting(when: float, callback: Any, *args: Any, **kwargs: Any) -> asyncio.TimerHandle:
        armed.append(getattr(callback, "__qualname__", repr(callback)))
        return real(when, callback, *args, **kwargs)

    monkeypatch.setattr(loop, "call_at", counting)
    for i in range(20):  # one at a time, each to the watch's empty queue
        hub.publish([_renewal(hub, f"n{i}", f"2026-12-05T10:00:{i:02d}.000000Z")])
        line = orjson.loads(await asyncio.wait_for(response.content.readline(), 10))
        assert (line["type"], line["object"]["metadata"]["name"]) == ("ADDED", f"n{i}")
    response.close()
    # The test's own readline waits arm timers (wait_for, above); the server's watch at most one.
    server = [name for name in armed if "_release_waiter" not in name]
    assert len(server) <= 1, server  # before: 20, one per event (asyncio.timeout)


async def test_an_idle_watch_still_gets_its_bookmarks_and_its_end(
        hub: WatchHub, watch_client: TestClient[web.Request, web.Application], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(watchstream, "BOOKMARK_INTERVAL", 0.2)
    hub.publish([_renewal(hub, "n0", "2026-12-05T10:00:00.000000Z")])
    response = await watch_client.get("/leases", params={"timeoutSeconds": "2", "resourceVersion": "1",
                                                         "allowWatchBookmarks": "true"})
    await asyncio.sleep(0.5)
    hub.publish([_renewal(hub, "n1", "2026-12-05T10:00:01.000000Z")])
    lines = [orjson.loads(line) for line in (await asyncio.wait_for(response.read(), 10)).splitlines()]
    kinds = [line["type"] for line in lines]
    assert "ADDED" in kinds
    # Bookmarks while idle (every 0.2 s here, over the watch's 2 s), with the revision reached, and
    # one closing the stream at its timeoutSeconds (the read returns: the stream ended).
    assert kinds.count("BOOKMARK") >= 3, kinds
    assert kinds[-1] == "BOOKMARK"
    assert lines[-1]["object"]["metadata"]["resourceVersion"] == str(hub.revision)


def test_a_uid_is_spelled_as_uuid_spells_it_without_building_one(monkeypatch: pytest.MonkeyPatch) -> None:
    pool = bytes(range(256)) * 16  # the pool meta.new_uid draws from, known here
    monkeypatch.setattr(meta, "_random_pool", bytearray())
    monkeypatch.setattr("os.urandom", lambda size: pool[:size])
    built: list[bytes] = []
    real = uuid.UUID

    def counting(*args: Any, **kwargs: Any) -> uuid.UUID:
        built.append(kwargs.get("bytes", b""))
        return real(*args, **kwargs)

    monkeypatch.setattr(uuid, "UUID", counting)
    uids = [meta.new_uid() for _ in range(256)]
    assert built == []  # before: one uuid.UUID per uid
    # The uids are taken from the end of the pool, 16 bytes each: what uuid.UUID(version=4) spells.
    expected = [str(real(bytes=pool[4096 - 16 * (i + 1):4096 - 16 * i], version=4)) for i in range(256)]
    assert uids == expected
