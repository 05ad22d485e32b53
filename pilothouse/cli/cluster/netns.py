"""The kernel calls that make and unmake network-namespace hosts: ``ip`` and ``nsenter``, nothing else.

A host is a named network namespace (``ip netns add``: a bind mount under /var/run/netns) joined to
the cluster's bridge in the root namespace by a veth pair. Commands run inside a host go through
``nsenter --net=/var/run/netns/NAME``, never ``ip netns exec``: the latter also remounts /sys, which
hides the cgroup mounts from runc (docs: runtime-notes.md). Everything here is idempotent, so that a
create interrupted half way can be created again or deleted.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

__all__ = ["NETNS_DIR", "NetnsError", "add_bridge", "add_host_link", "delete_link", "delete_netns",
           "enter", "ip", "kill_netns_processes", "link_exists", "netns_exists", "netns_pids", "root_routes",
           "set_forwarding"]

NETNS_DIR = Path("/var/run/netns")


class NetnsError(RuntimeError):
    pass


def enter(netns: str) -> list[str]:
    """The prefix that runs a command inside host ``netns``."""
    return ["nsenter", f"--net={NETNS_DIR / netns}", "--"]


def ip(*commands: str, netns: str | None = None, check: bool = True) -> None:
    """``ip -batch``: several changes for one process (in ``netns`` when given)."""
    argv = [*(enter(netns) if netns else []), "ip", "-batch", "-"]
    result = subprocess.run(argv, input="\n".join(commands) + "\n", capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise NetnsError(f"ip {'; '.join(commands)}: {result.stderr.strip()}")


def link_exists(name: str) -> bool:
    return Path(f"/sys/class/net/{name}").exists()


def netns_exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def add_bridge(name: str, address: str) -> None:
    """The cluster's bridge in the root namespace, with the machine's address on the hosts' subnet."""
    if not link_exists(name):
        ip(f"link add {name} type bridge")
    ip(f"addr replace {address} dev {name}", f"link set {name} up")


def add_host_link(netns: str, bridge: str, veth: str, address: str) -> None:
    """Namespace ``netns`` with ``eth0`` (``address``, CIDR form) on ``bridge`` through veth ``veth``."""
    if not netns_exists(netns):
        subprocess.run(["ip", "netns", "add", netns], check=True, capture_output=True)
    if not link_exists(veth):
        ip(f"link add {veth} type veth peer name eth0 netns {netns}")
    ip(f"link set {veth} master {bridge} up")
    ip("link set lo up", f"addr replace {address} dev eth0", "link set eth0 up", netns=netns)


def set_forwarding(netns: str) -> None:
    """A host routes for its pods (a fresh namespace starts with forwarding off); /proc/sys/net shows
    the namespace of the process that reads it, hence sysctl under nsenter."""
    subprocess.run([*enter(netns), "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"], check=True, capture_output=True)


def root_routes() -> list[dict[str, str]]:
    """The root namespace's IPv4 routes (``ip -j route``), to refuse ranges already in use."""
    result = subprocess.run(["ip", "-j", "route", "show", "table", "all"], capture_output=True, text=True, check=True)
    routes: list[dict[str, str]] = json.loads(result.stdout or "[]")
    return routes


def delete_link(name: str) -> None:
    if link_exists(name):
        ip(f"link del {name}", check=False)


def netns_pids(netns: str) -> list[int]:
    """Processes whose network namespace is ``netns`` (``ip netns pids``)."""
    if not netns_exists(netns):
        return []
    result = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True, check=False)
    return [int(pid) for pid in result.stdout.split() if pid.isdigit()]


def kill_netns_processes(netns: str, timeout: float = 10.0) -> None:
    """SIGTERM to every process inside ``netns``, SIGKILL to what is left after ``timeout``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = [pid for pid in netns_pids(netns) if pid != os.getpid()]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + (timeout if sig == signal.SIGTERM else 5.0)
        while pids and time.monotonic() < deadline and netns_pids(netns):
            time.sleep(0.1)


def delete_netns(netns: str) -> None:
    if netns_exists(netns):
        subprocess.run(["ip", "netns", "delete", netns], capture_output=True, check=False)
