"""Fixtures for the store conformance suite: one ``backend`` per store implementation.

``BACKENDS`` lists the backends the suite runs against. An etcd backend joins by adding a class with the
same shape as :class:`SQLiteBackend` (``open()`` connects a new started client to the same data, so
"restart" means a new client; ``close_all()`` tears down) and its name to ``BACKENDS`` — e.g. starting
a real etcd on 127.0.0.1 in the fixture and skipping when the binary is absent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from pilothouse.store.interface import Store
from pilothouse.store.sqlite import SQLiteStore

__all__ = ["BACKENDS", "SQLiteBackend"]

#: Backends the conformance suite is parametrised over. Future: "etcd".
BACKENDS = ["sqlite"]


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


@pytest.fixture(params=BACKENDS)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SQLiteBackend]:
    # The suite's view of this object is the ``Backend`` protocol in test_store_conformance.py.
    if request.param == "sqlite":
        b = SQLiteBackend(tmp_path)
    else:  # pragma: no cover - placeholder until another backend exists
        pytest.skip(f"backend {request.param} not available")
    try:
        yield b
    finally:
        await b.close_all()


@pytest.fixture
async def store(backend: SQLiteBackend) -> Store:
    return await backend.open()
