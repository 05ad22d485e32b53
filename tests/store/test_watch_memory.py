"""Issue 16: what the watch path may hold in memory is bounded in bytes, not only in entries.

At 5,000 simulated nodes the server grew to 12 GB. Among the things that could grow with object
size: a watcher's live queue (10,000 events: 400 MB of 20 KB pods, per watcher) and the ring of
recent events (8,192: 330 MB). These tests drive the embedded SQLite store's real hub with large
values and check both bounds, and that a history replay is held one chunk at a time.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pilothouse.store.interface import CompactedError, EventType, KeyValue, WatchEvent
from pilothouse.store.watchhub import WatchHub, event_bytes

BIG = b"x" * 20_000  # a large pod's stored bytes


def _event(revision: int, key: str = "/registry/pods/ns/p", prev: bool = True) -> WatchEvent:
    kv = KeyValue(key, BIG, 1, revision)
    return WatchEvent(EventType.PUT, kv, KeyValue(key, BIG, 1, revision - 1) if prev else None)


def _hub(**kwargs: int) -> WatchHub:
    async def no_history(prefix: str, after: int, upto: int, limit: int, trigger: object) -> list[WatchEvent]:
        return []

    async def no_snapshot(prefix: str) -> object:
        raise AssertionError("not used")

    return WatchHub(load_history=no_history, load_snapshot=no_snapshot, **kwargs)  # type: ignore[arg-type]


async def test_a_lagging_watcher_is_cut_off_by_bytes_before_entries() -> None:
    hub = _hub(queue_size=10_000, queue_bytes=4 << 20)
    watch = hub.watch("/registry/pods/", 0 + 1)
    watch._pending = None  # a live watcher: nothing to replay
    queued = 0
    for revision in range(2, 2000):
        hub.publish([_event(revision)])
        if watch._error is not None:
            break
        queued = len(watch._live)
    # 40 KB an event: about 100 fit in 4 MB, far below the 10,000 entries
    assert watch._error is not None, "a watcher holding 80 MB of backlog was never cut off"
    assert 90 <= queued <= 110
    assert watch._live_bytes == 0 and not watch._live
    with pytest.raises(CompactedError):
        await watch.__anext__()
    assert hub.watcher_count == 0


async def test_a_watcher_that_keeps_up_is_not_cut_off() -> None:
    hub = _hub(queue_bytes=1 << 20)
    watch = hub.watch("/registry/pods/", 1)
    watch._pending = None
    for revision in range(2, 500):
        hub.publish([_event(revision)])
        event = await asyncio.wait_for(watch.__anext__(), 1)
        assert event.revision == revision
        assert watch._live_bytes == 0
    # one batch larger than the bound reaches an empty queue whole: it is no backlog
    hub.publish([_event(r) for r in range(500, 600)])
    assert watch._error is None and len(watch._live) == 100


def test_the_ring_is_bounded_in_bytes() -> None:
    hub = _hub(ring_size=8192, ring_bytes=8 << 20)
    for revision in range(2, 3000):
        hub.publish([_event(revision)])
    held = sum(event_bytes(ev) for ev in hub._ring)
    assert held <= 8 << 20, f"ring holds {held} bytes"
    assert held == hub._ring_bytes
    assert len(hub._ring) > 150
    # what fell out of the ring is replayed from history: the floor moved with it
    assert hub.floor == hub._ring[0].revision - 1
    hub.compacted_to(hub._ring[10].revision)
    assert hub._ring_bytes == sum(event_bytes(ev) for ev in hub._ring)


async def test_history_replay_holds_one_chunk_at_a_time(tmp_path: Path) -> None:
    """A watch from an old revision under a write stream (the kubelets' watches at scale): the
    replay is loaded in chunks of 1,000 as delivered, never the whole range at once."""
    from pilothouse.store.sqlite import SQLiteStore

    store = SQLiteStore(str(tmp_path / "state.db"), ring_size=16)
    await store.start()
    try:
        first = await store.current_revision()
        for start in range(0, 3000, 500):
            await asyncio.gather(*(store.create(f"/registry/pods/ns/p{i}", b'{"a":1}')
                                   for i in range(start, start + 500)))
        watch = store.watch("/registry/pods/", first)
        most = 0
        seen = 0
        async for _ in watch:
            seen += 1
            most = max(most, len(watch._replay))
            if seen == 3000:
                break
        await watch.aclose()
        assert seen == 3000
        assert most <= 1000
    finally:
        await store.close()


async def test_a_node_watch_replays_only_its_nodes_events(tmp_path: Path) -> None:
    """5,000 kubelet watches from an old revision each held (and had decoded) every pod event of
    the range; a node's watch now holds its node's events only, ring and history alike."""
    import orjson

    from pilothouse.store.interface import WatchTrigger
    from pilothouse.store.sqlite import SQLiteStore

    def node_of(kv: KeyValue) -> str | None:
        return str(orjson.loads(kv.value).get("node", ""))

    def may_match(value: str) -> object:
        needle = b'"node":' + orjson.dumps(value)
        return lambda kv: needle in kv.value

    store = SQLiteStore(str(tmp_path / "state.db"), ring_size=256)
    await store.start()
    try:
        await store.create("/registry/namespaces/ns", b"{}")  # revision 0 would be a snapshot watch
        first = await store.current_revision()
        for start in range(0, 3000, 500):
            await asyncio.gather(*(store.create(f"/registry/pods/ns/p{i}", orjson.dumps({"node": f"n{i % 100}"}))
                                   for i in range(start, start + 500)))
        recent = await store.current_revision() - 100  # within the ring
        for since, expected in ((first, 30), (recent, 1)):
            for test in (None, may_match("n7")):
                watch = store.watch("/registry/pods/", since,
                                    WatchTrigger(node_of, "n7", test))  # type: ignore[arg-type]
                got: list[str] = []
                most = 0
                while len(got) < expected:
                    event = await asyncio.wait_for(watch.__anext__(), 10)
                    most = max(most, len(watch._replay))
                    got.append(event.kv.key)
                await watch.aclose()
                assert all(int(key.rsplit("p", 1)[1]) % 100 == 7 for key in got), got
                assert most <= 30, f"the replay held {most} events for a node that has 30"
    finally:
        await store.close()
