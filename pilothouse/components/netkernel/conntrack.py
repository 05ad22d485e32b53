"""Clearing conntrack entries, as kube-proxy does with the same ``conntrack`` tool (conntrack-tools).

UDP has no connection to close: after a Service's endpoint goes away, the NAT entry of a client that
keeps sending (DNS clients do) would keep sending to the dead address until it times out, and a
Service that had no endpoints keeps the entries of the rejected packets. kube-proxy deletes those
entries after each sync (pkg/proxy/conntrack); so do we.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from dataclasses import dataclass

__all__ = ["ConntrackFilter", "delete_entries"]

log = logging.getLogger("pilothouse.netkernel.conntrack")


@dataclass(frozen=True, order=True)
class ConntrackFilter:
    """Entries whose original destination is ``destination`` (any when empty) and ``port`` (any when
    0), and, when given, that were NATed to ``nat_destination``."""

    protocol: str
    destination: str
    port: int = 0
    nat_destination: str = ""

    def argv(self) -> list[str]:
        args = ["-D", "-p", self.protocol]
        if self.destination:  # none: a NodePort, on any of the node's addresses
            args += ["--orig-dst", self.destination]
        if self.port:
            args += ["--orig-port-dst", str(self.port)]
        if self.nat_destination:
            args += ["--dst-nat", self.nat_destination]
        return args


async def delete_entries(filters: list[ConntrackFilter], netns: str | None = None) -> int:
    """Delete the entries matching each filter; the number of ``conntrack`` runs that found some."""
    if not filters:
        return 0
    if shutil.which("conntrack") is None:
        log.warning("conntrack not found (install conntrack-tools): stale UDP entries stay until they expire")
        return 0
    prefix = ["ip", "netns", "exec", netns] if netns else []
    deleted = 0
    for item in filters:
        process = await asyncio.create_subprocess_exec(*prefix, "conntrack", *item.argv(),
                                                       stdout=asyncio.subprocess.DEVNULL,
                                                       stderr=asyncio.subprocess.DEVNULL)
        # exit status 1 = nothing matched, which is the usual case
        if await process.wait() == 0:
            deleted += 1
    return deleted
