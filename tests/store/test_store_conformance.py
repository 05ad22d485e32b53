"""Backend-agnostic conformance suite for the Store protocol (pilothouse/store/interface.py).

Written once against the protocol and run for every backend in ``conftest.BACKENDS``; modelled on
Kubernetes' k8s.io/apiserver/pkg/storage/testing suite (create/get, guaranteed update, delete
preconditions, list paging at a revision, watch from zero / non-zero, compaction, restart).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, Protocol

import pytest

from pilothouse.store.interface import (
    CompactedError,
    ConflictError,
    EventType,
    KeyExistsError,
    KeyNotFoundError,
    KeyValue,
    Store,
    StoreError,
    WatchEvent,
)

P = "/registry/pods/default/"


class Backend(Protocol):
    """What the ``backend`` fixture (conftest.py) provides for each store implementation."""

    name: str
    #: A watcher that does not read is ended after at most about this many pending events.
    watch_buffer: int

    async def open(self, **options: Any) -> Store:
        """A started store over this backend's data (a second call sees the same data)."""
        ...


async def next_event(w: AsyncIterator[WatchEvent], timeout: float = 5.0) -> WatchEvent:
    return await asyncio.wait_for(anext(w), timeout)


async def take(w: AsyncIterator[WatchEvent], n: int, timeout: float = 5.0) -> list[WatchEvent]:
    return [await next_event(w, timeout) for _ in range(n)]


async def assert_quiet(w: AsyncIterator[WatchEvent], wait: float = 0.1) -> None:
    """No event is pending on ``w``. Cancelling a pending anext is safe: it only awaits a wake-up."""
    task = asyncio.ensure_future(anext(w))
    done, _ = await asyncio.wait({task}, timeout=wait)
    if done:
        raise AssertionError(f"unexpected event: {task.result()}")
    task.cancel()


async def seeded(store: Store) -> int:
    """The current revision, made non-zero first: ``watch(prefix, 0)`` means "current state, then
    changes" (Kubernetes' watch-from-zero), so tests that mean "changes after now" need now > 0."""
    if await store.current_revision() == 0:
        await store.create("/seed", b"")
    return await store.current_revision()


def sig(ev: WatchEvent) -> tuple[str, str, int, bytes]:
    return (ev.type.value, ev.kv.key, ev.revision, ev.kv.value)


# --- create / get / update / delete --------------------------------------------------------------

async def test_create_and_get(store: Store) -> None:
    assert await store.current_revision() == 0
    kv = await store.create(P + "a", b"1")
    assert kv == KeyValue(P + "a", b"1", kv.mod_revision, kv.mod_revision)
    assert kv.mod_revision == await store.current_revision() > 0
    assert await store.get(P + "a") == kv
    assert await store.get(P + "missing") is None
    assert await store.get(P) is None  # a prefix is not a key


async def test_create_existing_fails(store: Store) -> None:
    kv = await store.create(P + "a", b"1")
    with pytest.raises(KeyExistsError) as info:
        await store.create(P + "a", b"2")
    assert info.value.key == P + "a"
    assert (await store.get(P + "a")) == kv


async def test_update_with_current_and_stale_revision(store: Store) -> None:
    v1 = await store.create(P + "a", b"1")
    v2 = await store.update(P + "a", b"2", expected_mod_revision=v1.mod_revision)
    assert v2.value == b"2"
    assert v2.create_revision == v1.create_revision
    assert v2.mod_revision > v1.mod_revision
    with pytest.raises(ConflictError) as info:
        await store.update(P + "a", b"3", expected_mod_revision=v1.mod_revision)
    assert info.value.revision == v2.mod_revision  # carries the current revision
    assert await store.get(P + "a") == v2


async def test_unconditional_update(store: Store) -> None:
    v1 = await store.create(P + "a", b"1")
    await store.update(P + "a", b"2", expected_mod_revision=v1.mod_revision)
    v3 = await store.update(P + "a", b"3", expected_mod_revision=0)
    assert v3.value == b"3" and v3.create_revision == v1.create_revision


async def test_update_missing_fails(store: Store) -> None:
    with pytest.raises(KeyNotFoundError):
        await store.update(P + "nope", b"x", expected_mod_revision=0)
    with pytest.raises(KeyNotFoundError):
        await store.update(P + "nope", b"x", expected_mod_revision=7)


