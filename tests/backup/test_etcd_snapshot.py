"""``EtcdStore.snapshot`` under writers: every create acknowledged before the snapshot began is in it,
with its revision, once etcd's own tool has restored the snapshot into a new member."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from pilothouse.store.etcd import EtcdStore
from tests.conftest import write_burst
from tests.store.etcd_server import EtcdCluster, etcd_binary

pytestmark = pytest.mark.skipif(etcd_binary() is None or shutil.which("etcdctl") is None,
                                reason="needs etcd and etcdctl (apt-get install etcd-server etcd-client)")


async def snapshot_under_writes(endpoint: str, destination: Path) -> tuple[dict[str, int], int, int]:
    """Four writers create keys for 1.5 s; the snapshot starts after 0.5 s. Returns the keys acknowledged
    before it started (→ their revisions), how many were acknowledged in all, the snapshot's revision."""
    async with EtcdStore(endpoint, compact_interval=None) as store:
        stamps: dict[str, float] = {}

        async def create(key: str) -> int:
            kv = await store.create(key, b"v")
            stamps[key] = time.monotonic()
            return kv.mod_revision

        async def snapshot_later() -> tuple[float, int]:
            await asyncio.sleep(0.5)
            started = time.monotonic()
            return started, await store.snapshot(str(destination))

        (acked, _), (started, revision) = await asyncio.gather(
            write_burst(create, lambda w, i: f"/registry/configmaps/default/w{w}-{i}", 1.5, 4, ()),
            snapshot_later())
        before = {key: rev for key, rev in acked.items() if stamps[key] < started}
        return before, len(acked), revision


async def read_all(endpoint: str) -> dict[str, int]:
    async with EtcdStore(endpoint, compact_interval=None) as store:
        listed = await store.list("/registry/configmaps/default/")
        return {kv.key: kv.mod_revision for kv in listed.items}


def test_snapshot_holds_every_write_acknowledged_before_it(tmp_path: Path) -> None:
    source = EtcdCluster(1, base_dir=tmp_path / "source").start()
    snapshot = tmp_path / "snapshot.db"
    try:
        before, total, revision = asyncio.run(snapshot_under_writes(source.endpoint, snapshot))
    finally:
        source.stop()
    assert len(before) > 20 and max(before.values()) <= revision
    assert total > len(before)  # the writers went on while the snapshot was taken

    restored = EtcdCluster(1, base_dir=tmp_path / "restored")
    member = restored.members[0]
    subprocess.run(["etcdctl", "snapshot", "restore", str(snapshot), "--data-dir", str(member.data_dir),
                    "--name", member.name, "--initial-cluster", f"{member.name}={member.peer_url}",
                    "--initial-advertise-peer-urls", member.peer_url, "--initial-cluster-token", restored.token],
                   check=True, capture_output=True, env={**os.environ, "ETCDCTL_API": "3"})
    restored.start()
    try:
        present = asyncio.run(read_all(restored.endpoint))
    finally:
        restored.stop()
    for key, rev in before.items():
        assert present.get(key) == rev, key
