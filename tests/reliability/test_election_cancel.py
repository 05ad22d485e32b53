"""A cancelled LeaderElector always stops (issue 15: the leader election test hung in the whole suite).

The hang: a cancellation that reached the elector at the moment it acquired the lease was swallowed
(Python 3.11's ``asyncio.wait_for`` returns the inner result when the inner call finished as the
outer task was cancelled, and the elector suppressed ``CancelledError`` while awaiting its helper
tasks), so the elector went on leading and ``await task`` never returned. Under a loaded machine (the
whole suite) that moment came often enough to hang ``test_one_of_two_leads...`` and
``test_racing_candidates...``. The test cancels at exactly that moment, every time.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest

from pilothouse.client.leaderelection import LEASES, LeaderElector
from pilothouse.client.rest import APIClient
from tests.conftest import ServerProcess


async def test_cancel_at_the_moment_of_acquiring_stops_and_releases(server: ServerProcess) -> None:
    name = f"le-{uuid.uuid4().hex[:8]}"
    async with APIClient(server.url) as client:
        elector = LeaderElector(client, name=name, identity="host_a", lease_duration=2.0, renew_deadline=1.2,
                                retry_period=0.3)
        led = asyncio.Event()

        async def lead() -> None:
            led.set()
            await asyncio.Event().wait()

        def new_leader(identity: str) -> None:
            # Called as the acquiring write succeeds, inside the attempt: cancel right then.
            if identity == "host_a":
                task.cancel()

        task = asyncio.create_task(elector.run(lead, on_new_leader=new_leader))
        try:
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(task), 10)
        finally:
            task.cancel()  # it leads on without the fix: do not leave it running
            await asyncio.wait({task})
        assert task.cancelled()
        assert not led.is_set()  # cancelled before it started leading
        spec = (await client.get(LEASES, name, "kube-system"))["spec"]
        assert spec.get("holderIdentity", "") == ""  # and the lease it had just taken was released
