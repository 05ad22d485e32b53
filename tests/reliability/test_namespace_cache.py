"""The admission namespace cache forgets deleted namespaces (issue 15): it kept a tombstone per deleted
name forever, so namespace churn grew the API server without bound. It must still refuse a create in
a namespace deleted a moment ago, even when a stale "active" observation arrives after the delete."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from pilothouse.apiserver.admission import NAMESPACE_KEY_PREFIX, NamespaceLifecycle
from pilothouse.machinery.errors import StatusError
from pilothouse.store.sqlite import SQLiteStore


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    async with SQLiteStore(tmp_path / "state.db", compact_interval=None) as opened:
        yield opened


def namespace(name: str, revision: int) -> dict[str, object]:
    return {"metadata": {"name": name, "resourceVersion": str(revision)}, "status": {"phase": "Active"}}


async def test_deleted_namespaces_are_forgotten_and_stay_refused(store: SQLiteStore) -> None:
    lifecycle = NamespaceLifecycle(store)
    lifecycle.start()
    try:
        for i in range(500):
            key = f"{NAMESPACE_KEY_PREFIX}churn-{i}"
            created = await store.create(key, orjson.dumps(namespace(f"churn-{i}", 0)))
            lifecycle.observe(namespace(f"churn-{i}", created.mod_revision))
            await lifecycle.admit_create(f"churn-{i}")
            deleted = await store.delete(key)
            lifecycle.forget(namespace(f"churn-{i}", deleted.mod_revision))
            # A create that read the namespace before the delete reports it afterwards: stale.
            lifecycle.observe(namespace(f"churn-{i}", created.mod_revision))
            with pytest.raises(StatusError) as refused:
                await lifecycle.admit_create(f"churn-{i}")
            assert refused.value.code == 404
        assert lifecycle.cached_names() <= 10, lifecycle.cached_names()
        kept = await store.create(f"{NAMESPACE_KEY_PREFIX}kept", orjson.dumps(namespace("kept", 0)))
        lifecycle.observe(namespace("kept", kept.mod_revision))
        await lifecycle.admit_create("kept")
        assert lifecycle.cached_names() >= 1
    finally:
        await lifecycle.close()
