"""etcd-specific behaviour of the etcd backend (the shared behaviour is in test_store_conformance.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from pilothouse.store import etcd_endpoint_from_servers, open_store
from pilothouse.store.etcd import EtcdStore, parse_etcd_endpoint
from pilothouse.store.interface import CompactedError, FutureRevisionError, UnavailableError
from tests.store.etcd_server import EtcdCluster, etcd_binary

needs_etcd = pytest.mark.skipif(etcd_binary() is None, reason="etcd binary not found (apt-get install etcd-server)")

P = "/registry/pods/default/"


def test_endpoint_parsing() -> None:
    assert parse_etcd_endpoint("etcd://a:2379,b:2380") == ["http://a:2379", "http://b:2380"]
    assert parse_etcd_endpoint("etcd+https://a:2379") == ["https://a:2379"]
    for bad in ("etcd://", "etcd://a", "etcd://a:2379/x", "sqlite:///x", "etcd:a:1"):
        with pytest.raises(ValueError):
            parse_etcd_endpoint(bad)
    assert etcd_endpoint_from_servers("http://h:2379,http://h2:2379") == "etcd://h:2379,h2:2379"
    assert etcd_endpoint_from_servers("https://h:2379, https://h2") == "etcd+https://h:2379,h2:2379"
    for bad in ("http://a:1,https://b:2", "", "unix:///x", "http://a:1/path"):
        with pytest.raises(ValueError):
            etcd_endpoint_from_servers(bad)
    store = open_store("http://127.0.0.1:1,http://127.0.0.1:2", request_timeout=1.0)
    assert isinstance(store, EtcdStore) and store.endpoints == ["http://127.0.0.1:1", "http://127.0.0.1:2"]
    assert isinstance(open_store("etcd://127.0.0.1:1"), EtcdStore)


@pytest.fixture
async def etcd(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[EtcdCluster]:
    if etcd_binary() is None:
        pytest.skip("etcd binary not found (apt-get install etcd-server)")
    c = EtcdCluster(1, base_dir=tmp_path_factory.mktemp("etcd")).start()
    try:
        yield c
    finally:
        c.stop()


async def _open(c: EtcdCluster, **options: object) -> EtcdStore:
    options.setdefault("compact_interval", None)
    store = open_store(c.endpoint, **options)
    assert isinstance(store, EtcdStore)
    await store.start()
    return store


@needs_etcd
async def test_write_through_one_api_server_reaches_watchers_of_another(etcd: EtcdCluster) -> None:
    a, b = await _open(etcd), await _open(etcd)
    try:
        w = b.watch(P, 0)
        await asyncio.sleep(0.1)
        kv = await a.create(P + "x", b"1")
        ev = await asyncio.wait_for(anext(w), 5)
        assert ev.kv == kv and ev.is_create
        assert await b.get(P + "x") == kv
    finally:
        await a.close()
        await b.close()


@needs_etcd
async def test_future_revision_and_compaction_seen_by_another_client(etcd: EtcdCluster) -> None:
    a, b = await _open(etcd), await _open(etcd)
    try:
        for i in range(4):
            await a.create(f"{P}{i}", b"v")
        cur = await a.current_revision()
        with pytest.raises(FutureRevisionError) as info:
            await a.list(P, revision=cur + 10)
        assert info.value.revision == cur
        await a.compact(cur - 1)
        # b did not compact and knows nothing locally: it learns the point from etcd.
        with pytest.raises(CompactedError) as cinfo:
            await b.list(P, revision=2)
        assert cinfo.value.revision == cur - 1
        with pytest.raises(CompactedError) as winfo:
            await asyncio.wait_for(anext(b.watch(P, 1)), 5)
        assert winfo.value.revision == cur - 1
    finally:
        await a.close()
        await b.close()


@needs_etcd
async def test_compactor_ticks_compact_once_across_api_servers(etcd: EtcdCluster) -> None:
    # Mirrors kube-apiserver's TestCompactConflict: two compactors that both saw version 0 of
    # compact_rev_key; the second loses the compare and learns the new version instead.
    a, b = await _open(etcd), await _open(etcd)
    try:
        version, rev = await a.compact_tick(0, 0)  # first tick records, compacts nothing
        assert version == 1 and await a.compacted_revision() == 0
        for i in range(3):
            await a.create(f"{P}{i}", b"v")
        version_b, _ = await b.compact_tick(0, rev)  # stale view: loses
        assert version_b == 1 and await b.compacted_revision() == 0
        version, _ = await a.compact_tick(version, rev)
        assert version == 2
        assert await a.compacted_revision() == rev
        assert await b.compacted_revision() == rev  # read from compact_rev_key
        with pytest.raises(CompactedError):
            await b.list(P, revision=rev - 1)
    finally:
        await a.close()
        await b.close()


@needs_etcd
async def test_background_compactor_runs(etcd: EtcdCluster) -> None:
    store = await _open(etcd, compact_interval=0.2)
    try:
        first = await store.create(P + "a", b"1")
        deadline = time.monotonic() + 5
        while await store.compacted_revision() < first.mod_revision:
            assert time.monotonic() < deadline, "compactor never compacted"
            await asyncio.sleep(0.05)
        assert (await store.get(P + "a")) == first
    finally:
        await store.close()


@needs_etcd
async def test_etcd_down_gives_unavailable_quickly_and_watch_ends(etcd: EtcdCluster) -> None:
    store = await _open(etcd, request_timeout=1.0)
    try:
        start = await store.current_revision()
        w = store.watch(P, start)
        await asyncio.sleep(0.1)
        etcd.stop_member(etcd.members[0])
        t0 = time.monotonic()
        with pytest.raises(UnavailableError):
            await store.create(P + "x", b"1")
        with pytest.raises(UnavailableError):
            await store.list(P)
        assert time.monotonic() - t0 < 2.5
        with pytest.raises(UnavailableError):
            await asyncio.wait_for(anext(w), 6)  # after retrying for 2 x request_timeout
    finally:
        await store.close()
