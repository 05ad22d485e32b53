"""The SQLite store's indexed watch fan-out (issue 16): a watcher with a trigger gets the events whose
new or previous value has its field value, the others nothing; order, replay and slow-watcher closure
are as for any watch."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from pilothouse.store.interface import CompactedError, KeyValue, WatchEvent, WatchTrigger
from pilothouse.store.sqlite import SQLiteStore

calls: list[str] = []


def node_of(kv: KeyValue) -> str | None:
    calls.append(kv.key)
    try:
        return str(orjson.loads(kv.value)["node"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None


def on(node: str) -> bytes:
    return orjson.dumps({"node": node})


async def take(watch: AsyncIterator[WatchEvent], count: int, timeout: float = 5) -> list[tuple[str, int, str]]:
    out = []
    for _ in range(count):
        ev = await asyncio.wait_for(anext(watch), timeout)
        out.append((ev.kv.key, ev.revision, ev.type.value))
    return out


async def nothing_more(watch: AsyncIterator[WatchEvent]) -> bool:
    try:
        await asyncio.wait_for(anext(watch), 0.2)
    except TimeoutError:
        return True
    return False


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    async with SQLiteStore(tmp_path / "s.db", compact_interval=None, watch_queue_size=7) as s:
        await s.create("/seed", b"")  # watches below start from revision 1, not 0 (a snapshot first)
        yield s


async def test_trigger_narrows_to_old_and_new_value(store: SQLiteStore) -> None:
    start = await store.current_revision()
    a = store.watch("/pods/", start, WatchTrigger(node_of, "a"))
    b = store.watch("/pods/", start, WatchTrigger(node_of, "b"))
    unassigned = store.watch("/pods/", start, WatchTrigger(node_of, ""))
    everything = store.watch("/pods/", start)
    p1 = await store.create("/pods/ns/p1", on(""))
    p1 = await store.update("/pods/ns/p1", on("a"), expected_mod_revision=p1.mod_revision)  # bound to a
    p2 = await store.create("/pods/ns/p2", on("b"))
    p1 = await store.update("/pods/ns/p1", on("a"), expected_mod_revision=p1.mod_revision)
    await store.delete("/pods/ns/p1")
    await store.delete("/pods/ns/p2")
    await store.create("/other/x", on("a"))  # another prefix: nobody here
    r = start
    assert await take(a, 3) == [("/pods/ns/p1", r + 2, "PUT"), ("/pods/ns/p1", r + 4, "PUT"),
                                ("/pods/ns/p1", r + 5, "DELETE")]
    assert await take(b, 2) == [("/pods/ns/p2", r + 3, "PUT"), ("/pods/ns/p2", r + 6, "DELETE")]
    assert await take(unassigned, 2) == [("/pods/ns/p1", r + 1, "PUT"), ("/pods/ns/p1", r + 2, "PUT")]
    assert [rev for _, rev, _ in await take(everything, 6)] == [r + 1, r + 2, r + 3, r + 4, r + 5, r + 6]
    for watch in (a, b, unassigned, everything):
        assert await nothing_more(watch)
        await watch.aclose()
    del p2


async def test_unreadable_value_reaches_every_triggered_watcher(store: SQLiteStore) -> None:
    start = await store.current_revision()
    a = store.watch("/pods/", start, WatchTrigger(node_of, "a"))
    b = store.watch("/pods/", start, WatchTrigger(node_of, "b"))
    await store.create("/pods/ns/sealed", b"k8s:enc:aescbc:v1:key1:...")
    assert [k for k, _, _ in await take(a, 1)] == ["/pods/ns/sealed"]
    assert [k for k, _, _ in await take(b, 1)] == ["/pods/ns/sealed"]


async def test_each_field_is_read_once_per_value_whatever_the_watchers(store: SQLiteStore) -> None:
    start = await store.current_revision()
    watches = [store.watch("/pods/", start, WatchTrigger(node_of, f"n{i}")) for i in range(200)]
    calls.clear()
    kv = await store.create("/pods/ns/p", on("n7"))
    await store.update("/pods/ns/p", on("n9"), expected_mod_revision=kv.mod_revision)
    # create: its value; update: the new value (the previous one is remembered from the create)
    assert len(calls) == 2
    assert [t for _, _, t in await take(watches[7], 2)] == ["PUT", "PUT"]
    assert [t for _, _, t in await take(watches[9], 1)] == ["PUT"]
    assert await nothing_more(watches[8])


async def test_prefixes_of_every_shape(store: SQLiteStore) -> None:
    start = await store.current_revision()
    namespace = store.watch("/pods/ns1/", start, WatchTrigger(node_of, "a"))
    bare = store.watch("/pods/ns1/p", start)  # not "/"-terminated: matches p1 and p2, not ns1x
    root = store.watch("", start)
    await store.create("/pods/ns1/p1", on("a"))
    await store.create("/pods/ns2/p1", on("a"))
    await store.create("/pods/ns1/p2", on("z"))
    await store.create("/pods/ns1x/p1", on("a"))
    assert [k for k, _, _ in await take(namespace, 1)] == ["/pods/ns1/p1"]
    assert [k for k, _, _ in await take(bare, 2)] == ["/pods/ns1/p1", "/pods/ns1/p2"]
    assert len(await take(root, 4)) == 4
    for watch in (namespace, bare, root):
        assert await nothing_more(watch)


async def test_replay_and_slow_watchers_with_triggers(store: SQLiteStore) -> None:
    """A triggered watch resumed from an older revision replays its own events from the ring,
    and a triggered watcher that stops reading is cut off by its own events only."""
    start = await store.current_revision()
    stalled_a = store.watch("/pods/", start, WatchTrigger(node_of, "a"))
    quiet_b = store.watch("/pods/", start, WatchTrigger(node_of, "b"))
    for i in range(8):  # more than the queue (7) for node a
        await store.create(f"/pods/ns/a{i}", on("a"))
    await store.create("/pods/ns/b0", on("b"))
    with pytest.raises(CompactedError):
        await take(stalled_a, 8)
    assert [k for k, _, _ in await take(quiet_b, 1)] == ["/pods/ns/b0"]
    resumed = store.watch("/pods/", start, WatchTrigger(node_of, "b"))
    # the ring's replay is narrowed by the trigger too (issue 16: 5,000 kubelets replaying every pod)
    assert [k for k, _, _ in await take(resumed, 1)] == ["/pods/ns/b0"]
    assert await nothing_more(resumed)
