"""Issue 15 (soak): what the events.k8s.io recorder keeps per event, and for how long.

The scheduler records one ``Scheduled`` event per pod; each is remembered in case it repeats (a
series) and forgotten six minutes later. In the 26-minute soak (20 pods a second) this cache was the
scheduler's RSS growth: upstream's sweep runs every six minutes, so an event stayed up to twelve,
and each took about 2 KB as nested dicts and tuples. Both are checked here against a real server,
with the events written as the scheduler writes them.
"""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
import uuid
from typing import Any

from pilothouse.client.events import SERIES_FINISH, SeriesRecorder
from pilothouse.client.rest import APIClient, resource

EVENTS_V1 = resource("events.k8s.io", "v1", "events")


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def _pod(i: int) -> dict[str, Any]:
    """A pod as the scheduler's informer holds it: what the event's ``regarding`` is made of."""
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"soak-{i}", "namespace": "default", "uid": str(uuid.uuid4()),
                         "resourceVersion": str(100_000 + i)}}


def _scheduled(recorder: SeriesRecorder, first: int, count: int) -> None:
    for i in range(first, first + count):
        recorder.event(_pod(i), "Normal", "Scheduled", f"Successfully assigned default/soak-{i} to soak-{i % 20}",
                       action="Binding")


async def test_single_events_are_forgotten_at_the_first_sweep_after_six_minutes(server: Any) -> None:
    async with APIClient(server.url) as client:
        clock = Clock()
        recorder = SeriesRecorder(client, "default-scheduler", clock=clock, sweep_interval=0.05)
        _scheduled(recorder, 0, 100)
        await recorder.flush()
        assert len(recorder) == 100
        clock.now += SERIES_FINISH - 1  # not yet: a repeat within six minutes still makes a series
        await asyncio.sleep(0.3)
        assert len(recorder) == 100
        _scheduled(recorder, 100, 100)
        clock.now += 2  # the first hundred are six minutes old, the second not
        for _ in range(100):
            if len(recorder) == 100:
                break
            await asyncio.sleep(0.05)
        # before: the sweep ran every six (real) minutes, so each event stayed up to twelve
        assert len(recorder) == 100
        await recorder.close()


async def test_a_remembered_event_costs_under_1300_bytes(server: Any) -> None:
    count = 2000
    async with APIClient(server.url) as client:
        recorder = SeriesRecorder(client, "default-scheduler", clock=Clock())
        _scheduled(recorder, 0, 50)  # connections, writer tasks: not what is measured
        await recorder.flush()
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for first in range(50, 50 + count, 500):  # the sink's queue holds 1,000
                _scheduled(recorder, first, 500)
                await recorder.flush()
            gc.collect()
            per_event = (tracemalloc.get_traced_memory()[0] - before) / count
        finally:
            tracemalloc.stop()
        assert len(recorder) == count + 50
        written = (await client.list(EVENTS_V1, "default"))["items"]
        await recorder.close()
    assert len(written) >= count + 50  # every event was written as well
    # before: 2,161 bytes (the event as nested dicts, a key of nested tuples); now about 1,000
    print(f"{per_event:.0f} bytes per remembered event")
    assert per_event < 1300, f"{per_event:.0f} bytes per remembered event"
