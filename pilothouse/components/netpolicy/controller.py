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
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from pilothouse.client.informer import EventHandler, Informer
from pilothouse.client.rest import APIClient, resource
from pilothouse.components.netkernel.nft import Nft
from pilothouse.components.netpolicy.model import namespace_from, pod_from, policy_from
from pilothouse.components.netpolicy.rules import FAMILY, TABLE, Ruleset, compute, full_commands, plan
from pilothouse.components.syncloop import DEFAULT_FULL_SYNC_PERIOD, LoopStats, SyncLoop

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
class PolicyStats(LoopStats):
    last_compute_seconds: float = 0.0


class PolicyController(SyncLoop):
    what = "network policy"
    credentials_hint = "--network-policy-kubeconfig"

    def __init__(self, client: APIClient, node_name: str, *, table: str = TABLE, netns: str | None = None,
                 nft: Nft | None = None, sync_warning_after: float = 10.0,
                 full_sync_period: float | None = DEFAULT_FULL_SYNC_PERIOD, min_sync_period: float = 0.0) -> None:
        super().__init__(client, log, sync_warning_after=sync_warning_after, full_sync_period=full_sync_period,
                         min_sync_period=min_sync_period)
        self.node_name = node_name
        self.table = table
        self.netns = netns
        self.nft = nft or Nft(netns)
        self.pods = self.factory.informer(PODS)
        self.namespaces = self.factory.informer(NAMESPACES)
        self.policies = self.factory.informer(NETWORKPOLICIES)
        self._stats = PolicyStats()
        self._applied: Ruleset | None = None
        self._dirty = True

        def mark(*_: object) -> None:
            self._dirty = True
            self.wake()

        for informer in self.informers():
            informer.add_handler(EventHandler(mark, mark, mark))

    # ------------------------------------------------------------ the loop's parts

    @property
    def stats(self) -> PolicyStats:
        return self._stats

    @property
    def pending(self) -> bool:
        return self._dirty

    def informers(self) -> list[Informer]:
        return [self.pods, self.namespaces, self.policies]

    def mark_all(self) -> None:
        self._dirty = True

    def forget_applied(self) -> None:
        self._applied = None

    async def before_start(self) -> None:
        await enable_bridge_netfilter(self.netns)

    async def cleanup(self) -> None:
        """Remove the table: every pod of the node unisolated."""
        await self.nft.delete_table(FAMILY, self.table)

    def desired(self) -> Ruleset:
        pods = [pod for pod in map(pod_from, self.pods.list()) if pod is not None]
        return compute(map(policy_from, self.policies.list()), pods, map(namespace_from, self.namespaces.list()),
                       self.node_name)

    async def sync(self) -> None:
        started = time.perf_counter()
        self._dirty = False
        try:
            desired = self.desired()
            computed = time.perf_counter()
            commands = full_commands(desired, self.table) if self._applied is None else plan(self._applied, desired,
                                                                                             self.table)
            await self.nft.apply(commands)
        except Exception:
            self._dirty = True
            raise
        self._applied = desired
        self.stats.record(started, len(commands))
        self.stats.last_compute_seconds = computed - started
        self.synced.set()
        log.debug("network policy: %d chains, %d commands in %.1f ms", len(desired.chains), len(commands),
                  self.stats.last_seconds * 1000)
