"""Reads survive the loss of the etcd leader (found by the chaos harness): with one member of three
SIGKILLed, a read that the surviving member answered with "etcdserver: leader changed" became a 503
for the API client, although a read changes nothing and another member (or the same, a moment later)
serves it. Reads are retried within the request timeout as clientv3 retries them; writes are not
(their fate is unknown when the leader changes under them)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pilothouse.store.etcd import EtcdStore
from pilothouse.store.interface import UnavailableError
from tests.store.etcd_server import EtcdCluster, etcd_binary

pytestmark = pytest.mark.skipif(etcd_binary() is None, reason="etcd binary not found (apt-get install etcd-server)")


@pytest.fixture
def etcd3(tmp_path: Path) -> Iterator[EtcdCluster]:
    cluster = EtcdCluster(3, base_dir=tmp_path / "etcd", heartbeat_ms=50, election_ms=500)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


async def test_reads_go_on_while_leaders_are_killed(etcd3: EtcdCluster) -> None:
    store = EtcdStore(etcd3.endpoint, compact_interval=None)
    await store.start()
    try:
        await store.create("/registry/configmaps/default/a", b"{}")
        failures: list[str] = []
        reads = 0
        stop = False

        async def reader() -> None:
            nonlocal reads
            while not stop:
                try:
                    assert await store.get("/registry/configmaps/default/a") is not None
                    reads += 1
                except UnavailableError as error:
                    failures.append(str(error))
                await asyncio.sleep(0)

        readers = [asyncio.create_task(reader()) for _ in range(4)]
        for _ in range(3):  # kill the leader, let the others elect, bring it back
            leader = await asyncio.to_thread(etcd3.leader)
            assert leader is not None
            await asyncio.to_thread(etcd3.stop_member, leader, kill=True)
            await asyncio.sleep(2.0)
            await asyncio.to_thread(etcd3.start_member, leader)
            deadline = time.monotonic() + 20
            while await asyncio.to_thread(etcd3.leader) is None and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
        stop = True
        await asyncio.gather(*readers)
        assert reads > 0
        assert not failures, failures[:5]
    finally:
        await store.close()
