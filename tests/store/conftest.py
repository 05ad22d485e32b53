"""Fixtures for the store conformance suite: one ``backend`` per store implementation.

``BACKENDS`` lists the backends the suite runs against. Each backend class has the same shape
(``open()`` connects a new started client to the same data, so "restart" means a new client;
``close_all()`` tears down). The etcd backend starts a real etcd on 127.0.0.1 (tests/store/etcd_server.py)
and is skipped only when the etcd binary is absent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from pilothouse.store.etcd import EtcdStore
from pilothouse.store.interface import Store
from pilothouse.store.sqlite import SQLiteStore
from tests.store.etcd_server import EtcdCluster, etcd_binary

__all__ = ["BACKENDS", "EtcdBackend", "SQLiteBackend"]

#: Backends the conformance suite is parametrised over.
BACKENDS = ["sqlite", "etcd"]


class SQLiteBackend:
    name = "sqlite"
    # Small on purpose so the suite exercises the overflow and history-from-disk paths.
    watch_buffer = 64
    ring_size = 16

    def __init__(self, directory: Path) -> None:
        self.path = directory / "state.db"
        self._stores: list[SQLiteStore] = []

    async def open(self, **options: Any) -> Store:
        options.setdefault("compact_interval", None)
        options.setdefault("watch_queue_size", self.watch_buffer)
        options.setdefault("ring_size", self.ring_size)
        store = SQLiteStore(self.path, **options)
        await store.start()
        self._stores.append(store)
        return store

    async def close_all(self) -> None:
        for store in self._stores:
            await store.close()


class EtcdBackend:
    """A fresh single-member etcd per test (~0.1 s to start): the suite asserts an empty store's
    revision, and etcd revisions never go back."""

    name = "etcd"
    watch_buffer = 64

    def __init__(self, directory: Path) -> None:
        self.cluster = EtcdCluster(1, base_dir=directory / "etcd").start()
        self._stores: list[EtcdStore] = []

    async def open(self, **options: Any) -> Store:
        options.setdefault("compact_interval", None)
        options.setdefault("watch_queue_size", self.watch_buffer)
        store = EtcdStore(self.cluster.endpoint, **options)
        await store.start()
        self._stores.append(store)
        return store

    async def close_all(self) -> None:
        try:
            for store in self._stores:
                await store.close()
        finally:
            self.cluster.stop()


@pytest.fixture(params=BACKENDS)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SQLiteBackend | EtcdBackend]:
    # The suite's view of this object is the ``Backend`` protocol in test_store_conformance.py.
    b: SQLiteBackend | EtcdBackend
    if request.param == "sqlite":
        b = SQLiteBackend(tmp_path)
    elif request.param == "etcd":
        if etcd_binary() is None:
            pytest.skip("etcd binary not found (apt-get install etcd-server)")
        b = EtcdBackend(tmp_path)
    else:  # pragma: no cover
        pytest.skip(f"backend {request.param} not available")
    try:
        yield b
    finally:
        await b.close_all()


@pytest.fixture
async def store(backend: SQLiteBackend | EtcdBackend) -> Store:
    return await backend.open()
