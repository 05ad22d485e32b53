"""A diagnostic for where the server's memory goes: ``tracemalloc`` top allocations on SIGUSR2.

Off unless the environment asks: ``PILOTHOUSE_TRACEMALLOC=<file>`` starts ``tracemalloc`` (10 frames
a trace) before the server serves, and each SIGUSR2 appends the 25 largest allocation sites, grouped
by traceback, to ``<file>`` with the process's RSS. Tracing costs CPU and memory (roughly doubles
both), so it is for a reproduction run, never production; it found the issue-16 growth at 5,000
simulated nodes. ``kill -USR2 <server pid>`` takes a snapshot; nothing else changes.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import tracemalloc

__all__ = ["ENV", "install"]

ENV = "PILOTHOUSE_TRACEMALLOC"
_FRAMES = 10
_TOP = 25


def install() -> None:
    """Start tracing and register the SIGUSR2 dump when :data:`ENV` names a file; else nothing."""
    path = os.environ.get(ENV)
    if not path:
        return
    tracemalloc.start(_FRAMES)
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR2, _dump, path)


def _rss() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _dump(path: str) -> None:
    snapshot = tracemalloc.take_snapshot().filter_traces(
        (tracemalloc.Filter(False, tracemalloc.__file__),))
    stats = snapshot.statistics("traceback")
    total = sum(stat.size for stat in stats)
    with open(path, "a") as out:
        out.write(f"=== {time.strftime('%H:%M:%S')} rss {_rss() / 2**20:.0f} MB, "
                  f"traced {total / 2**20:.0f} MB in {len(stats)} sites\n")
        for stat in stats[:_TOP]:
            out.write(f"--- {stat.size / 2**20:.1f} MB in {stat.count} blocks\n")
            out.writelines(f"    {line}\n" for line in stat.traceback.format(most_recent_first=True))
