"""Watch starts replayed from the SQLite history through its ``spec.nodeName`` index (issue 16).

A kubelet's pod watch (trigger ``spec.nodeName=<node>``) that starts from an old revision reads
only its node's events from the ``log`` table. Checked against a model: every event whose new or
previous object is on the node arrives once, in revision order, with nothing else between (a
sentinel written afterwards is the next event), through binds, deletes, re-creation on another node,
label decoys, chunked replays and a file migrated from the schema before the log index. (Values the
index cannot read, ciphertext, never meet it: the encrypting store drops the trigger's ``field``.)"""

from __future__ import annotations

import asyncio
import random
import sqlite3
from pathlib import Path

import orjson
import pytest

from pilothouse.store import watchhub
from pilothouse.store._sqlite_schema import SCHEMA
from pilothouse.store.interface import EventType, KeyValue, WatchEvent, WatchTrigger
from pilothouse.store.sqlite import SQLiteStore

NODES = ["node-a", "node-b", "node-c"]
PREFIX = "/registry/core/pods/"


def _pod(name: str, node: str | None, decoy: str | None) -> bytes:
    spec: dict[str, object] = {"containers": [{"name": "c", "image": "i"}]}
    if node is not None:
        spec["nodeName"] = node
    return orjson.dumps({"apiVersion": "v1", "kind": "Pod",
                         "metadata": {"name": name, "namespace": "ns",
                                      "labels": {"nodeName": decoy} if decoy else {}},
                         "spec": spec})


def _extract(kv: KeyValue) -> str | None:
    try:
        spec = orjson.loads(kv.value).get("spec", {})
    except orjson.JSONDecodeError:
        return None
    return str(spec.get("nodeName", ""))


def _trigger(node: str) -> WatchTrigger:
    return WatchTrigger(_extract, node, None, "spec.nodeName")


def _for_node(ev: WatchEvent, node: str) -> bool:
    return any(kv is not None and _extract(kv) in (node, None) for kv in (ev.kv, ev.prev))


async def _replay(store: SQLiteStore, node: str, start: int, expected: list[int],
                  log: list[WatchEvent]) -> None:
    watch = store.watch(PREFIX, start, _trigger(node))
    try:
        got = [(await asyncio.wait_for(anext(watch), 10)).revision for _ in expected]
        assert got == expected, (node, start)
        sentinel = await store.create(f"{PREFIX}ns/sentinel-{node}-{start}", _pod("s", node, None))
        log.append(WatchEvent(EventType.PUT, sentinel, None))  # history for the later starts
        assert (await asyncio.wait_for(anext(watch), 10)).revision == sentinel.mod_revision
    finally:
        await watch.aclose()


async def _history_matches_model(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(watchhub, "_HISTORY_CHUNK", 7)  # replays cross chunk boundaries
    rng = random.Random(1616)
    # ring_size=0: every start is older than the ring, so it is served from the history table.
    async with SQLiteStore(path, compact_interval=None, ring_size=0) as store:
        log: list[WatchEvent] = []
        model: dict[str, bytes] = {}
        for _ in range(300):
            key = f"{PREFIX}ns/p{rng.randrange(40):02d}"
            name = key.rsplit("/", 1)[1]
            decoy = rng.choice([None, *NODES])
            if key not in model:
                value = _pod(name, rng.choice([None, *NODES]), decoy)
                kv = await store.create(key, value)
                log.append(WatchEvent(EventType.PUT, kv, None))
            elif rng.random() < 0.25:
                kv = await store.delete(key)
                log.append(WatchEvent(EventType.DELETE, kv, KeyValue(key, model.pop(key), 0, 0)))
                continue
            else:
                node = _extract(KeyValue(key, model[key], 0, 0)) or rng.choice(NODES)
                prev = KeyValue(key, model[key], 0, 0)
                value = _pod(name, node, decoy)
                current = await store.get(key)
                assert current is not None
                kv = await store.update(key, value, expected_mod_revision=current.mod_revision)
                log.append(WatchEvent(EventType.PUT, kv, prev))
            model[key] = value
        for start in sorted(rng.sample(range(1, log[-1].kv.mod_revision), 12)):
            for node in NODES:
                expected = [ev.kv.mod_revision for ev in log
                            if ev.kv.mod_revision > start and _for_node(ev, node)]
                await _replay(store, node, start, expected, log)


async def test_history_replays_match_the_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    await _history_matches_model(tmp_path / "s.db", monkeypatch)


async def test_a_file_from_before_the_log_index_is_migrated(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA)
    conn.close()
    await _history_matches_model(path, monkeypatch)
    conn = sqlite3.connect(path)
    indexes = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    conn.close()
    assert {"kv_node_name", "log_node_name", "log_prev_node_name"} <= indexes
