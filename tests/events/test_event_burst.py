"""Issue 16: the scheduler's Scheduled events are not dropped where Kubernetes would keep them.

client-go's events.k8s.io broadcaster writes each event in a goroutine of its own (``recordToSink``)
and drops only when its 1,000-event channel is full. Ours wrote one event at a time, and the
scheduler waited for each write before taking the next, so at scale (hundreds of pods scheduled a
second, writes taking tens of ms on a busy server) its buffer filled and Scheduled events were lost.
Here the writes go to a real server through a client that adds 50 ms to each event write (a busy
server's latency), while events arrive at 500 a second.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pilothouse.client.events import SeriesRecorder
from pilothouse.client.rest import APIClient, resource

EVENTS_V1 = resource("events.k8s.io", "v1", "events")
LATENCY = 0.05


class SlowWrites:
    """A real client whose event creates take ``LATENCY`` longer: a loaded server's answer time."""

    def __init__(self, client: APIClient) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def create(self, *args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(LATENCY)
        return await self._client.create(*args, **kwargs)


def _pod(i: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"burst-{i}", "namespace": "default", "uid": f"uid-{i}"}}


async def test_a_burst_of_scheduled_events_is_written_whole(server: Any) -> None:
    count = 1500
    async with APIClient(server.url) as client:
        recorder = SeriesRecorder(SlowWrites(client), "default-scheduler")  # type: ignore[arg-type]
        for i in range(count):
            recorder.event(_pod(i), "Normal", "Scheduled", f"Successfully assigned default/burst-{i} to n1",
                           action="Binding")
            if i % 5 == 4:
                await asyncio.sleep(0.01)  # 500 a second, as a scheduler at scale
        await recorder.flush(timeout=60)
        await recorder.close()
        written = (await client.list(EVENTS_V1, "default"))["items"]
    # one writer at 20 writes a second fell 1,000 behind within 3 s and dropped the rest
    assert len(written) == count
