"""The SQLite store's index on ``spec.nodeName`` (issue 16: every kubelet lists its pods by node).

A list with ``index=ListIndex("spec.nodeName", node)`` must hold every entry of that node, at the
current revision and at past ones (continue pages), in key order and across pages; at the current
revision it holds nothing else (that is what makes it cheap). Checked against a model through
creates, binds, deletes, re-creation on another node, decoys (a label named nodeName, values that are
not JSON), a restart, and a file written by the schema before the index (migration)."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import orjson

from pilothouse.store._sqlite_schema import SCHEMA, SCHEMA_VERSION
from pilothouse.store.interface import ListIndex
from pilothouse.store.sqlite import SQLiteStore

NODES = ["node-a", "node-b", "node-c"]
PREFIX = "/registry/core/pods/"


def _pod(name: str, node: str | None, decoy: str | None = None) -> bytes:
    obj: dict[str, object] = {"apiVersion": "v1", "kind": "Pod",
                              "metadata": {"name": name, "namespace": "ns",
                                           "labels": {"nodeName": decoy} if decoy else {}},
                              "spec": {"containers": [{"name": "c", "image": "i"}]}}
    if node is not None:
        obj["spec"]["nodeName"] = node  # type: ignore[index]
    return orjson.dumps(obj)


def _node_of(value: bytes) -> str | None:
    try:
        node = orjson.loads(value).get("spec", {}).get("nodeName")
    except orjson.JSONDecodeError:
        return None
    return node if isinstance(node, str) else None


async def _paged(store: SQLiteStore, node: str, limit: int, revision: int = 0) -> tuple[list[str], int]:
    """Every page of the node's list, as the registry reads them: (keys of that node, revision)."""
    keys: list[str] = []
    start_after = ""
    while True:
        page = await store.list(PREFIX, limit=limit, start_after=start_after, revision=revision,
                                index=ListIndex("spec.nodeName", node))
        revision = page.revision
        keys += [kv.key for kv in page.items if _node_of(kv.value) == node]
        if not page.more:
            return keys, revision
        start_after = page.items[-1].key


async def test_node_lists_match_a_filtered_model(tmp_path: Path) -> None:
    rng = random.Random(1616)
    path = tmp_path / "s.db"
    async with SQLiteStore(path, compact_interval=None) as store:
        await store.create("/registry/core/nodes/node-a", b'{"spec":{"nodeName":"node-a"}}')  # outside the prefix
        await store.create(PREFIX + "ns/encrypted", b'k8s:enc:aescbc:v1:key:\x00\xff"nodeName":"node-a"')
        model: dict[str, bytes] = {}
        states: dict[int, dict[str, bytes]] = {}
        for step in range(600):
            key = f"{PREFIX}ns/p{rng.randrange(80):02d}"
            name = key.rsplit("/", 1)[1]
            decoy = rng.choice([None, "node-a"])
            if key not in model:
                # created pending, or already bound (a static or re-created pod, maybe on another node)
                value = _pod(name, rng.choice([None, *NODES]), decoy)
                kv = await store.create(key, value)
            elif rng.random() < 0.25:
                kv = await store.delete(key)
                del model[key]
                states[kv.mod_revision] = dict(model)
                continue
            else:
                node = _node_of(model[key]) or rng.choice(NODES)  # bind once; afterwards status writes
                value = _pod(name, node, decoy)
                kv = await store.update(key, value, expected_mod_revision=0)
            model[key] = value
            states[kv.mod_revision] = dict(model)
            if step % 50 == 0:
                for node in NODES:
                    want = sorted(k for k, v in model.items() if _node_of(v) == node)
                    got = await store.list(PREFIX, index=ListIndex("spec.nodeName", node))
                    assert [kv.key for kv in got.items] == want  # exactly: nothing else is read
        revisions = sorted(states)
        for _ in range(60):
            revision = rng.choice(revisions)
            node = rng.choice(NODES)
            limit = rng.choice([0, 1, 2, 5, 40])
            want = sorted(k for k, v in states[revision].items() if _node_of(v) == node)
            got, at = await _paged(store, node, limit, revision)
            assert (got, at) == (want, revision), (revision, node, limit)
        before = {node: (await _paged(store, node, 3))[0] for node in NODES}
        assert sum(map(len, before.values())) > 10
        assert (await store.list(PREFIX, index=ListIndex("spec.nodeName", ""))).items == []
        # An unknown field is ignored: the whole range comes back.
        every = await store.list(PREFIX, index=ListIndex("spec.unknown", "node-a"))
        assert len(every.items) == len(model) + 1
    async with SQLiteStore(path, compact_interval=None) as store:  # restart
        assert {node: (await _paged(store, node, 3))[0] for node in NODES} == before


async def test_a_file_from_before_the_index_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA)  # schema 1: no node_name column
    rows = [(f"{PREFIX}ns/p{i}", _pod(f"p{i}", NODES[i % 3] if i % 4 else None), i + 1, i + 1) for i in range(30)]
    conn.executemany("INSERT INTO kv (key, value, create_rev, mod_rev) VALUES (?, ?, ?, ?)", rows)
    conn.executemany("INSERT INTO log (rev, key, deleted, value, create_rev) VALUES (?, ?, 0, ?, ?)",
                     [(rev, key, value, rev) for key, value, rev, _ in rows])
    conn.commit()
    assert "node_name" not in {row[1] for row in conn.execute("PRAGMA table_xinfo(kv)")}
    conn.close()
    async with SQLiteStore(path, compact_interval=None) as store:
        assert await store.current_revision() == 30
        for node in NODES:
            got = await store.list(PREFIX, index=ListIndex("spec.nodeName", node))
            assert [kv.key for kv in got.items] == sorted(k for k, v, _, _ in rows if _node_of(v) == node)
        kv = await store.update(f"{PREFIX}ns/p0", _pod("p0", "node-b"), expected_mod_revision=0)
        got = await store.list(PREFIX, index=ListIndex("spec.nodeName", "node-b"))
        assert kv.key in [item.key for item in got.items]
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT value FROM meta WHERE name = 'schema'").fetchone() == (SCHEMA_VERSION,)
    plan = conn.execute("EXPLAIN QUERY PLAN SELECT key FROM kv WHERE node_name = ? AND key >= ? AND key < ?"
                        " ORDER BY key", ("node-a", PREFIX, PREFIX[:-1] + "0")).fetchall()
    assert "kv_node_name" in str(plan)
    conn.close()