async def test_delete_unconditional(store: Store) -> None:
    v1 = await store.create(P + "a", b"1")
    deleted = await store.delete(P + "a")
    assert deleted.value == b"1"
    assert deleted.create_revision == v1.create_revision
    assert deleted.mod_revision == await store.current_revision() > v1.mod_revision
    assert await store.get(P + "a") is None
    with pytest.raises(KeyNotFoundError):
        await store.delete(P + "a")


async def test_delete_with_precondition(store: Store) -> None:
    v1 = await store.create(P + "a", b"1")
    v2 = await store.update(P + "a", b"2", expected_mod_revision=0)
    with pytest.raises(ConflictError) as info:
        await store.delete(P + "a", expected_mod_revision=v1.mod_revision)
    assert info.value.revision == v2.mod_revision
    assert await store.get(P + "a") == v2
    deleted = await store.delete(P + "a", expected_mod_revision=v2.mod_revision)
    assert deleted.value == b"2"
    assert await store.get(P + "a") is None


async def test_recreate_after_delete_starts_new_lifetime(store: Store) -> None:
    await store.create(P + "a", b"1")
    await store.delete(P + "a")
    again = await store.create(P + "a", b"2")
    assert again.create_revision == again.mod_revision == await store.current_revision()


async def test_revision_is_global_and_monotonic(store: Store) -> None:
    seen = [await store.current_revision()]
    a = await store.create(P + "a", b"1")
    seen.append(a.mod_revision)
    b = await store.create("/registry/services/default/b", b"1")  # another prefix, same sequence
    seen.append(b.mod_revision)
    seen.append((await store.update(P + "a", b"2", expected_mod_revision=0)).mod_revision)
    seen.append((await store.delete(P + "a")).mod_revision)
    assert seen == sorted(set(seen))
    assert await store.current_revision() == seen[-1]
    # A failed write does not consume a revision.
    with pytest.raises(KeyExistsError):
        await store.create("/registry/services/default/b", b"x")
    with pytest.raises(ConflictError):
        await store.update("/registry/services/default/b", b"x", expected_mod_revision=1_000_000)
    assert await store.current_revision() == seen[-1]


async def test_values_are_opaque_bytes(store: Store) -> None:
    blob = bytes(range(256)) * 8 + b"\x00tail"
    await store.create(P + "bin", blob)
    got = await store.get(P + "bin")
    assert got is not None and got.value == blob
    assert await store.get(P + "empty") is None
    await store.create(P + "empty", b"")
    got = await store.get(P + "empty")
    assert got is not None and got.value == b""


# --- list / count --------------------------------------------------------------------------------

async def test_list_prefix_isolation_and_count(store: Store) -> None:
    for key in ["/a/1", "/a/2", "/a/sub/3", "/ab/1", "/a", "/b/1", "/a0"]:
        await store.create(key, key.encode())
    res = await store.list("/a/")
    assert [kv.key for kv in res.items] == ["/a/1", "/a/2", "/a/sub/3"]
    assert res.revision == await store.current_revision()
    assert not res.more
    assert [kv.key for kv in (await store.list("/ab/")).items] == ["/ab/1"]
    assert await store.count("/a/") == 3
    assert await store.count("/ab/") == 1
    assert await store.count("/nothing/") == 0
    assert (await store.list("/nothing/")).items == []


async def test_list_limit_and_start_after_paging(store: Store) -> None:
    keys = [f"{P}{i:02d}" for i in range(10)]
    for key in reversed(keys):
        await store.create(key, b"v")
    await store.create("/registry/pods/defaultx/zz", b"outside")
    pages: list[list[str]] = []
    after = ""
    while True:
        res = await store.list(P, limit=3, start_after=after)
        pages.append([kv.key for kv in res.items])
        if not res.more:
            break
        after = res.items[-1].key
    assert pages == [keys[0:3], keys[3:6], keys[6:9], keys[9:10]]
    exact = await store.list(P, limit=10)
    assert len(exact.items) == 10 and not exact.more
    assert [kv.key for kv in (await store.list(P, start_after=keys[7])).items] == keys[8:]


