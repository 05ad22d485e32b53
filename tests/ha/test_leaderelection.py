"""LeaderElector against a real API server (SQLite): acquire, renew, release, expiry, loss.

Each test uses its own lease name, so the server's embedded kube-scheduler/kube-controller-manager
leases do not interfere. Timings are short (lease 2 s) but keep client-go's constraints.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pilothouse.client import errors
from pilothouse.client.leaderelection import LEASES, LeaderElectionLost, LeaderElector
from pilothouse.client.rest import APIClient, resource
from tests.conftest import ServerProcess

EVENTS = resource("", "v1", "events")
MICRO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
LEASE, RENEW, RETRY = 2.0, 1.2, 0.3


@pytest.fixture
async def client(server: ServerProcess) -> AsyncIterator[APIClient]:
    async with APIClient(server.url) as c:
        yield c


class Candidate:
    """One elector with its own client, recording when it led and whether its work was cancelled."""

    def __init__(self, url: str, name: str, identity: str, **options: Any) -> None:
        self.client = APIClient(url)
        self.elector = LeaderElector(self.client, name=name, identity=identity, lease_duration=LEASE,
                                     renew_deadline=RENEW, retry_period=RETRY, **options)
        self.started = asyncio.Event()
        self.started_at = 0.0
        self.work_cancelled = False
        self.stopped_calls = 0
        self.task = asyncio.create_task(self.elector.run(self._lead, self._stopped))

    async def _lead(self) -> None:
        self.started_at = time.monotonic()
        self.started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.work_cancelled = True
            raise

    async def _stopped(self) -> None:
        self.stopped_calls += 1

    async def cancel(self) -> None:
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task
        await self.client.close()


def lease_name() -> str:
    return f"le-{uuid.uuid4().hex[:8]}"


async def get_spec(client: APIClient, name: str) -> dict[str, Any]:
    spec: dict[str, Any] = (await client.get(LEASES, name, "kube-system"))["spec"]
    return spec


async def test_one_of_two_leads_and_the_lease_records_it(server: ServerProcess, client: APIClient) -> None:
    name = lease_name()
    a = Candidate(server.url, name, "host_a")
    await asyncio.wait_for(a.started.wait(), 5)
    b = Candidate(server.url, name, "host_b")
    try:
        await asyncio.sleep(LEASE * 1.5)  # longer than a lease: b must still not lead while a renews
        assert a.elector.is_leader and not b.elector.is_leader
        assert not b.started.is_set()
        assert b.elector.leader == "host_a"
        spec = await get_spec(client, name)
        assert spec["holderIdentity"] == "host_a"
        assert spec["leaseDurationSeconds"] == 2
        assert spec["leaseTransitions"] == 0
        assert MICRO_TIME.match(spec["acquireTime"]) and MICRO_TIME.match(spec["renewTime"])
        assert spec["renewTime"] > spec["acquireTime"]  # renewed since acquired

        table = server.kubectl("get", "lease", name, "-n", "kube-system").stdout
        assert re.search(rf"^{name}\s+host_a\s", table, re.MULTILINE), table

        events = (await client.list(EVENTS, "kube-system"))["items"]
        became = [e for e in events if e["involvedObject"].get("name") == name and e["reason"] == "LeaderElection"]
        assert [e["message"] for e in became] == ["host_a became leader"]
        assert became[0]["involvedObject"]["kind"] == "Lease"
    finally:
        await b.cancel()
        await a.cancel()
    assert b.stopped_calls == 1 and not b.started.is_set()  # OnStoppedLeading runs even for a standby


async def test_cancelled_leader_releases_and_standby_takes_over_at_once(server: ServerProcess,
                                                                          client: APIClient) -> None:
    name = lease_name()
    a = Candidate(server.url, name, "host_a")
    await asyncio.wait_for(a.started.wait(), 5)
    b = Candidate(server.url, name, "host_b")
    await asyncio.sleep(RETRY * 2)
    cancelled_at = time.monotonic()
    await a.cancel()
    assert a.work_cancelled and a.stopped_calls == 1
    released = await get_spec(client, name)
    assert "holderIdentity" not in released or released["holderIdentity"] in ("", "host_b")
    try:
        await asyncio.wait_for(b.started.wait(), LEASE)
        # Released, not expired: the standby's next retry (<= retry period * (1 + jitter)) takes it.
        assert b.started_at - cancelled_at < RETRY * 2.2 + 0.5
        spec = await get_spec(client, name)
        assert spec["holderIdentity"] == "host_b"
        assert spec["leaseTransitions"] == 1
        assert spec["leaseDurationSeconds"] == 2
    finally:
        await b.cancel()
    final = await get_spec(client, name)
    assert final.get("holderIdentity", "") == "" and final["leaseDurationSeconds"] == 1


async def test_crashed_leader_is_replaced_only_after_the_lease_expires(server: ServerProcess) -> None:
    name = lease_name()
    a = Candidate(server.url, name, "host_a", release_on_cancel=False)  # a crash: no release
    await asyncio.wait_for(a.started.wait(), 5)
    b = Candidate(server.url, name, "host_b")
    await asyncio.sleep(RETRY * 2)
    crashed_at = time.monotonic()
    await a.cancel()
    try:
        await asyncio.wait_for(b.started.wait(), LEASE + RETRY * 2.2 + 1)
        waited = b.started_at - crashed_at
        # Not before the lease (as observed by b, at most one retry after a's last renewal) ran out.
        assert waited > LEASE - RETRY * 2.2 - 0.1, waited
    finally:
        await b.cancel()


async def test_leader_whose_lease_is_taken_stops_leading(server: ServerProcess, client: APIClient) -> None:
    name = lease_name()
    a = Candidate(server.url, name, "host_a")
    await asyncio.wait_for(a.started.wait(), 5)
    # Another writer takes the lease (say after a long pause of a): a's renewals now fail the
    # holder check, and after the renew deadline a must stop its work and report the loss.
    for _ in range(20):  # a renews concurrently: retry the compare-and-swap as any writer would
        lease = await client.get(LEASES, name, "kube-system")
        lease["spec"]["holderIdentity"] = "intruder"
        try:
            await client.update(LEASES, lease)
            break
        except errors.ConflictError:
            continue
    taken_at = time.monotonic()
    with pytest.raises(LeaderElectionLost):
        await asyncio.wait_for(a.task, RENEW + LEASE + 2)
    assert time.monotonic() - taken_at <= RENEW + RETRY + 1.0
    assert a.work_cancelled and a.stopped_calls == 1
    assert (await get_spec(client, name))["holderIdentity"] == "intruder"  # no release of a lease not held
    await a.client.close()


async def test_leader_cut_off_from_the_api_server_stops_within_the_renew_deadline(server: ServerProcess) -> None:
    name = lease_name()
    a = Candidate(server.url, name, "host_a")
    await asyncio.wait_for(a.started.wait(), 5)
    from tests.conftest import free_port

    a.client.server = f"http://127.0.0.1:{free_port()}"  # nothing listens: every renewal fails
    cut_at = time.monotonic()
    with pytest.raises(LeaderElectionLost):
        await asyncio.wait_for(a.task, RENEW + LEASE + 2)
    assert time.monotonic() - cut_at <= RENEW + RETRY + 1.0
    assert a.work_cancelled
    await a.client.close()


async def test_racing_candidates_never_both_lead(server: ServerProcess, client: APIClient) -> None:
    name = lease_name()
    candidates = [Candidate(server.url, name, f"host_{i}") for i in range(4)]
    try:
        await asyncio.sleep(LEASE)
        leading = [c for c in candidates if c.started.is_set()]
        assert len(leading) == 1
        assert (await get_spec(client, name))["holderIdentity"] == leading[0].elector.identity
        assert sum(c.elector.is_leader for c in candidates) == 1
    finally:
        for c in candidates:
            await c.cancel()


async def test_leading_coroutine_failure_propagates_and_releases(server: ServerProcess, client: APIClient) -> None:
    name = lease_name()

    async def crash() -> None:
        raise RuntimeError("boom")

    async with APIClient(server.url) as c:
        elector = LeaderElector(c, name=name, identity="host_a", lease_duration=LEASE, renew_deadline=RENEW,
                                retry_period=RETRY)
        with pytest.raises(RuntimeError, match="boom"):
            await asyncio.wait_for(elector.run(crash), 5)
    assert (await get_spec(client, name)).get("holderIdentity", "") == ""


def test_timing_constraints_are_validated() -> None:
    c = APIClient("http://127.0.0.1:1")
    with pytest.raises(ValueError, match="leaseDuration"):
        LeaderElector(c, name="x", lease_duration=10, renew_deadline=10, retry_period=2)
    with pytest.raises(ValueError, match="renewDeadline"):
        LeaderElector(c, name="x", lease_duration=15, renew_deadline=2, retry_period=2)
    elector = LeaderElector(c, name="kube-scheduler")
    assert re.match(r"^[^_]+_[0-9a-f-]{36}$", elector.identity)
    assert elector.namespace == "kube-system"


async def test_lease_is_only_written_with_the_read_resource_version(server: ServerProcess,
                                                                    client: APIClient) -> None:
    """The API rejects a stale update: the compare-and-swap the election relies on."""
    name = lease_name()
    a = Candidate(server.url, name, "host_a")
    await asyncio.wait_for(a.started.wait(), 5)
    stale = await client.get(LEASES, name, "kube-system")
    await asyncio.sleep(RETRY * 2.5)  # a renews in between
    stale["spec"]["holderIdentity"] = "thief"
    with pytest.raises(errors.ConflictError):
        await client.update(LEASES, stale)
    await a.cancel()


async def test_leader_renews_with_one_write_of_its_last_copy(server: ServerProcess, client: APIClient) -> None:
    """client-go's optimistic fast path: a valid leader renews with one update of the Lease it last
    wrote, no read first, so a renewal on a loaded server is one round trip, not two."""
    name = lease_name()
    a = Candidate(server.url, name, "host_a")
    try:
        await asyncio.wait_for(a.started.wait(), 5)
        reads: list[str] = []
        read = a.client.get

        async def counted_get(resource_: Any, name_: str, *args: Any, **kwargs: Any) -> Any:
            reads.append(name_)
            return await read(resource_, name_, *args, **kwargs)

        a.client.get = counted_get  # type: ignore[method-assign]
        first = (await get_spec(client, name))["renewTime"]
        await asyncio.sleep(RETRY * 5)
        assert (await get_spec(client, name))["renewTime"] != first, "the leader stopped renewing"
        assert reads == [], f"renewals read the lease first: {len(reads)} reads"
        assert a.elector.is_leader
    finally:
        await a.cancel()
