"""The etcd backend against a real three-member etcd cluster: member loss and quorum loss.

* one member (the raft leader) stopped during a write burst: no acknowledged write is lost, a watcher
  sees every acknowledged write exactly once, and the store keeps serving;
* two members stopped: writes fail with UnavailableError within the request timeout (no hang), and
  succeed again once a member returns.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from pilothouse.store.etcd import EtcdStore
from pilothouse.store.interface import StoreError, UnavailableError, WatchEvent
from tests.conftest import write_burst
from tests.store.etcd_server import EtcdCluster, etcd_binary

pytestmark = pytest.mark.skipif(etcd_binary() is None, reason="etcd binary not found (apt-get install etcd-server)")

P = "/registry/configmaps/default/"
TIMEOUT = 2.0


@pytest.fixture
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[EtcdCluster]:
    c = EtcdCluster(3, base_dir=tmp_path_factory.mktemp("etcd3"), heartbeat_ms=20, election_ms=200)
    await asyncio.to_thread(c.start)
    try:
        yield c
    finally:
        c.stop()


async def _burst(store: EtcdStore, prefix: str, seconds: float, writers: int = 8) -> tuple[dict[str, int], int]:
    """Creates from ``writers`` tasks for ``seconds``: (acknowledged key → revision, failures)."""
    async def create(key: str) -> int:
        return (await store.create(key, key.encode())).mod_revision

    return await write_burst(create, lambda w, i: f"{prefix}w{w}-{i:05d}", seconds, writers, (UnavailableError,))


async def test_leader_loss_during_write_burst_loses_no_acknowledged_write(cluster: EtcdCluster) -> None:
    store = EtcdStore(cluster.endpoint, request_timeout=TIMEOUT, compact_interval=None)
    await store.start()
    try:
        # A revision past the empty store's: a watch from 0 would first list the prefix (the Store
        # contract's synthetic ADDs, in key order), and the burst below races that list, so events
        # already written came in key order, not revision order (a CI run saw [5, 3, 2, 4, 6, ...]).
        await store.create(P + "before-watch", b"x")
        start = await store.current_revision()
        assert start > 0
        watch = store.watch(P, start)
        seen: list[WatchEvent] = []

        async def follow() -> None:
            async for ev in watch:
                seen.append(ev)

        follower = asyncio.ensure_future(follow())
        burst = asyncio.ensure_future(_burst(store, P, 2.0))
        await asyncio.sleep(0.6)
        leader = cluster.leader()
        assert leader is not None
        await asyncio.to_thread(cluster.stop_member, leader, kill=True)
        acked, failures = await burst
        assert len(acked) > 50, (len(acked), failures)

        # The store keeps serving on the remaining two members.
        after = await store.create(P + "after-stop", b"x")
        assert after.mod_revision > max(acked.values())

        # Every acknowledged write is there, read back through a brand-new client.
        fresh = EtcdStore(cluster.endpoint, request_timeout=TIMEOUT, compact_interval=None)
        await fresh.start()
        try:
            stored = {kv.key: kv for kv in (await fresh.list(P)).items}
        finally:
            await fresh.close()
        for key, rev in acked.items():
            assert key in stored, key
            assert stored[key].mod_revision == rev and stored[key].value == key.encode()

        # The watcher resumed across the member loss: every write once, in revision order.
        deadline = time.monotonic() + 5
        while not any(ev.kv.key == P + "after-stop" for ev in seen) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        revs = [ev.revision for ev in seen]
        assert revs == sorted(set(revs))
        assert set(acked) <= {ev.kv.key for ev in seen}
        follower.cancel()
    finally:
        await store.close()


async def test_quorum_loss_fails_writes_in_bounded_time_then_recovers(cluster: EtcdCluster) -> None:
    store = EtcdStore(cluster.endpoint, request_timeout=TIMEOUT, compact_interval=None)
    await store.start()
    try:
        await store.create(P + "before", b"1")
        down = cluster.members[:2]
        for m in down:
            await asyncio.to_thread(cluster.stop_member, m)
        for op in ("create", "get"):
            t0 = time.monotonic()
            with pytest.raises(UnavailableError):
                if op == "create":
                    await store.create(P + "during", b"x")
                else:
                    await store.get(P + "before")  # linearizable reads need quorum too
            elapsed = time.monotonic() - t0
            assert elapsed < TIMEOUT + 1.5, (op, elapsed)

        await asyncio.to_thread(cluster.start_member, down[0], wait=False)
        deadline = time.monotonic() + 20
        while True:
            try:
                kv = await store.create(P + "after", b"y")
                break
            except StoreError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)
        assert (await store.get(P + "after")) == kv
        assert (await store.get(P + "before")) is not None
    finally:
        await store.close()