async def test_list_at_past_revision_gives_consistent_pages(store: Store) -> None:
    keys = [f"{P}{i:02d}" for i in range(9)]
    original = {k: await store.create(k, b"v1-" + k.encode()) for k in keys}
    first = await store.list(P, limit=3)
    rev = first.revision
    # Writes continue between pages: update, delete, create, on later pages.
    await store.update(keys[4], b"v2", expected_mod_revision=0)
    await store.delete(keys[7])
    await store.create(P + "05a", b"new")
    await store.delete(keys[0])
    await store.create(keys[0], b"recreated")
    items = list(first.items)
    after = first.items[-1].key
    while True:
        res = await store.list(P, limit=3, start_after=after, revision=rev)
        assert res.revision == rev
        items.extend(res.items)
        if not res.more:
            break
        after = res.items[-1].key
    assert items == [original[k] for k in keys]
    whole = await store.list(P, revision=rev)
    assert whole.items == items
    # And the current state reflects the writes.
    now = await store.list(P)
    assert [kv.key for kv in now.items] == [*keys[:6], P + "05a", keys[6], keys[8]]


async def test_list_at_intermediate_revisions(store: Store) -> None:
    a1 = await store.create(P + "a", b"1")
    a2 = await store.update(P + "a", b"2", expected_mod_revision=0)
    b1 = await store.create(P + "b", b"1")
    await store.delete(P + "a")
    await store.update(P + "b", b"2", expected_mod_revision=0)
    assert (await store.list(P, revision=a1.mod_revision)).items == [a1]
    assert (await store.list(P, revision=a2.mod_revision)).items == [a2]
    assert (await store.list(P, revision=b1.mod_revision)).items == [a2, b1]
    assert (await store.list(P, revision=b1.mod_revision + 1)).items == [b1]


async def test_list_at_compacted_revision_fails(store: Store) -> None:
    for i in range(5):
        await store.create(f"{P}{i}", b"v")
    early = 2
    mid = await store.current_revision()
    await store.update(f"{P}0", b"v2", expected_mod_revision=0)
    await store.compact(mid)
    assert await store.compacted_revision() == mid
    with pytest.raises(CompactedError) as info:
        await store.list(P, revision=early)
    assert info.value.revision == mid
    # The compaction point itself and the current state are still readable.
    assert len((await store.list(P, revision=mid)).items) == 5
    assert (await store.list(P)).items[0].value == b"v2"
    assert await store.get(f"{P}0") is not None


async def test_list_at_future_revision_fails(store: Store) -> None:
    await store.create(P + "a", b"1")
    with pytest.raises(StoreError):
        await store.list(P, revision=await store.current_revision() + 100)


# --- watch ---------------------------------------------------------------------------------------

async def test_watch_from_zero_sends_current_state_then_changes(store: Store) -> None:
    await store.create(P + "a", b"1")
    await store.create(P + "b", b"1")
    await store.create("/registry/pods/other/c", b"1")
    w = store.watch(P, 0)
    initial = await take(w, 2)
    assert [(e.type, e.kv.key, e.prev) for e in initial] == [
        (EventType.PUT, P + "a", None), (EventType.PUT, P + "b", None)]
    assert all(e.is_create for e in initial)
    b2 = await store.update(P + "b", b"2", expected_mod_revision=0)
    ev = await next_event(w)
    assert ev.kv == b2 and ev.prev is not None and ev.prev.value == b"1"
    await assert_quiet(w)


async def test_watch_from_revision_is_strictly_newer(store: Store) -> None:
    a = await store.create(P + "a", b"1")
    b = await store.create(P + "b", b"1")
    c = await store.create(P + "c", b"1")
    w = store.watch(P, a.mod_revision)
    assert [e.kv for e in await take(w, 2)] == [b, c]
    await assert_quiet(w)
    d = await store.create(P + "d", b"1")
    assert (await next_event(w)).kv == d
    w2 = store.watch(P, d.mod_revision)
    await assert_quiet(w2)


async def test_watch_sees_a_write_acknowledged_before_it_started(store: Store) -> None:
    before = await seeded(store)
    kv = await store.create(P + "a", b"1")
    w = store.watch(P, before)
    assert (await next_event(w)).kv == kv


