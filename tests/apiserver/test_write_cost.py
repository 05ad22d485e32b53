"""What a write costs the API server beyond its own steps (issue 16, helper ``writecost``): the work
counted, not timed.

- The SQLite writer thread is woken once per loop iteration's writes, not once per write: the
  writes submitted during one iteration reach it as one queue item, at the start of the next
  iteration (so a lone write waits one turn of the loop at most), in order, and a group still holds
  at most ``MAX_GROUP`` of them.
"""

from __future__ import annotations

import asyncio
import queue
import types
from pathlib import Path

import pytest

from pilothouse.store import _sqlite_writer
from pilothouse.store._sqlite_writer import Op, Writer
from pilothouse.store.interface import KeyValue, UnavailableError
from pilothouse.store.sqlite import SQLiteStore


class _CountingQueue(queue.SimpleQueue[object]):
    """The writer's queue, counting what is put in it: each put wakes the writer thread."""

    def __init__(self) -> None:
        super().__init__()
        self.puts = 0

    def put(self, item: object, block: bool = True, timeout: float | None = None) -> None:
        self.puts += 1
        super().put(item, block, timeout)


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_sqlite_writer, "queue", types.SimpleNamespace(SimpleQueue=_CountingQueue,
                                                                       Empty=queue.Empty))


def _writer(store: SQLiteStore) -> tuple[Writer, _CountingQueue]:
    writer = store._writer
    assert writer is not None and isinstance(writer._queue, _CountingQueue)
    return writer, writer._queue


def _op(key: str, value: bytes = b"v") -> Op:
    return Op("create", key, value, 0, asyncio.get_running_loop().create_future())


async def test_one_loop_iterations_writes_wake_the_writer_once(tmp_path: Path, counted: None) -> None:
    async with SQLiteStore(tmp_path / "s.db", compact_interval=None, sweep_interval=None) as store:
        writer, handed = _writer(store)
        before = await store.current_revision()
        # 50 requests' writes in one iteration (the tasks' first steps all run in the next one).
        kvs = await asyncio.gather(*(store.create(f"/k/{i:02}", b"v%d" % i) for i in range(50)))
        # Before: 50 puts, one per write, and as many wake-ups of the thread.
        assert handed.puts == 1
        assert writer.commits == 1 and writer.writes == 50
        # In the order submitted.
        assert [kv.mod_revision for kv in kvs] == list(range(before + 1, before + 51))


async def test_a_lone_write_reaches_the_writer_on_the_next_loop_turn(tmp_path: Path, counted: None) -> None:
    async with SQLiteStore(tmp_path / "s.db", compact_interval=None, sweep_interval=None) as store:
        writer, handed = _writer(store)
        op = _op("/k/lone")
        writer.submit(op)
        assert handed.puts == 0  # buffered for the rest of this iteration
        await asyncio.sleep(0)  # one turn of the loop
        assert handed.puts == 1
        kv = await op.future
        assert isinstance(kv, KeyValue) and kv.value == b"v"


async def test_stop_commits_what_was_submitted_before_it_and_refuses_the_rest(tmp_path: Path, counted: None) -> None:
    async with SQLiteStore(tmp_path / "s.db", compact_interval=None, sweep_interval=None) as store:
        writer, _ = _writer(store)
        accepted = [_op(f"/k/{i}") for i in range(3)]
        for op in accepted:
            writer.submit(op)
        await writer.stop()  # in the same iteration: the buffered ops go ahead of the stop marker
        assert [isinstance(await op.future, KeyValue) for op in accepted] == [True, True, True]
        late = _op("/k/late")
        writer.submit(late)
        with pytest.raises(UnavailableError):
            await late.future
    async with SQLiteStore(tmp_path / "s.db", compact_interval=None, sweep_interval=None) as reopened:
        assert [kv.key for kv in (await reopened.list("/k/")).items] == ["/k/0", "/k/1", "/k/2"]


async def test_a_group_holds_at_most_max_group_writes(tmp_path: Path, counted: None,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_sqlite_writer, "MAX_GROUP", 3)
    async with SQLiteStore(tmp_path / "s.db", compact_interval=None, sweep_interval=None) as store:
        writer, handed = _writer(store)
        before = await store.current_revision()
        kvs = await asyncio.gather(*(store.create(f"/k/{i}", b"v") for i in range(10)))
        assert handed.puts == 1  # one item of ten, committed as groups of 3, 3, 3 and 1
        assert writer.commits == 4 and writer.writes == 10
        assert [kv.mod_revision for kv in kvs] == list(range(before + 1, before + 11))

