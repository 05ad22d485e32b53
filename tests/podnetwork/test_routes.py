"""Pod routes across network-namespace hosts: ``pilothouse pod-routes`` runs in each host's namespace,
reads the Nodes from a real API server, and a pod on host A reaches pods on B (a shared subnet: a
direct route) and C (behind a router: VXLAN) with its own address as the source (no NAT); a deleted
Node's routes go; ``--backend vxlan`` carries A to B over the overlay too."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import ServerProcess, terminate
from tests.podnetwork.conftest import HOSTS
from tests.podnetwork.hostlab import HostLab, enter, sh

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("nsenter") or not shutil.which("bridge"),
                                reason="needs root, nsenter and iproute2's bridge")
def _routes(lab: HostLab, host: str) -> list[dict[str, Any]]:
    out = sh(*enter(lab.host_netns(host)), "ip", "-j", "route", "show", "proto", "199").stdout.strip()
    return json.loads(out) if out else []


def _eventually(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def _run_routes(lab: HostLab, api: ServerProcess, host: str, *extra: str) -> subprocess.Popen[bytes]:
    return lab.start(host, sys.executable, "-m", "pilothouse", "pod-routes", "--server", api.url,
                     "--node-name", host, *extra)


def test_pods_reach_each_other_across_hosts_with_their_own_address(lab: HostLab, api: ServerProcess) -> None:
    processes = [_run_routes(lab, api, host) for host in HOSTS]
    try:
        # A to B: a direct route via B's address; A to C: over the overlay
        _eventually(lambda: {r["dst"]: r.get("dev") for r in _routes(lab, "ha")} ==
                    {"10.254.2.0/24": "eth0", "10.254.3.0/24": "pilothouse.1"}, f"routes of A: {_routes(lab, 'ha')}")
        _eventually(lambda: len(_routes(lab, "hc")) == 2 and len(_routes(lab, "hb")) == 2, "routes of B and C")
        pa, pb, pc = (lab.pods[p][1] for p in ("pa", "pb", "pc"))
        # the echo reports the peer's address: the client pod's own, never its host's (no NAT)
        for client, server, expected in (("pa", "pb", pa), ("pa", "pc", pa), ("pc", "pa", pc), ("pb", "pc", pb),
                                         ("pc", "pb", pc)):
            _eventually(lambda c=client, s=server, e=expected: lab.ask(c, s) == e,  # type: ignore[misc]
                        f"{client} -> {server}: {lab.ask(client, server)}")

        # C deleted: its range leaves A's and B's routes (and the overlay's entries with it)
        api.kubectl("delete", "node", "hc")
        _eventually(lambda: [r["dst"] for r in _routes(lab, "ha")] == ["10.254.2.0/24"], f"A: {_routes(lab, 'ha')}")
        _eventually(lambda: "pilothouse.1" not in sh(*enter(lab.host_netns("ha")), "ip", "link", "show").stdout,
                    "A's VXLAN device is gone with its last peer")
        assert lab.ask("pa", "pc", timeout=1).startswith("error")
        assert lab.ask("pa", "pb") == pa
    finally:
        for process in processes:
            terminate(process)
            lab.processes.remove(process)


def test_vxlan_backend_between_hosts_of_one_subnet(lab: HostLab, api: ServerProcess) -> None:
    processes = [_run_routes(lab, api, host, "--backend", "vxlan") for host in ("ha", "hb")]
    try:
        _eventually(lambda: [(r["dst"], r.get("dev")) for r in _routes(lab, "ha")] ==
                    [("10.254.2.0/24", "pilothouse.1")], f"A: {_routes(lab, 'ha')}")
        fdb = sh(*enter(lab.host_netns("ha")), "bridge", "fdb", "show", "dev", "pilothouse.1").stdout
        assert "dst 10.253.0.2" in fdb, fdb
        _eventually(lambda: lab.ask("pa", "pb") == lab.pods["pa"][1], f"pa -> pb: {lab.ask('pa', 'pb')}")
        _eventually(lambda: lab.ask("pb", "pa") == lab.pods["pb"][1], f"pb -> pa: {lab.ask('pb', 'pa')}")
    finally:
        for process in processes:
            terminate(process)
            lab.processes.remove(process)
