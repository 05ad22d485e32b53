"""Pod networking done by the agent itself, the way the CNI ``bridge`` + ``host-local`` plugins do it.

Podman's own bridge networking (netavark: a netns under /run/netns, IPAM under a lock, veth, a
firewall chain per container) cost about 70 ms of CPU per sandbox on a 2-core host, which was the
largest single share of a pod's start in a burst (``bench/pod_startup.py``). Here the sandbox is
created with ``NetworkMode: none`` (the runtime gives it an empty network namespace) and the agent:

- allocates an address from the node's pod range: one file per address under ``/run/pilothouse/ipam/
  <bridge>/`` created with ``O_EXCL``, holding the owner (the sandbox name) and, once wired, the
  sandbox's pid; the directory is shared by every agent of the host (one bridge, one range), and an
  entry whose pid is gone (or which never got one within ``_UNWIRED_GRACE``) may be taken again;
- adds a veth pair whose pod end lands as ``eth0`` in the sandbox's namespace (``/proc/<pid>/ns/net``),
  the host end on the bridge, then the address and a default route via the bridge's address;
- records the address in a sandbox label, so a restarted agent adopts the pod with its IP.

Nothing is torn down per pod: the kernel removes the veth pair with the namespace when the sandbox's
last process exits; the agent only releases the address when it removes the sandbox. Two ``ip``
processes per pod (``-batch``) cost about 12 ms of CPU. Pods with ``hostPort`` keep the engine's
networking (its port mapping), ``hostNetwork`` pods the host's.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path

__all__ = ["PodNetwork", "PodNetworkError", "hosts_file"]

log = logging.getLogger("pilothouse.agent.podnet")

IPAM_ROOT = Path("/run/pilothouse/ipam")
#: owners of addresses put on the bridge itself (``hold_on_bridge``), not given to a pod
HOST_OWNER = "host:"
#: an address allocated but not wired for this long belongs to an agent that died in between
_UNWIRED_GRACE = 300.0


class PodNetworkError(Exception):
    pass


async def _ip(args: list[str], batch: str) -> None:
    process = await asyncio.create_subprocess_exec(*args, "-batch", "-", stdin=asyncio.subprocess.PIPE,
                                                   stdout=asyncio.subprocess.DEVNULL,
                                                   stderr=asyncio.subprocess.PIPE)
    _, err = await process.communicate(batch.encode())
    if process.returncode != 0:
        raise PodNetworkError(err.decode(errors="replace").strip() or f"{args} failed")


async def _ip_fails(args: list[str]) -> bool:
    process = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.DEVNULL,
                                                   stderr=asyncio.subprocess.DEVNULL)
    return await process.wait() != 0


async def _iptables(*args: str) -> bool:
    process = await asyncio.create_subprocess_exec("iptables", "-w", *args, stdout=asyncio.subprocess.DEVNULL,
                                                   stderr=asyncio.subprocess.DEVNULL)
    return await process.wait() == 0


async def _ensure_rule(table: str, chain: str, rule: list[str], *, first: bool) -> bool:
    """Add ``rule`` to ``chain`` unless it is there (at the top when ``first``); idempotent."""
    if await _iptables("-t", table, "-C", chain, *rule):
        return True
    return await _iptables("-t", table, *(["-I", chain, "1"] if first else ["-A", chain]), *rule)


def _pid_alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


class PodNetwork:
    """A bridge and an address range on this host; :meth:`attach` wires one sandbox to them."""

    def __init__(self, cidr: str = "10.244.0.0/16", bridge: str = "pilothouse0",
                 ipam_root: Path = IPAM_ROOT, cluster_cidr: str = "", mtu: int = 0) -> None:
        self.network = ipaddress.IPv4Network(cidr)
        #: every Node's pods (``--cluster-cidr``): traffic to them keeps its source address (no NAT
        #: between pods, routed to other hosts by components/podnetwork); default: this host's range
        self.cluster = ipaddress.IPv4Network(cluster_cidr) if cluster_cidr else self.network
        #: the pods' interface MTU (0: the kernel's default); less than the host's over a VXLAN overlay
        self.mtu = mtu
        if self.network.num_addresses < 4:
            raise ValueError(f"pod range {cidr} is too small")
        self.bridge = bridge
        self.gateway = str(self.network.network_address + 1)
        self.prefix = self.network.prefixlen
        self.ipam_dir = ipam_root / bridge
        self._next = 2  # offset in the range where the next search starts (round robin, as host-local)

    @staticmethod
    def usable() -> bool:
        """Root with ``ip`` and ``nsenter`` at hand (otherwise the engine does the networking)."""
        return os.geteuid() == 0 and shutil.which("ip") is not None and shutil.which("nsenter") is not None

    async def setup(self) -> None:
        """The bridge with the gateway address, and masquerading for traffic leaving the range
        (what netavark does for its own bridge); idempotent, several agents may race here."""
        self.ipam_dir.mkdir(parents=True, exist_ok=True)
        # not /sys/class/net: a host that is a network namespace entered with nsenter sees the root
        # namespace's /sys, and with it the root's bridge
        if await _ip_fails(["ip", "link", "show", "dev", self.bridge]):
            with contextlib.suppress(PodNetworkError):  # another agent created it meanwhile
                await _ip(["ip"], f"link add {self.bridge} type bridge\n")
        with contextlib.suppress(PodNetworkError):  # "File exists": already there
            await _ip(["ip"], f"addr add {self.gateway}/{self.prefix} dev {self.bridge}\n")
        await _ip(["ip"], f"link set {self.bridge} up\n")
        if not shutil.which("iptables"):
            log.warning("iptables not found: pods reach only this host")
            return
        # what netavark does for its bridge: masquerade traffic leaving the range, but not to another
        # Node's pods (the cluster range), which see the pod's own address as a pod network must...
        await _iptables("-t", "nat", "-D", "POSTROUTING", "-s", str(self.network), "!", "-o", self.bridge,
                        "-j", "MASQUERADE")  # the rule of earlier versions, which had no cluster range
        if not await _ensure_rule("nat", "POSTROUTING", ["-s", str(self.network), "!", "-d", str(self.cluster),
                                                         "!", "-o", self.bridge, "-j", "MASQUERADE"], first=False):
            log.warning("could not add the masquerade rule for %s: pods reach only this host", self.network)
        # ...and, as the CNI bridge plugin does, accept forwarding to and from the bridge: where
        # bridged traffic passes iptables (br_netfilter) and FORWARD drops by default (dockerd sets
        # that policy), pods could not reach each other otherwise
        for direction in ("-i", "-o"):
            if not await _ensure_rule("filter", "FORWARD", [direction, self.bridge, "-j", "ACCEPT"], first=True):
                log.warning("could not add a FORWARD rule for %s", self.bridge)

    async def accept_local(self, address: str, port: int) -> None:
        """Let the bridge's pods reach a service of the host on ``address:port`` (the agent's DNS) where
        INPUT drops by default (a firewalld host), as NodeLocal DNSCache opens its address; idempotent."""
        if not shutil.which("iptables"):
            return
        for protocol in ("udp", "tcp"):
            rule = ["-i", self.bridge, "-d", address, "-p", protocol, "--dport", str(port), "-j", "ACCEPT"]
            if not await _ensure_rule("filter", "INPUT", rule, first=True):
                log.warning("could not open %s/%d on %s for the pods", protocol, port, address)

    # ----------------------------------------------------------------- IPAM

    async def allocate(self, owner: str) -> str:
        """A free address for ``owner`` (a sandbox name), claimed atomically across agents.

        In a worker thread: with a nearly full range the search opens, reads and stats thousands
        of files, which on the event loop stalled every probe, heartbeat and status write of the
        node. Claims are atomic files (``O_EXCL``), so concurrent searches cannot hand out one
        address twice; ``_next`` is only where the next search starts."""
        return await asyncio.to_thread(self._allocate, owner)

    def _allocate(self, owner: str) -> str:
        size = self.network.num_addresses
        for step in range(size - 3):
            offset = 2 + (self._next - 2 + step) % (size - 3)  # skip network, gateway, broadcast
            address = str(self.network.network_address + offset)
            if self._claim(address, owner):
                self._next = offset + 1
                return address
        raise PodNetworkError(f"no free address in {self.network}")

    def _claim(self, address: str, owner: str) -> bool:
        path = self.ipam_dir / address
        for _ in range(2):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                if not self._stale(path):
                    return False
                with contextlib.suppress(OSError):
                    if path.read_text().startswith(HOST_OWNER):  # a dead agent's: off the bridge first
                        subprocess.run(["ip", "addr", "del", f"{address}/32", "dev", self.bridge],
                                       capture_output=True, check=False)
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                continue
            with os.fdopen(fd, "w") as handle:
                handle.write(owner)
            return True
        return False

    def _stale(self, path: Path) -> bool:
        try:
            pid = path.read_text().partition("\n")[2]
            age = time.time() - path.stat().st_mtime
        except FileNotFoundError:
            return False
        if pid.strip().isdigit():
            return not _pid_alive(int(pid))
        return age > _UNWIRED_GRACE

    def release(self, address: str, owner: str) -> None:
        """Free ``address`` if ``owner`` still holds it (a stale entry may have been taken since)."""
        if not address:
            return
        path = self.ipam_dir / address
        with contextlib.suppress(OSError):
            if path.read_text().partition("\n")[0] == owner:
                path.unlink()

    async def hold_on_bridge(self, owner: str, preferred: str = "") -> str:
        """An address of the range put on the bridge itself for this process (while it lives), e.g.
        for a second agent's DNS when the gateway's is taken; ``preferred`` (the last one) if free."""
        owner = HOST_OWNER + owner
        address = preferred if preferred and self._claim(preferred, owner) else await self.allocate(owner)
        (self.ipam_dir / address).write_text(f"{owner}\n{os.getpid()}")
        with contextlib.suppress(PodNetworkError):  # "File exists": still there from the last run
            await _ip(["ip"], f"addr add {address}/32 dev {self.bridge}\n")
        return address

    async def drop_from_bridge(self, address: str, owner: str) -> None:
        with contextlib.suppress(PodNetworkError):
            await _ip(["ip"], f"addr del {address}/32 dev {self.bridge}\n")
        self.release(address, HOST_OWNER + owner)

    # --------------------------------------------------------------- wiring

    async def attach(self, pid: int, address: str, owner: str) -> None:
        """Wire the sandbox whose process is ``pid``: veth to the bridge, address, default route."""
        if pid <= 0:
            raise PodNetworkError(f"sandbox {owner} has no process")
        # random, not derived from the pod: a static pod's sandbox has the same name on every host
        # (and agents of several clusters share this namespace); interface names stop at 15 chars
        host_end = "ph" + secrets.token_hex(6)
        # hairpin on the bridge port (the CNI bridge plugin's hairpinMode): a pod reaching itself
        # through a Service is DNATed back to its own port, which a bridge otherwise never sends to
        mtu = f" mtu {self.mtu}" if self.mtu else ""
        await _ip(["ip"], f"link add {host_end}{mtu} type veth peer name eth0{mtu} netns {pid}\n"
                          f"link set {host_end} master {self.bridge} up\n"
                          f"link set {host_end} type bridge_slave hairpin on\n")
        await _ip(["nsenter", f"--net=/proc/{pid}/ns/net", "ip"],
                  f"link set lo up\naddr add {address}/{self.prefix} dev eth0\nlink set eth0 up\n"
                  f"route add default via {self.gateway}\n")
        with contextlib.suppress(OSError):
            (self.ipam_dir / address).write_text(f"{owner}\n{pid}")


def hosts_file(hostname: str, pod_ip: str, domain: str = "", aliases: list[dict[str, object]] | None = None) -> str:
    """The pod's /etc/hosts, as the kubelet writes it (managedHostsFileContent; the engine only knows
    127.0.0.1 for a sandbox without its networking): with a ``domain`` (``spec.subdomain``) the
    pod's FQDN comes first, then ``spec.hostAliases``."""
    names = f"{hostname}.{domain}\t{hostname}" if domain else hostname
    text = ("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
            "fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n"
            f"{pod_ip}\t{names}\n")
    if aliases:
        text += "\n# Entries added by HostAliases.\n"
        for alias in aliases:
            hostnames = alias.get("hostnames") or []
            assert isinstance(hostnames, list)
            text += f"{alias.get('ip')}\t{chr(9).join(str(h) for h in hostnames)}\n"
    return text