async def test_watch_replays_history_then_live_in_order(store: Store) -> None:
    start = await seeded(store)
    for i in range(40):  # longer than any in-memory ring used by the fixtures
        key = f"{P}{i % 7}"
        if await store.get(key) is None:
            await store.create(key, f"{i}".encode())
        elif i % 5 == 0:
            await store.delete(key)
        else:
            await store.update(key, f"{i}".encode(), expected_mod_revision=0)
        await store.create(f"/registry/other/{i}", b"noise")
    w = store.watch(P, start)

    async def more_writes() -> None:
        for i in range(20):
            await store.create(f"{P}live-{i:02d}", b"live")

    writer = asyncio.ensure_future(more_writes())
    events = await take(w, 60)
    await writer
    revs = [e.revision for e in events]
    assert revs == sorted(set(revs))
    assert all(e.kv.key.startswith(P) for e in events)
    assert [e.kv.key for e in events[40:]] == [f"{P}live-{i:02d}" for i in range(20)]
    await assert_quiet(w)


async def test_watch_delete_event_carries_prev_value_and_delete_revision(store: Store) -> None:
    kv = await store.create(P + "a", b"last")
    w = store.watch(P, kv.mod_revision)
    deleted = await store.delete(P + "a")
    ev = await next_event(w)
    assert ev.type is EventType.DELETE
    assert ev.revision == deleted.mod_revision == await store.current_revision()
    assert ev.kv.value == b"last" and ev.kv.create_revision == kv.create_revision
    assert ev.prev == kv
    assert not ev.is_create


async def test_watch_update_carries_prev(store: Store) -> None:
    start = await seeded(store)
    v1 = await store.create(P + "a", b"1")
    v2 = await store.update(P + "a", b"2", expected_mod_revision=v1.mod_revision)
    w = store.watch(P, start)
    create, update = await take(w, 2)
    assert create.is_create and create.prev is None and create.kv == v1
    assert update.type is EventType.PUT and not update.is_create
    assert update.kv == v2 and update.prev == v1


async def test_watch_prefix_isolation(store: Store) -> None:
    w = store.watch("/a/", await seeded(store))
    await store.create("/ab/1", b"x")
    await store.create("/a", b"x")
    kv = await store.create("/a/1", b"x")
    assert (await next_event(w)).kv == kv
    await assert_quiet(w)


async def test_watch_at_compacted_revision_fails(store: Store) -> None:
    for i in range(5):
        await store.create(f"{P}{i}", b"v")
    compact_at = await store.current_revision() - 1
    await store.compact(compact_at)
    with pytest.raises(CompactedError) as info:
        await next_event(store.watch(P, 1))
    assert info.value.revision >= compact_at
    ok = store.watch(P, compact_at)  # everything after the compaction point is still there
    assert (await next_event(ok)).kv.key == f"{P}4"


async def test_several_watchers_get_identical_streams(store: Store) -> None:
    start = await seeded(store)
    watchers = [store.watch(P, start) for _ in range(4)]

    async def write(i: int) -> None:
        kv = await store.create(f"{P}{i}", b"1")
        await store.update(kv.key, b"2", expected_mod_revision=kv.mod_revision)
        if i % 3 == 0:
            await store.delete(kv.key)

    # Stay below the fixtures' watch buffer: these watchers only read after the writes.
    await asyncio.gather(*(write(i) for i in range(20)))
    total = 20 * 2 + 7
    streams = [[sig(e) for e in await take(w, total)] for w in watchers]
    assert all(s == streams[0] for s in streams)
    revs = [r for _, _, r, _ in streams[0]]
    assert revs == sorted(set(revs))
    late = store.watch(P, start)  # a watcher started afterwards replays the same stream
    assert [sig(e) for e in await take(late, total)] == streams[0]


async def test_slow_watcher_does_not_block_writers_and_is_ended(backend: Backend) -> None:
    store = await backend.open()
    start = await seeded(store)
    slow = store.watch(P, start)
    fast = store.watch(P, start)
    await assert_quiet(slow, 0.01)  # started, then never read while writes happen
    n = backend.watch_buffer * 4

    async def writes() -> None:
        for i in range(n):
            await store.create(f"{P}{i:04d}", b"x" * 100)

    async def read_fast() -> list[WatchEvent]:
        return await take(fast, n)

    _, fast_events = await asyncio.wait_for(asyncio.gather(writes(), read_fast()), 30)
    assert [e.kv.key for e in fast_events] == [f"{P}{i:04d}" for i in range(n)]
    got = 0
    with pytest.raises(CompactedError):
        for _ in range(n):
            await next_event(slow)
            got += 1
    assert got < n
    await assert_quiet(fast)


