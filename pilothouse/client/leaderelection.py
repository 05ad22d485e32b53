"""Leader election over a ``coordination.k8s.io/v1`` Lease, as client-go's ``leaderelection`` package.

Several copies of the scheduler and the controller manager run in a highly available control plane
(one per ``pilothouse server``), but only one of each may act: two schedulers would bind the same pod
twice, two ReplicaSet controllers would both create the missing replicas. They agree through a Lease
object in ``kube-system`` written through the API, so the store's optimistic concurrency
(``resourceVersion``) is the only arbiter and no component needs to reach another directly.

The algorithm is client-go's (``tools/leaderelection/leaderelection.go``), including its choices:

* A lease is judged expired by the *local* clock: ``observedTime + leaseDurationSeconds``, where
  ``observedTime`` is when this process last saw the record change. The holder's ``renewTime`` is
  written for humans and for other tools; trusting it would make the election depend on the
  machines' clocks agreeing. A standby that watched the record take over at most one retry period
  after the holder's last renewal.
* The leader renews every retry period; if no renewal succeeds within the renew deadline it stops
  leading (its work is cancelled) — the caller is expected to exit, as kube-scheduler does with
  ``klog.Fatalf("leaderelection lost")``, since state built while leading cannot be trusted.
* On cancellation the lease is released (``ReleaseOnCancel``): the holder is cleared and the duration
  set to 1 s, so a standby takes over at its next retry instead of waiting a full lease duration.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any

from pilothouse.client import errors
from pilothouse.client.events import EventRecorder
from pilothouse.client.rest import APIClient, resource
from pilothouse.machinery import meta
from pilothouse.machinery.meta import Object

__all__ = [
    "JITTER_FACTOR",
    "LeaderElectionLost",
    "LeaderElectionRecord",
    "LeaderElector",
    "default_identity",
]

log = logging.getLogger("pilothouse.client.leaderelection")

LEASES = resource("coordination.k8s.io", "v1", "leases")
# client-go's JitterFactor: retries wait retry_period * (1 + rand * 1.2) while acquiring.
JITTER_FACTOR = 1.2


async def _stop(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait until it has ended. Not ``await task`` under a suppressed
    CancelledError: that would also swallow a cancellation of the caller arriving meanwhile."""
    task.cancel()
    await asyncio.wait({task})
    if not task.cancelled():
        task.exception()  # retrieved: it ended on its own, its outcome no longer matters


class LeaderElectionLost(Exception):
    """The leader could not renew its lease within the renew deadline."""


def default_identity() -> str:
    """``<hostname>_<uuid>``, the identity kube-scheduler and kube-controller-manager use."""
    return f"{socket.gethostname()}_{uuid.uuid4()}"


class LeaderElectionRecord:
    """The Lease spec fields the election reads and writes (client-go's ``LeaderElectionRecord``)."""

    __slots__ = ("acquire_time", "holder_identity", "lease_duration_seconds", "lease_transitions", "renew_time")

    def __init__(self, holder_identity: str = "", lease_duration_seconds: int = 0, acquire_time: str = "",
                 renew_time: str = "", lease_transitions: int = 0) -> None:
        self.holder_identity = holder_identity
        self.lease_duration_seconds = lease_duration_seconds
        self.acquire_time = acquire_time
        self.renew_time = renew_time
        self.lease_transitions = lease_transitions

    @classmethod
    def from_lease(cls, lease: Object) -> LeaderElectionRecord:
        spec = lease.get("spec") or {}
        return cls(str(spec.get("holderIdentity") or ""), int(spec.get("leaseDurationSeconds") or 0),
                   str(spec.get("acquireTime") or ""), str(spec.get("renewTime") or ""),
                   int(spec.get("leaseTransitions") or 0))

    def to_spec(self) -> Object:
        spec: Object = {"leaseDurationSeconds": self.lease_duration_seconds,
                        "leaseTransitions": self.lease_transitions}
        # An empty holder is omitted, as Go's omitempty does for the released lease.
        if self.holder_identity:
            spec["holderIdentity"] = self.holder_identity
        if self.acquire_time:
            spec["acquireTime"] = self.acquire_time
        if self.renew_time:
            spec["renewTime"] = self.renew_time
        return spec

    def key(self) -> tuple[str, int, str, str, int]:
        return (self.holder_identity, self.lease_duration_seconds, self.acquire_time, self.renew_time,
                self.lease_transitions)


