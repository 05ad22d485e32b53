"""The run-time skeleton shared by the node's kernel programmers (the service proxy, the network
policy controller): informers, a wait for all of them to list, and one loop that syncs when changes
are pending, backs off on failure and replaces the whole kernel state after one.

What differs stays in the subclass: which informers, what "dirty" means (the proxy keeps Service
keys, the policy controller one flag), :meth:`SyncLoop.sync` itself, and extra wake-ups (the
proxy's stale-chain timer, :meth:`SyncLoop.next_timer`).

Timing follows kube-proxy's BoundedFrequencyRunner: ``min_sync_period`` (``--min-sync-period``)
spaces syncs so that a burst of events costs one sync, and a full resync runs every
``full_sync_period`` (kube-proxy's hourly ``FullSyncPeriod``, ``--sync-period`` here: between full
syncs kube-proxy's periodic partial syncs are no-ops, as ours would be), recomputing every object
and replacing the kernel state in one transaction, which repairs a table changed behind our back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from pilothouse.client import errors
from pilothouse.client.informer import Informer, InformerFactory
from pilothouse.client.rest import APIClient
from pilothouse.components.netkernel.nft import NftError

__all__ = ["DEFAULT_FULL_SYNC_PERIOD", "LoopStats", "SyncLoop"]

#: kube-proxy's proxyutil.FullSyncPeriod
DEFAULT_FULL_SYNC_PERIOD = 3600.0
_BACKOFF_FIRST, _BACKOFF_MAX = 0.5, 30.0


@dataclass
class LoopStats:
    syncs: int = 0
    failures: int = 0
    full_syncs: int = 0
    last_seconds: float = 0.0
    last_commands: int = 0
    #: monotonic time of the last successful sync (tests and the benchmarks wait on it)
    last_applied: float = 0.0
    history: list[float] = field(default_factory=list)

    def record(self, started: float, commands: int) -> float:
        """Count one successful sync that began at ``perf_counter`` time ``started``; its monotonic end."""
        self.syncs += 1
        self.last_seconds = time.perf_counter() - started
        self.last_commands = commands
        self.last_applied = time.monotonic()
        self.history = [*self.history[-999:], self.last_seconds]
        return self.last_applied


class SyncLoop(ABC):
    #: names the loop's task and its log lines
    what = "sync"
    #: the flag that gives the loop credentials it lacks, for the refusal message
    credentials_hint = ""

    def __init__(self, client: APIClient, log: logging.Logger, *, sync_warning_after: float = 10.0,
                 full_sync_period: float | None = DEFAULT_FULL_SYNC_PERIOD, min_sync_period: float = 0.0) -> None:
        self.client = client
        self.log = log
        #: informers not synced after this long: find out why and say so
        self.sync_warning_after = sync_warning_after
        self.full_sync_period = full_sync_period
        self.min_sync_period = min_sync_period
        self.factory = InformerFactory(client)
        self.synced = asyncio.Event()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_full = 0.0
        self._last_sync = 0.0
        #: the last sync succeeded (kube-proxy's healthz; the health-check node ports report it)
        self.healthy = True

    # ------------------------------------------------------------ for subclasses

    @property
    @abstractmethod
    def stats(self) -> LoopStats: ...

    @property
    @abstractmethod
    def pending(self) -> bool:
        """Changes seen that no sync has applied yet."""

    @abstractmethod
    def mark_all(self) -> None:
        """Mark everything dirty (the first sync, a full resync)."""

    @abstractmethod
    def forget_applied(self) -> None:
        """The kernel's state is unknown: make the next sync replace it whole."""

    @abstractmethod
    async def sync(self) -> None: ...

    def begin_full_sync(self) -> None:
        """Make the next sync the periodic full one: everything recomputed, the kernel state replaced."""
        self.forget_applied()
        self.mark_all()

    def informers(self) -> list[Informer]:
        """The informers to wait for, and to explain when they do not list."""
        return []

    def next_timer(self) -> float | None:
        """Seconds until the subclass needs a sync though nothing changed (None: never)."""
        return None

    async def before_start(self) -> None:  # noqa: B027 - optional: most loops need no preparation
        """Kernel preparation before the informers start."""

    def wake(self) -> None:
        self._wake.set()

    # ------------------------------------------------------------ running

    async def start(self) -> None:
        await self.before_start()
        self.factory.start()
        self._task = asyncio.create_task(self._loop(), name=f"{self.what}-sync")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.factory.stop()

    async def _loop(self) -> None:
        while True:
            try:
                await self.factory.wait_synced(self.sync_warning_after)
                break
            except TimeoutError:
                await self._explain_unsynced()
        self.mark_all()
        self._last_full = time.monotonic()
        backoff = _BACKOFF_FIRST
        while True:
            self._wake.clear()
            if self._full_sync_due():
                self.stats.full_syncs += 1
                self._last_full = time.monotonic()
                self.begin_full_sync()
            try:
                await self._space_out()
                self._last_sync = time.monotonic()
                await self.sync()
                backoff = _BACKOFF_FIRST
                self.healthy = True
            except asyncio.CancelledError:
                raise
            except Exception as error:  # nft refused, or a bug: never leave the node unsynced for good
                self.stats.failures += 1
                self.healthy = False
                self.forget_applied()
                self.log.error("%s sync failed (%s); replacing the whole table in %.1fs", self.what, error, backoff,
                               exc_info=not isinstance(error, (NftError, OSError)))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX)
                continue
            if self.pending:
                continue
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._timeout())

    def _full_sync_due(self) -> bool:
        return self.full_sync_period is not None and time.monotonic() - self._last_full >= self.full_sync_period

    def _timeout(self) -> float | None:
        timers = [t for t in (self.next_timer(),) if t is not None]
        if self.full_sync_period is not None:
            timers.append(max(0.0, self._last_full + self.full_sync_period - time.monotonic()))
        return min(timers) if timers else None

    async def _space_out(self) -> None:
        """kube-proxy's --min-sync-period: wait out what is left of it since the last sync."""
        left = self._last_sync + self.min_sync_period - time.monotonic()
        if left > 0:
            await asyncio.sleep(left)

    async def _explain_unsynced(self) -> None:
        """The informers retry quietly; say why nothing is programmed yet when the server refuses (a
        node's identity may not list what the component reads under RBAC)."""
        for informer in self.informers():
            if informer.synced.is_set():
                continue
            try:
                await self.client.list(informer.resource, limit=1)
            except errors.APIError as error:
                self.log.warning("%s cannot list %s yet (%s): nothing is programmed on this node; under RBAC give "
                                 "it credentials that may (%s)", self.what, informer.resource.plural, error,
                                 self.credentials_hint)
            except errors.ConnectionFailed as error:
                self.log.warning("%s cannot reach the API server yet: %s", self.what, error)

    async def wait_applied(self, since: float, timeout: float = 10.0) -> None:
        """Wait for a sync that finished after monotonic time ``since`` with nothing pending (tests,
        the benchmarks)."""
        deadline = time.monotonic() + timeout
        while self.stats.last_applied <= since or self.pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {self.what} sync")
            await asyncio.sleep(0.005)
