"""Two SQLiteStores over one file as two ``server --workers`` processes see it (store/_sqlite_peers.py),
here in one process for speed: the protocol between them is the file and the datagrams only."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pilothouse.store.interface import CompactedError, WatchEvent
from pilothouse.store.sqlite import SQLiteStore


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[tuple[SQLiteStore, SQLiteStore]]:
    path = tmp_path / "state.db"
    first = SQLiteStore(path, compact_interval=None, workers=2, worker_index=0)
    second = SQLiteStore(path, compact_interval=None, workers=2, worker_index=1)
    await first.start()
    await second.start()
    yield first, second
    await second.close()
    await first.close()


async def _take(watch: AsyncIterator[WatchEvent], n: int) -> list[WatchEvent]:
    out: list[WatchEvent] = []
    async with asyncio.timeout(10):
        async for event in watch:
            out.append(event)
            if len(out) == n:
                break
    return out


async def test_interleaved_writes_make_one_dense_order_every_watch_sees(pair: tuple[SQLiteStore, SQLiteStore]) -> None:
    first, second = pair
    start = (await first.create("/seed", b"v")).mod_revision  # (a watch from 0 starts with a snapshot)
    watches = [first.watch("/k/", start), second.watch("/k/", start)]

    async def write(store: SQLiteStore, tag: str) -> list[int]:
        return [(await store.create(f"/k/{tag}{i}", b"v")).mod_revision for i in range(100)]

    revisions = [rev for revs in await asyncio.gather(write(first, "a"), write(second, "b")) for rev in revs]
    assert sorted(revisions) == list(range(start + 1, start + 201))
    for watch in watches:
        events = await _take(watch, 200)
        assert [e.revision for e in events] == list(range(start + 1, start + 201))
        await watch.aclose()
    # A conflict is decided against the file, whichever store wrote last.
    kv = await first.update("/k/a0", b"x", expected_mod_revision=revisions[0])
    with pytest.raises(Exception, match="conflict"):
        await second.update("/k/a0", b"y", expected_mod_revision=revisions[0])
    assert (await second.get("/k/a0")).mod_revision == kv.mod_revision  # type: ignore[union-attr]


async def test_a_sibling_that_missed_compacted_revisions_ends_its_watches(
        pair: tuple[SQLiteStore, SQLiteStore]) -> None:
    first, second = pair
    watch = second.watch("/k/", (await first.create("/seed", b"v")).mod_revision)
    # The second store stops following (as if stalled): no wake-ups, no polls.
    assert second._peers is not None and second._poller is not None
    second._peers.close(asyncio.get_running_loop())
    second._poller.cancel()
    last = 0
    for i in range(5):
        last = (await first.create(f"/k/c{i}", b"v")).mod_revision
    await first.create("/k/after", b"v")
    await first.compact(last)
    second._catch_up()
    with pytest.raises(CompactedError):
        await _take(watch, 1)


async def test_a_burst_is_read_in_chunks_in_order(pair: tuple[SQLiteStore, SQLiteStore]) -> None:
    first, second = pair
    start = (await first.create("/seed", b"v")).mod_revision
    watch = second.watch("/k/", start)
    assert second._peers is not None and second._poller is not None
    second._peers.close(asyncio.get_running_loop())  # wake-ups and polls off: one backlog of 2,500
    second._poller.cancel()
    await asyncio.gather(*(first.create(f"/k/{i:04}", b"v") for i in range(2500)))
    second._catch_up()  # reads one chunk, then the rest a chunk per turn of the loop
    events = await _take(watch, 2500)
    assert [e.revision for e in events] == list(range(start + 1, start + 2501))
