"""The sync loop the proxy and the NetworkPolicy controller share (components/syncloop.py), on its
own: a loop with no informers (they are all "synced" at once) whose sync the test scripts."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from typing import Any

from pilothouse.components.syncloop import LoopStats, SyncLoop


class Scripted(SyncLoop):
    what = "scripted"

    def __init__(self, failures: int = 0, **timing: Any) -> None:
        super().__init__(None, logging.getLogger("test.syncloop"), **timing)  # type: ignore[arg-type]
        self._stats = LoopStats()
        self.failures_left = failures
        self.dirty = False
        self.calls: list[tuple[str, float]] = []

    @property
    def stats(self) -> LoopStats:
        return self._stats

    @property
    def pending(self) -> bool:
        return self.dirty

    def mark_all(self) -> None:
        self.calls.append(("mark_all", time.monotonic()))
        self.dirty = True

    def forget_applied(self) -> None:
        self.calls.append(("forget", time.monotonic()))

    def change(self) -> None:
        self.dirty = True
        self.wake()

    async def sync(self) -> None:
        self.calls.append(("sync", time.monotonic()))
        if self.failures_left:
            self.failures_left -= 1
            raise OSError("nft refused")
        self.dirty = False
        self.stats.record(time.perf_counter(), 0)
        self.synced.set()

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


async def until(condition: Any, timeout: float = 5.0) -> None:
    """Poll (the machine may be loaded: no fixed sleeps)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_a_failed_sync_is_retried_whole_and_marks_the_loop_unhealthy() -> None:
    loop = Scripted(failures=1)
    await loop.start()
    try:
        await until(lambda: loop.stats.failures == 1)
        assert not loop.healthy and not loop.synced.is_set()
        await asyncio.wait_for(loop.synced.wait(), 3)  # after the first backoff (0.5 s)
        assert loop.healthy
        assert loop.names()[:4] == ["mark_all", "sync", "forget", "sync"]
    finally:
        await loop.stop()


async def test_min_sync_period_spaces_syncs() -> None:
    loop = Scripted(min_sync_period=0.4)
    await loop.start()
    try:
        await asyncio.wait_for(loop.synced.wait(), 3)
        for _ in range(3):
            loop.change()
            await loop.wait_applied(time.monotonic(), timeout=3)
        syncs = [at for name, at in loop.calls if name == "sync"]
        assert len(syncs) == 4
        assert all(later - earlier >= 0.39 for earlier, later in itertools.pairwise(syncs)), syncs
    finally:
        await loop.stop()


async def test_full_resync_every_period_without_changes() -> None:
    loop = Scripted(full_sync_period=0.3)
    await loop.start()
    try:
        started = time.monotonic()
        await until(lambda: loop.stats.full_syncs >= 2)
        assert time.monotonic() - started >= 0.55  # not sooner than the period allows
        # each full resync forgets the kernel's state and marks everything before it syncs
        first = loop.names().index("forget")
        assert loop.names()[first:first + 3] == ["forget", "mark_all", "sync"]
        assert loop.stats.syncs == 1 + loop.stats.full_syncs
    finally:
        await loop.stop()