async def test_closing_a_watch_ends_it(store: Store) -> None:
    w = store.watch(P, await seeded(store))
    aclose = getattr(w, "aclose")  # noqa: B009 - every backend's watch iterator can be closed
    await aclose()
    await store.create(P + "a", b"1")
    with pytest.raises(StopAsyncIteration):
        await next_event(w)


async def test_close_ends_all_watches(backend: Backend) -> None:
    store = await backend.open()
    w1 = store.watch(P, await seeded(store))
    w2 = store.watch(P, 0)
    pending = asyncio.ensure_future(anext(w1))
    await asyncio.sleep(0.01)
    await store.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(pending, 5)
    with pytest.raises(StopAsyncIteration):
        await next_event(w2)


# --- concurrency ---------------------------------------------------------------------------------

async def test_concurrent_creates_all_succeed_with_distinct_revisions(store: Store) -> None:
    start = await seeded(store)
    kvs = await asyncio.gather(*(store.create(f"{P}{i:03d}", str(i).encode()) for i in range(200)))
    revs = sorted(kv.mod_revision for kv in kvs)
    assert revs == list(range(start + 1, start + 201))
    assert await store.current_revision() == start + 200
    assert await store.count(P) == 200
    assert all(kv.value == str(i).encode() for i, kv in enumerate(kvs))


async def test_concurrent_compare_and_swap_has_one_winner(store: Store) -> None:
    v1 = await store.create(P + "a", b"0")
    results = await asyncio.gather(
        *(store.update(P + "a", str(i).encode(), expected_mod_revision=v1.mod_revision)
          for i in range(20)),
        return_exceptions=True,
    )
    winners = [r for r in results if isinstance(r, KeyValue)]
    assert len(winners) == 1
    assert all(isinstance(r, ConflictError) for r in results if r not in winners)
    assert await store.get(P + "a") == winners[0]


async def test_concurrent_creates_of_one_key_have_one_winner(store: Store) -> None:
    results = await asyncio.gather(*(store.create(P + "x", str(i).encode()) for i in range(10)),
                                   return_exceptions=True)
    assert sum(isinstance(r, KeyValue) for r in results) == 1
    assert sum(isinstance(r, KeyExistsError) for r in results) == 9


# --- compaction and restart ----------------------------------------------------------------------

async def test_compact_keeps_current_values(store: Store) -> None:
    assert await store.compacted_revision() == 0
    await store.create(P + "a", b"1")
    kv = await store.update(P + "a", b"2", expected_mod_revision=0)
    await store.create(P + "b", b"1")
    rev = await store.current_revision()
    await store.compact(rev)
    assert await store.compacted_revision() == rev
    assert await store.get(P + "a") == kv
    assert await store.count(P) == 2
    assert await store.current_revision() == rev
    nxt = await store.create(P + "c", b"1")
    assert nxt.mod_revision == rev + 1


async def test_restart_keeps_data_revisions_and_history(backend: Backend) -> None:
    store = await backend.open()
    a = await store.create(P + "a", b"1")
    await store.update(P + "a", b"2", expected_mod_revision=a.mod_revision)
    b = await store.create(P + "b", b"1")
    await store.delete(P + "b")
    rev = await store.current_revision()
    before = await store.list(P)
    await store.close()

    again = await backend.open()
    assert await again.current_revision() == rev
    assert (await again.list(P)).items == before.items
    c = await again.create(P + "c", b"1")
    assert c.mod_revision == rev + 1  # the sequence continues
    w = again.watch(P, a.mod_revision)  # resumes across the restart
    events = await take(w, 4)
    assert [(e.type, e.kv.key) for e in events] == [
        (EventType.PUT, P + "a"), (EventType.PUT, P + "b"), (EventType.DELETE, P + "b"),
        (EventType.PUT, P + "c")]
    assert events[0].prev == a and events[1].kv == b
    assert (await again.list(P, revision=b.mod_revision)).items[1] == b
