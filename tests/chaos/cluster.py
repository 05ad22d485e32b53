"""A real cluster whose every process the chaos harness may SIGKILL and start again.

The API server (plain HTTP, AlwaysAllow: the chaos is about faults, not auth) runs without its
embedded components, so the scheduler and the controller manager are processes of their own, each
leader-elected through a Lease with short timings (a restarted one is a new identity and waits for
the dead one's lease to expire, as upstream's do). Simulated agents host many nodes from one process
(their containers live in that process's memory, so a SIGKILL is a node reboot that loses them).
With ``etcd_members`` the store is a real etcd cluster, whose members are victims too. With ``real``
(tests/chaos/realnode.py) one more agent is a real one driving podman, and podman's service a victim.

Every process keeps its port and data across restarts; its log is appended to
``<base>/<name>.log``, restarts included, so a failure can be read afterwards.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tests.conftest import OPEN_FLAGS, free_port, wait_healthy
from tests.store.etcd_server import EtcdCluster, EtcdMember

if TYPE_CHECKING:
    from tests.chaos.realnode import RealNode

__all__ = ["LEASE_SECONDS", "ChaosCluster", "Component"]

#: Leader-election lease of the scheduler and the controller manager: a killed leader's successor
#: waits this long, so it bounds how long binding or reconciling stalls after a kill.
LEASE_SECONDS = 6.0


@dataclass
class Component:
    """One process of the cluster, started from ``argv`` and SIGKILLed at will."""

    name: str
    argv: list[str]
    log_path: Path
    ready: Callable[[Component], None] | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    restarts: int = 0

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== start {self.name} at {time.strftime('%H:%M:%S')} ===\n".encode())
            log.flush()
            self.process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, cwd=Path(__file__).parents[2])
        if self.ready is not None:
            self.ready(self)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as when the host loses power or the OOM killer strikes."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def restart(self) -> None:
        self.kill()
        self.restarts += 1
        self.start()

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


class _EtcdComponent(Component):
    """An etcd member as a :class:`Component` (its own start code, in tests/store/etcd_server.py)."""

    def __init__(self, cluster: EtcdCluster, member: EtcdMember, log_path: Path) -> None:
        super().__init__(f"etcd-{member.name}", [], log_path)
        self.cluster, self.member = cluster, member

    @property
    def running(self) -> bool:
        return self.member.running

    def start(self) -> None:
        self.cluster.start_member(self.member)

    def kill(self) -> None:
        self.cluster.stop_member(self.member, kill=True)

    def stop(self) -> None:
        self.cluster.stop_member(self.member)


def _pilothouse(*args: str) -> list[str]:
    return [sys.executable, "-m", "pilothouse", *args]


class ChaosCluster:
    """API server, scheduler, controller manager and ``agents`` simulated-node agents (``nodes``
    nodes each), over SQLite or an ``etcd_members``-member etcd, under ``base``."""

    def __init__(self, base: Path, *, agents: int = 2, nodes: int = 5, etcd_members: int = 0,
                 real: RealNode | None = None) -> None:
        self.base = base
        base.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.etcd = EtcdCluster(etcd_members, base_dir=base / "etcd", heartbeat_ms=50, election_ms=500) \
            if etcd_members else None
        store = ("--datastore-endpoint", self.etcd.endpoint) if self.etcd else ()
        self.server = Component("apiserver", _pilothouse(
            "server", "--data-dir", str(base / "server"), "--port", str(self.port), *OPEN_FLAGS,
            "--disable", "scheduler,controller-manager", *store), base / "apiserver.log", ready=self._server_ready)
        election = ("--leader-elect-lease-duration", str(LEASE_SECONDS),
                    "--leader-elect-renew-deadline", str(LEASE_SECONDS * 0.75), "--leader-elect-retry-period", "0.5")
        self.scheduler = Component("scheduler", _pilothouse(
            "scheduler", "--server", self.url, "--secure-port", str(free_port()), *election), base / "scheduler.log")
        self.controller_manager = Component("controller-manager", _pilothouse(
            "controller-manager", "--server", self.url, "--secure-port", str(free_port()),
            "--use-service-account-credentials", "false", *election), base / "controller-manager.log")
        self.agents = [Component(f"agent-{i}", _pilothouse(
            "agent", "--server", self.url, "--node-name", f"sim{i}", "--simulate", str(nodes),
            "--root-dir", str(base / f"agent-{i}"), "--port", str(free_port())), base / f"agent-{i}.log")
            for i in range(agents)]
        self.real = real
        self.real_components = [real.component, Component("agent-real", _pilothouse(
            "agent", "--server", self.url, *real.agent_args(), "--root-dir", str(base / "agent-real"),
            "--port", str(free_port())), base / "agent-real.log")] if real else []
        self.etcd_members = [_EtcdComponent(self.etcd, m, base / "etcd" / f"{m.name}.log")
                             for m in self.etcd.members] if self.etcd else []
        #: Held while the chaos has a victim down, so the harness's supervisor does not restart it early.
        self.lock = asyncio.Lock()
        self.node_names = [f"sim{i}-{n:04d}" for i in range(agents) for n in range(nodes)]
        if real is not None:
            from tests.chaos.realnode import REAL_NODE

            self.node_names.append(REAL_NODE)

    def _server_ready(self, component: Component) -> None:
        assert component.process is not None
        wait_healthy(self.url, component.process, timeout=60)

    @property
    def components(self) -> list[Component]:
        """Every process, in start order."""
        return [*self.etcd_members, self.server, self.scheduler, self.controller_manager, *self.agents,
                *self.real_components]

    @property
    def victims(self) -> list[Component]:
        return self.components

    def start(self) -> ChaosCluster:
        if self.etcd is not None:
            self.etcd.start()
        for component in self.components[len(self.etcd_members):]:
            component.start()
        self.wait_nodes_ready()
        return self

    def wait_nodes_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(self.url + "/api/v1/nodes", timeout=5) as response:
                    nodes = json.loads(response.read())["items"]
                ready = {n["metadata"]["name"] for n in nodes if any(
                    c["type"] == "Ready" and c["status"] == "True" for c in n["status"].get("conditions") or ())}
                if ready >= set(self.node_names):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"nodes not Ready in {timeout:g}s")
            time.sleep(0.5)

    def stop(self) -> None:
        for component in reversed(self.components[len(self.etcd_members):]):
            component.stop()
        if self.etcd is not None:
            self.etcd.stop()

    def logs(self) -> str:
        return "\n".join(f"--- {c.name} (restarts {c.restarts}) ---\n{c.log_tail(1500)}"
                         for c in self.components if c.log_path.exists())

