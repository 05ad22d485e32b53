"""Crash durability of the SQLite store: SIGKILL a writer mid-burst, reopen, check every ack survived.

The child process runs concurrent creates (so group commit batches them) and prints each key as soon
as its write returns. Whatever it printed was acknowledged, hence must be on disk after the kill.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from pilothouse.store.interface import EventType, WatchEvent
from pilothouse.store.sqlite import SQLiteStore

REPO = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from pilothouse.store.sqlite import SQLiteStore

    async def main(path):
        store = SQLiteStore(path, compact_interval=None)
        await store.start()

        async def worker(w):
            for i in range(100000):
                key = f"/crash/{w:02d}/{i:06d}"
                kv = await store.create(key, f"value-{w}-{i}".encode() * 20)
                sys.stdout.write(f"{key} {kv.mod_revision}\\n")
                sys.stdout.flush()
                if i % 10 == 9:  # also updates, so the replay has prev values to check
                    await store.update(key, b"updated", expected_mod_revision=kv.mod_revision)
                    sys.stdout.write(f"{key} updated\\n")
                    sys.stdout.flush()

        await asyncio.gather(*(worker(w) for w in range(16)))

    asyncio.run(main(sys.argv[1]))
    """
)


def expected_value(key: str) -> bytes:
    _, _, w, i = key.split("/")
    return f"value-{int(w)}-{int(i)}".encode() * 20


async def test_acknowledged_writes_survive_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    acked: dict[str, bytes] = {}
    assert proc.stdout is not None
    deadline = time.monotonic() + 20
    try:
        while len(acked) < 400 and time.monotonic() < deadline:
            line = proc.stdout.readline().decode()
            if not line:
                break
            key, what = line.split()
            acked[key] = b"updated" if what == "updated" else expected_value(key)
        os.kill(proc.pid, signal.SIGKILL)  # mid-burst: workers are still writing
    finally:
        proc.kill()
        rest, err = proc.communicate(timeout=10)
    assert len(acked) >= 400, f"child acknowledged only {len(acked)} writes: {err.decode()[-2000:]}"
    for line in rest.decode().splitlines():  # acks printed before the kill but not read yet
        if line.count(" ") == 1:
            key, what = line.split()
            acked[key] = b"updated" if what == "updated" else expected_value(key)
    assert proc.returncode == -signal.SIGKILL

    store = SQLiteStore(path, compact_interval=None, ring_size=16)
    await store.start()
    try:
        for key, value in acked.items():
            kv = await store.get(key)
            assert kv is not None, f"acknowledged {key} lost"
            # An update committed but killed before its ack is fine; anything else must match.
            assert kv.value in (value, b"updated"), key
        current = await store.current_revision()
        assert len(acked) <= current
        listed = await store.list("/crash/")
        assert len(listed.items) >= len({k for k in acked})

        # Replay from an early revision: strictly increasing, no gaps, no duplicates.
        events: list[WatchEvent] = []
        w = store.watch("/crash/", 1)
        while len(events) < current - 1:
            events.append(await asyncio.wait_for(anext(w), 5))
        revs = [e.revision for e in events]
        assert revs == list(range(2, current + 1))
        state: dict[str, bytes] = {}
        first = listed.items[0] if listed.items[0].create_revision == 1 else None
        if first is not None:
            state[first.key] = (await store.list("/crash/", revision=1)).items[0].value
        for e in events:
            assert e.type is EventType.PUT
            if e.prev is not None:
                assert state[e.kv.key] == e.prev.value
            state[e.kv.key] = e.kv.value
        assert state == {kv.key: kv.value for kv in listed.items}

        # And the store keeps going from there.
        nxt = await store.create("/crash/after", b"x")
        assert nxt.mod_revision == current + 1
    finally:
        await store.close()
