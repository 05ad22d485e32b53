"""The policy controller at run time: informers on NetworkPolicies, Pods and Namespaces, and a sync
loop that keeps this node's ``inet pilothouse-netpol`` table equal to :func:`.rules.compute` of what
they hold (k3s embeds kube-router's netpol controller the same way, one per node).

Like the proxy it programs nothing before every informer has listed (a partial view would isolate
pods with half their allowances), then batches events: any change wakes the loop, which recomputes
the whole ruleset (a pure function; 100 policies over 500 pods take milliseconds, see
bench/network_policy.py) and sends the kernel only the difference (:func:`.rules.plan`). A failed
transaction makes the next sync replace the whole table.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from pilothouse.client import errors
from pilothouse.client.informer import EventHandler, InformerFactory
from pilothouse.client.rest import APIClient, resource
from pilothouse.components.netkernel.nft import Nft, NftError
from pilothouse.components.netpolicy.model import namespace_from, pod_from, policy_from
from pilothouse.components.netpolicy.rules import FAMILY, TABLE, Ruleset, compute, full_commands, plan

__all__ = ["NAMESPACES", "NETWORKPOLICIES", "PODS", "PolicyController", "PolicyStats", "enable_bridge_netfilter"]

log = logging.getLogger("pilothouse.netpolicy")

PODS = resource("", "v1", "pods")
NAMESPACES = resource("", "v1", "namespaces")
NETWORKPOLICIES = resource("networking.k8s.io", "v1", "networkpolicies")
_BRIDGE_SYSCTL = "/proc/sys/net/bridge/bridge-nf-call-iptables"


async def _run(*argv: str) -> bool:
    process = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.DEVNULL,
                                                   stderr=asyncio.subprocess.DEVNULL)
    return await process.wait() == 0


async def enable_bridge_netfilter(netns: str | None = None) -> bool:
    """Make bridged IPv4 traffic pass the ``inet`` hooks (``br_netfilter``,
    ``net.bridge.bridge-nf-call-iptables=1``), as kube-router and flannel require: pods on one bridge
    talk without routing, and without it their traffic never meets a policy. False (with a warning)
    when it cannot be turned on."""
    prefix = ["ip", "netns", "exec", netns] if netns else []
    if not Path(_BRIDGE_SYSCTL).exists() and shutil.which("modprobe"):
        await _run("modprobe", "br_netfilter")
    if await _run(*prefix, "sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1"):
        return True
    log.warning("could not set net.bridge.bridge-nf-call-iptables=1 (no br_netfilter?): policies do not "
                "apply between pods on the same bridge")
    return False


@dataclass
class PolicyStats:
    syncs: int = 0
    failures: int = 0
    last_seconds: float = 0.0
    last_compute_seconds: float = 0.0
    last_commands: int = 0
    #: monotonic time of the last successful sync (tests and the benchmark wait on it)
    last_applied: float = 0.0
    history: list[float] = field(default_factory=list)


class PolicyController:
    def __init__(self, client: APIClient, node_name: str, *, table: str = TABLE, netns: str | None = None,
                 nft: Nft | None = None, sync_warning_after: float = 10.0) -> None:
        self.client = client
        self.node_name = node_name
        self.table = table
        self.netns = netns
        self.nft = nft or Nft(netns)
        self.sync_warning_after = sync_warning_after
        self.factory = InformerFactory(client)
        self.pods = self.factory.informer(PODS)
        self.namespaces = self.factory.informer(NAMESPACES)
        self.policies = self.factory.informer(NETWORKPOLICIES)
        self.stats = PolicyStats()
        self._applied: Ruleset | None = None
        self._dirty = True
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.synced = asyncio.Event()

    async def start(self) -> None:
        def mark(*_: object) -> None:
            self._dirty = True
            self._wake.set()

        for informer in (self.pods, self.namespaces, self.policies):
            informer.add_handler(EventHandler(mark, mark, mark))
        await enable_bridge_netfilter(self.netns)
        self.factory.start()
        self._task = asyncio.create_task(self._loop(), name="netpolicy-sync")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.factory.stop()

    async def cleanup(self) -> None:
        """Remove the table: every pod of the node unisolated."""
        await self.nft.delete_table(FAMILY, self.table)

    def desired(self) -> Ruleset:
        pods = [pod for pod in map(pod_from, self.pods.list()) if pod is not None]
        return compute(map(policy_from, self.policies.list()), pods, map(namespace_from, self.namespaces.list()),
                       self.node_name)

    async def _loop(self) -> None:
        while True:
            try:
                await self.factory.wait_synced(self.sync_warning_after)
                break
            except TimeoutError:
                await self._explain_unsynced()
        backoff = 0.5
        while True:
            self._wake.clear()
            if self._dirty:
                try:
                    await self.sync()
                    backoff = 0.5
                except asyncio.CancelledError:
                    raise
                except Exception as error:  # nft refused, or a bug: never leave the node unsynced for good
                    self.stats.failures += 1
                    self._dirty = True
                    self._applied = None
                    log.error("network policy sync failed (%s); replacing the whole table in %.1fs", error, backoff,
                              exc_info=not isinstance(error, (NftError, OSError)))
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 30.0)
                    continue
            if not self._dirty:
                await self._wake.wait()

    async def _explain_unsynced(self) -> None:
        for informer in (self.pods, self.namespaces, self.policies):
            if informer.synced.is_set():
                continue
            try:
                await self.client.list(informer.resource, limit=1)
            except errors.APIError as error:
                log.warning("network policy cannot list %s yet (%s): no policy is enforced on this node; under "
                            "RBAC give it credentials that may (--network-policy-kubeconfig)",
                            informer.resource.plural, error)
            except errors.ConnectionFailed as error:
                log.warning("network policy cannot reach the API server yet: %s", error)

    async def sync(self) -> None:
        started = time.perf_counter()
        self._dirty = False
        desired = self.desired()
        computed = time.perf_counter()
        commands = full_commands(desired, self.table) if self._applied is None else plan(self._applied, desired,
                                                                                         self.table)
        await self.nft.apply(commands)
        self._applied = desired
        stats = self.stats
        stats.syncs += 1
        stats.last_seconds = time.perf_counter() - started
        stats.last_compute_seconds = computed - started
        stats.last_commands = len(commands)
        stats.last_applied = time.monotonic()
        stats.history = [*stats.history[-999:], stats.last_seconds]
        self.synced.set()
        log.debug("network policy: %d chains, %d commands in %.1f ms", len(desired.chains), len(commands),
                  stats.last_seconds * 1000)

    async def wait_applied(self, since: float, timeout: float = 10.0) -> None:
        """Wait for a sync that finished after monotonic time ``since`` with nothing pending."""
        deadline = time.monotonic() + timeout
        while self.stats.last_applied <= since or self._dirty:
            if time.monotonic() > deadline:
                raise TimeoutError("no network policy sync")
            await asyncio.sleep(0.005)
