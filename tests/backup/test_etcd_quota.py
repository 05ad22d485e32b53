"""etcd's space quota exhausted ("mvcc: database space exceeded") is the store's NoSpaceError, which the
API server answers 500 as kube-apiserver does; reads go on. A real etcd with a 2 MB quota."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pilothouse.store.etcd import EtcdStore
from pilothouse.store.interface import NoSpaceError
from tests.store.etcd_server import EtcdCluster, etcd_binary

pytestmark = pytest.mark.skipif(etcd_binary() is None, reason="needs etcd (apt-get install etcd-server)")


async def fill_until_full(endpoint: str) -> tuple[int, NoSpaceError]:
    async with EtcdStore(endpoint, compact_interval=None) as store:
        for i in range(200):
            try:
                await store.create(f"/registry/configmaps/default/c{i}", b"x" * 100_000)
            except NoSpaceError as error:
                assert await store.get("/registry/configmaps/default/c0") is not None  # reads go on
                return i, error
    raise AssertionError("the quota was never reached")


def test_etcd_quota_is_no_space(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ETCD_QUOTA_BACKEND_BYTES", str(2 * 1024 * 1024))  # etcd reads its flags from ETCD_*
    etcd = EtcdCluster(1, base_dir=tmp_path / "etcd").start()
    try:
        written, error = asyncio.run(fill_until_full(etcd.endpoint))
    finally:
        etcd.stop()
    assert written > 0 and "database space exceeded" in str(error)
