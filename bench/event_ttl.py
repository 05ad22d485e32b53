"""What a TTL costs the SQLite store, and how fast its sweeper deletes expired keys (issue 15, soak).

In one invocation: N Event-sized creates with a TTL and N without (rounds alternating which goes first, 200 writes
in flight, so both see the same machine), then one sweep of the N expired keys (a watcher reading
every DELETED). Prints writes per second each way, their ratio, and the sweep's keys per second.

    .venv/bin/python bench/event_ttl.py --events 20000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

from pilothouse.store.sqlite import SQLiteStore

PREFIX = "/registry/core/events/ns/"
VALUE = b'{"apiVersion":"v1","kind":"Event","message":"' + b"x" * 800 + b'"}'  # ~0.9 KB, as in the soak
IN_FLIGHT = 200


async def _create(store: SQLiteStore, names: list[str], ttl: int) -> float:
    started = time.perf_counter()
    for first in range(0, len(names), IN_FLIGHT):
        await asyncio.gather(*(store.create(PREFIX + name, VALUE, ttl=ttl) for name in names[first:first + IN_FLIGHT]))
    return time.perf_counter() - started


async def run(events: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-event-ttl-") as directory:
        store = SQLiteStore(Path(directory) / "state.db", compact_interval=None, sweep_interval=None)
        await store.start()
        try:
            timed = {"ttl": 0.0, "none": 0.0}
            per_round = events // rounds
            for r in range(rounds):
                # Alternate which goes first: the table grows, and later writes cost more.
                for kind in ("ttl", "none") if r % 2 == 0 else ("none", "ttl"):
                    names = [f"{kind}-{r}-{i}" for i in range(per_round)]
                    timed[kind] += await _create(store, names, 3600 if kind == "ttl" else 0)
            total = per_round * rounds
            watch = store.watch(PREFIX, await store.current_revision())
            seen = 0

            async def read() -> None:
                nonlocal seen
                async for _ in watch:
                    seen += 1
                    if seen == total:
                        return

            reader = asyncio.create_task(read())
            started = time.perf_counter()
            swept = await store.sweep_expired(now=time.time() + 3601)
            await reader
            sweep = time.perf_counter() - started
        finally:
            await store.close()
    print(f"load: {os.getloadavg()[0]:.1f}  keys each way: {total}")
    print(f"create with ttl:    {total / timed['ttl']:8.0f}/s")
    print(f"create without ttl: {total / timed['none']:8.0f}/s"
          f"   (ratio with/without {timed['none'] / timed['ttl']:.2f})")
    print(f"sweep: {swept} expired keys deleted and seen by a watcher in {sweep:.2f} s ({swept / sweep:.0f}/s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20000, help="keys written each way")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds (alternating which goes first)")
    args = parser.parse_args()
    asyncio.run(run(args.events, args.rounds))


if __name__ == "__main__":
    main()