class LeaderElector:
    """Campaign for, hold and release one Lease; run a coroutine only while holding it."""

    def __init__(self, client: APIClient, *, name: str, namespace: str = "kube-system",
                 identity: str | None = None, lease_duration: float = 15.0, renew_deadline: float = 10.0,
                 retry_period: float = 2.0, release_on_cancel: bool = True,
                 event_recorder: EventRecorder | None = None,
                 clock: Callable[[], datetime] = meta.now) -> None:
        # client-go's NewLeaderElector validation, so a misconfiguration fails at start, not in a split brain.
        if lease_duration <= renew_deadline:
            raise ValueError("leaseDuration must be greater than renewDeadline")
        if renew_deadline <= JITTER_FACTOR * retry_period:
            raise ValueError("renewDeadline must be greater than retryPeriod*JitterFactor")
        if min(lease_duration, renew_deadline, retry_period) <= 0:
            raise ValueError("lease duration, renew deadline and retry period must be positive")
        self.client = client
        self.name = name
        self.namespace = namespace
        self.identity = identity or default_identity()
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.release_on_cancel = release_on_cancel
        self.recorder = event_recorder or EventRecorder(client, name, host=self.identity)
        self._clock = clock
        self._lease: Object | None = None
        self._observed: LeaderElectionRecord = LeaderElectionRecord()
        self._observed_time: datetime = datetime.min.replace(tzinfo=clock().tzinfo)
        self._reported_leader = ""
        self._on_new_leader: Callable[[str], None] | None = None

    # ----------------------------------------------------------- inspection

    @property
    def is_leader(self) -> bool:
        return bool(self._observed.holder_identity) and self._observed.holder_identity == self.identity

    @property
    def leader(self) -> str:
        """The holder this elector last observed ("" if none)."""
        return self._observed.holder_identity

    # ----------------------------------------------------------------- run

    async def run(self, on_started_leading: Callable[[], Coroutine[Any, Any, None]],
                  on_stopped_leading: Callable[[], Awaitable[None]] | None = None,
                  on_new_leader: Callable[[str], None] | None = None) -> None:
        """Acquire, run ``on_started_leading()`` while renewing, stop it when leadership ends.

        Returns only by raising: :class:`LeaderElectionLost` when a renewal missed the deadline
        (after the leading coroutine has been cancelled), ``CancelledError`` when cancelled (after
        releasing the lease), or the leading coroutine's own exception. ``on_stopped_leading`` runs
        on every way out, even if leadership was never acquired, as in client-go.
        """
        self._on_new_leader = on_new_leader
        leading: asyncio.Task[None] | None = None
        try:
            await self._acquire()
            leading = asyncio.create_task(on_started_leading(), name=f"leading-{self.name}")
            renewing = asyncio.create_task(self._renew(), name=f"renew-{self.name}")
            try:
                await asyncio.wait({leading, renewing}, return_when=asyncio.FIRST_COMPLETED)
                if leading.done() and not leading.cancelled() and leading.exception() is not None:
                    raise leading.exception()  # type: ignore[misc]
                if leading.done():
                    # client-go keeps renewing after OnStartedLeading returns: the lease stays held.
                    await renewing
                renewing.result()  # raises LeaderElectionLost
            finally:
                await _stop(renewing)
        finally:
            if leading is not None and not leading.done():
                await _stop(leading)
            if leading is not None:
                self.recorder.event(self._lease or {}, "Normal", "LeaderElection",
                                    f"{self.identity} stopped leading")
            if self.release_on_cancel and self.is_leader:
                await self._release()
            # Events are best effort, but give them a moment: the caller usually exits next.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.recorder.flush(), 2.0)
            if on_stopped_leading is not None:
                await on_stopped_leading()

    async def _acquire(self) -> None:
        log.info("attempting to acquire leader lease %s/%s...", self.namespace, self.name)
        # A standby watches the Lease, so it observes each renewal the moment it happens (not up to a
        # retry period late, as polling would) and wakes right when the lease expires: a dead
        # leader is replaced within the lease duration of its last renewal.
        changed = asyncio.Event()
        watcher = asyncio.create_task(self._watch_lease(changed), name=f"watch-lease-{self.name}")
        try:
            while True:
                if await self._attempt(self.renew_deadline):
                    log.info("successfully acquired lease %s/%s", self.namespace, self.name)
                    self.recorder.event(self._lease or {}, "Normal", "LeaderElection",
                                        f"{self.identity} became leader")
                    return
                wait = self.retry_period * (1 + random.random() * JITTER_FACTOR)
                if self._observed.holder_identity:
                    until_expiry = (self._expiry() - self._clock()).total_seconds()
                    wait = min(wait, max(until_expiry, 0.0) + 0.01)
                changed.clear()
                with contextlib.suppress(TimeoutError):
                    # a released lease (holder cleared) is worth an attempt at once
                    async with asyncio.timeout(wait):
                        await changed.wait()
        finally:
            await _stop(watcher)

    async def _watch_lease(self, changed: asyncio.Event) -> None:
        """Record every change of the Lease as an observation (client-go's observedTime), and
        signal when it was released."""
        while True:
            try:
                async for event in self.client.watch(LEASES, self.namespace, resource_version="0",
                                                     field_selector=f"metadata.name={self.name}",
                                                     timeout_seconds=300):
                    if event.get("type") not in ("ADDED", "MODIFIED"):
                        continue
                    record = LeaderElectionRecord.from_lease(event["object"])
                    if record.key() != self._observed.key():
                        self._set_observed(record, self._clock())
                    if not record.holder_identity:
                        changed.set()
            except (errors.APIError, errors.ConnectionFailed) as error:
                log.debug("watch of lease %s/%s: %s", self.namespace, self.name, error)
            await asyncio.sleep(self.retry_period)

    async def _renew(self) -> None:
        """Renew every retry period; raise LeaderElectionLost when the renew deadline passes without success."""
        loop = asyncio.get_running_loop()
        while True:
            deadline = loop.time() + self.renew_deadline
            while True:
                remaining = deadline - loop.time()
                if remaining > 0 and await self._attempt(remaining):
                    break
                if loop.time() + self.retry_period >= deadline:
                    log.error("failed to renew lease %s/%s: timed out waiting for the condition",
                              self.namespace, self.name)
                    raise LeaderElectionLost(f"leaderelection lost for {self.namespace}/{self.name}")
                await asyncio.sleep(self.retry_period)
            await asyncio.sleep(self.retry_period)

    async def _attempt(self, timeout: float) -> bool:
        try:
            # asyncio.timeout, not wait_for: Python 3.11's wait_for returns the inner result when the
            # caller is cancelled as the inner call completes, which lost the cancellation of an
            # elector acquiring the lease at that moment (it then led on, and never returned).
            async with asyncio.timeout(timeout):
                return await self._try_acquire_or_renew()
        except (TimeoutError, errors.APIError, errors.ConnectionFailed) as error:
            log.warning("error retrieving or updating lease %s/%s: %s", self.namespace, self.name, error)
            return False

    # ------------------------------------------------------ the algorithm

    async def _try_acquire_or_renew(self) -> bool:
        """client-go's ``tryAcquireOrRenew``: one read and at most one write, guarded by resourceVersion."""
        now = self._clock()
        stamp = meta.format_time_micro(now)
        record = LeaderElectionRecord(self.identity, max(1, round(self.lease_duration)), stamp, stamp, 0)

        if self.is_leader and self._lease_valid(now) and self._lease is not None:
            # client-go's fast path (1.29+): the leader updates its last copy optimistically, one round
            # trip instead of a read and a write, so a renewal on a loaded server has half the chances
            # to miss the renew deadline. Its resourceVersion makes it a compare-and-swap still.
            record.acquire_time = self._observed.acquire_time or stamp
            record.lease_transitions = self._observed.lease_transitions
            optimistic = {**self._lease, "spec": {**(self._lease.get("spec") or {}), **record.to_spec()}}
            try:
                self._lease = await self.client.update(LEASES, optimistic)
            except (errors.APIError, errors.ConnectionFailed) as error:
                log.info("failed to update lease %s/%s optimistically: %s; falling back to slow path",
                         self.namespace, self.name, error)
            else:
                self._set_observed(record, now)
                return True

        try:
            lease = await self.client.get(LEASES, self.name, self.namespace)
        except errors.NotFoundError:
            try:
                self._lease = await self.client.create(LEASES, self._lease_object(record), self.namespace)
            except errors.AlreadyExistsError:
                return False
            self._set_observed(record, now)
            return True

        old = LeaderElectionRecord.from_lease(lease)
        if old.key() != self._observed.key():
            self._set_observed(old, now)
        if old.holder_identity and self._lease_valid(now) and not self.is_leader:
            log.debug("lock is held by %s and has not yet expired", old.holder_identity)
            self._lease = lease
            return False

        if self.is_leader:
            record.acquire_time = old.acquire_time or stamp
            record.lease_transitions = old.lease_transitions
        else:
            record.lease_transitions = old.lease_transitions + 1
        updated = dict(lease)
        updated["spec"] = {**(lease.get("spec") or {}), **record.to_spec()}
        try:
            # The read's resourceVersion makes this a compare-and-swap: a rival's write in between is a 409.
            self._lease = await self.client.update(LEASES, updated)
        except errors.ConflictError:
            return False
        self._set_observed(record, now)
        return True

    def _expiry(self) -> datetime:
        return self._observed_time + timedelta(seconds=self._observed.lease_duration_seconds)

    def _lease_valid(self, now: datetime) -> bool:
        return self._expiry() > now

    def _set_observed(self, record: LeaderElectionRecord, now: datetime) -> None:
        self._observed = record
        self._observed_time = now
        if record.holder_identity and record.holder_identity != self._reported_leader:
            self._reported_leader = record.holder_identity
            if record.holder_identity != self.identity:
                log.info("new leader elected for %s/%s: %s", self.namespace, self.name, record.holder_identity)
            if self._on_new_leader is not None:
                self._on_new_leader(record.holder_identity)

    def _lease_object(self, record: LeaderElectionRecord) -> Object:
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace}, "spec": record.to_spec()}

    async def _release(self) -> None:
        """Give the lease up at once: empty holder, 1 s duration (client-go's ``release``)."""
        try:
            # Bounded: a cancelled process must exit promptly even when the API server is gone.
            await asyncio.wait_for(self._write_release(), min(self.renew_deadline, 5.0))
        except (TimeoutError, errors.APIError, errors.ConnectionFailed) as error:
            log.warning("failed to release lease %s/%s: %s", self.namespace, self.name, error)

    async def _write_release(self) -> None:
        lease = self._lease
        if lease is None:
            # Leadership was observed through the Lease watch while our own acquiring write was still
            # in flight (and then cancelled): we hold the lease without its copy. Read it, and
            # release it only if it is still ours.
            try:
                lease = await self.client.get(LEASES, self.name, self.namespace)
            except errors.NotFoundError:
                return
            if LeaderElectionRecord.from_lease(lease).holder_identity != self.identity:
                return
        for _ in range(3):
            stamp = meta.format_time_micro(self._clock())
            record = LeaderElectionRecord("", 1, stamp, stamp, self._observed.lease_transitions)
            released = dict(lease)
            spec = {k: v for k, v in (lease.get("spec") or {}).items() if k != "holderIdentity"}
            released["spec"] = {**spec, **record.to_spec()}
            try:
                self._lease = await self.client.update(LEASES, released)
            except errors.ConflictError:
                # A renewal cancelled in flight may have landed after our copy was read: re-read,
                # and release only what is still ours.
                lease = await self.client.get(LEASES, self.name, self.namespace)
                if LeaderElectionRecord.from_lease(lease).holder_identity != self.identity:
                    return
                continue
            self._set_observed(record, self._clock())
            log.info("released lease %s/%s", self.namespace, self.name)
            return
