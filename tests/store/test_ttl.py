"""Keys with a TTL (``Store.create/update(..., ttl=)``), on both backends: what kube-apiserver's
``--event-ttl`` stands on. etcd deletes the key when its lease expires; the SQLite store's sweeper
deletes it as an ordinary delete. Either way a watcher sees DELETED, a write before the expiry renews
it, and a key written without a TTL never expires (issue 15, soak: Events were never deleted)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from pilothouse.store.etcd import EtcdStore
from pilothouse.store.interface import EventType, Store, WatchEvent
from pilothouse.store.sqlite import SWEEP_BATCH, SQLiteStore
from tests.store.conftest import EtcdBackend, SQLiteBackend
from tests.store.test_store_conformance import assert_quiet, next_event, seeded

E = "/registry/core/events/default/"


def fast_sweep(backend: SQLiteBackend | EtcdBackend) -> dict[str, Any]:
    """SQLite sweeps every 0.2 s here (etcd's lessor checks its leases every 0.5 s)."""
    return {"sweep_interval": 0.2} if backend.name == "sqlite" else {}


async def wait_gone(store: Store, key: str, timeout: float) -> float:
    """Seconds until ``key`` is gone (fails after ``timeout``)."""
    started = time.monotonic()
    while await store.get(key) is not None:
        assert time.monotonic() - started < timeout, f"{key} still there after {timeout} s"
        await asyncio.sleep(0.1)
    return time.monotonic() - started


async def test_key_with_ttl_expires_watchers_see_deleted_and_others_stay(
        backend: SQLiteBackend | EtcdBackend) -> None:
    store = await backend.open(**fast_sweep(backend))
    start = await seeded(store)
    watch = store.watch(E, start)
    created = await store.create(E + "short", b"event", ttl=2)
    await store.create(E + "forever", b"configmap-like")
    assert [(await next_event(watch)).kv.key for _ in range(2)] == [E + "short", E + "forever"]
    assert await store.get(E + "short") is not None  # not before its time
    gone: WatchEvent = await next_event(watch, timeout=20)
    assert (gone.type, gone.kv.key, gone.kv.value) == (EventType.DELETE, E + "short", b"event")
    assert gone.prev is not None and gone.prev.mod_revision == created.mod_revision
    assert gone.revision > created.mod_revision
    assert await store.get(E + "short") is None
    assert [kv.key for kv in (await store.list(E)).items] == [E + "forever"]
    await asyncio.sleep(1.0)
    await assert_quiet(watch)
    assert await store.get(E + "forever") is not None


async def test_a_write_before_expiry_renews_the_ttl(backend: SQLiteBackend | EtcdBackend) -> None:
    store = await backend.open(**fast_sweep(backend))
    kv = await store.create(E + "series", b"count=1", ttl=6)
    await asyncio.sleep(2)
    renewed = time.monotonic()
    await store.update(E + "series", b"count=2", expected_mod_revision=kv.mod_revision, ttl=6)
    # The first write's expiry (6 s after it) passes; the key lives on, then goes 6 s after the update.
    await asyncio.sleep(5.5)
    current = await store.get(E + "series")
    assert current is not None and current.value == b"count=2"
    await wait_gone(store, E + "series", timeout=20)
    assert time.monotonic() - renewed >= 6 - 0.5


async def test_an_update_without_ttl_makes_the_key_permanent(backend: SQLiteBackend | EtcdBackend) -> None:
    # etcd: a put that names no lease detaches the key from its lease.
    store = await backend.open(**fast_sweep(backend))
    kv = await store.create(E + "kept", b"1", ttl=2)
    await store.update(E + "kept", b"2", expected_mod_revision=kv.mod_revision)
    await asyncio.sleep(3.5)
    assert await store.get(E + "kept") is not None


# --- the SQLite sweeper ---------------------------------------------------------------------------


async def test_sweeper_deletes_expired_keys_in_batches_in_revision_order(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "state.db", compact_interval=None, sweep_interval=None)
    await store.start()
    try:
        n = 2 * SWEEP_BATCH + 7
        await asyncio.gather(*(store.create(f"{E}ev-{i:05d}", b"x", ttl=60) for i in range(n)),
                             *(store.create(f"{E}cm-{i}", b"y") for i in range(3)))
        watch = store.watch(E, await store.current_revision())
        assert await store.sweep_expired() == 0  # none is due yet
        assert await store.sweep_expired(now=time.time() + 61) == n
        events = [await next_event(watch) for _ in range(n)]
        assert {e.type for e in events} == {EventType.DELETE}
        assert sorted(e.kv.key for e in events) == [f"{E}ev-{i:05d}" for i in range(n)]
        assert [e.revision for e in events] == sorted(e.revision for e in events)
        assert await store.count(E) == 3
        assert await store.sweep_expired(now=time.time() + 61) == 0
    finally:
        await store.close()


async def test_sweeper_spares_a_key_written_since_it_expired(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "state.db", compact_interval=None, sweep_interval=None)
    await store.start()
    try:
        kv = await store.create(E + "a", b"1", ttl=10)
        await store.update(E + "a", b"2", expected_mod_revision=kv.mod_revision, ttl=100)
        assert await store.sweep_expired(now=time.time() + 50) == 0
        assert await store.get(E + "a") is not None
        assert await store.sweep_expired(now=time.time() + 101) == 1
    finally:
        await store.close()


async def test_expiry_survives_a_restart_and_a_file_of_the_previous_schema_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    async with SQLiteStore(path, compact_interval=None, sweep_interval=None) as store:
        await store.create(E + "old", b"1")
    with sqlite3.connect(path) as conn:  # back to schema 3: no expires_at
        conn.execute("DROP INDEX kv_expires_at")
        conn.execute("ALTER TABLE kv DROP COLUMN expires_at")
        conn.execute("UPDATE meta SET value = 3 WHERE name = 'schema'")
    async with SQLiteStore(path, compact_interval=None, sweep_interval=None) as store:
        await store.create(E + "new", b"2", ttl=30)
    async with SQLiteStore(path, compact_interval=None, sweep_interval=None) as store:
        assert await store.sweep_expired(now=time.time() + 31) == 1
        assert [kv.key for kv in (await store.list(E)).items] == [E + "old"]
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT value FROM meta WHERE name = 'schema'").fetchone() == (4,)


# --- etcd: one lease for the writes of a while ------------------------------------------------------


@pytest.mark.parametrize("backend", ["etcd"], indirect=True)
async def test_etcd_reuses_one_lease_for_writes_close_together(backend: SQLiteBackend | EtcdBackend) -> None:
    store = await backend.open()
    assert isinstance(store, EtcdStore)
    await asyncio.gather(*(store.create(f"{E}ev-{i}", b"x", ttl=600) for i in range(50)))
    # kube-apiserver's leaseManager: reuse while the lease ends within min(60 s, 5 % of the TTL).
    assert store.leases.granted == 1
    await store.create(E + "short", b"x", ttl=2)  # 5 % of 2 s is 0: a lease of its own
    assert store.leases.granted == 2


@pytest.mark.parametrize("backend", ["etcd"], indirect=True)
async def test_etcd_grants_a_new_lease_when_the_shared_one_is_gone(backend: SQLiteBackend | EtcdBackend) -> None:
    store = await backend.open()
    assert isinstance(store, EtcdStore)
    await store.create(E + "a", b"x", ttl=600)
    lease = await store.leases.lease_for(600)
    # Revoked behind the store's back (as after a restore of etcd from a snapshot): "lease not found".
    await store._call("/v3/lease/revoke", {"ID": lease}, write=True)
    await store.create(E + "b", b"x", ttl=600)
    assert store.leases.granted == 2
    assert await store.get(E + "a") is None  # it went with its lease
    assert await store.get(E + "b") is not None
