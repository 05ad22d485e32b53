"""Running the control-plane components next to the API server, as child processes.

``pilothouse server`` embeds the scheduler and the controller manager the way k3s embeds them, but
as separate processes: Python runs one thread of bytecode per process, and the API server, the
scheduler and the controllers each want a core when the cluster is busy. Each child talks to the API
server over loopback HTTP exactly as it would from another host. A child that dies is restarted
with backoff (systemd's ``Restart=always`` in the seed, here in-process).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pilothouse.apiserver.serve import RunningServer, ServerConfig

__all__ = ["COMPONENT_USERS", "SUPERVISOR_PID_ENV", "Backoff", "Child", "Supervisor", "component_args",
           "component_connection", "exit_with_supervisor"]

log = logging.getLogger("pilothouse.supervisor")

# --- children die with the supervisor ---
# A SIGKILLed or crashed ``pilothouse server`` cannot stop its children, and an orphaned scheduler
# or controller manager would keep campaigning for (or holding) its lease against a dead API server.
# Each child asks the kernel for SIGTERM when its parent dies (PR_SET_PDEATHSIG survives exec; it
# fires when the forking thread exits, and asyncio forks from the event-loop thread, which lives as
# long as the server). The supervisor's pid in the environment closes the race of a parent that died
# before the child made the call.
SUPERVISOR_PID_ENV = "PILOTHOUSE_SUPERVISOR_PID"
_PR_SET_PDEATHSIG = 1


def exit_with_supervisor() -> None:
    """In a supervised child (no-op otherwise): be sent SIGTERM when the supervisor dies."""
    expected = os.environ.get(SUPERVISOR_PID_ENV)
    if not expected:
        return
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            log.warning("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
    if os.getppid() != int(expected):
        sys.exit("supervisor exited before this component started")
# --- end ---


class Backoff:
    """The delay before restarting something that exited (systemd's ``Restart=always`` with a
    growing ``RestartSec``): 1 s, doubling to 30 s; afresh once it ran for a minute before failing."""

    def __init__(self, first: float = 1.0, limit: float = 30.0, healthy_after: float = 60.0) -> None:
        self.first, self.limit, self.healthy_after = first, limit, healthy_after
        self.delay = first
        self.started_at = 0.0

    def started(self) -> None:
        self.started_at = time.monotonic()

    def exited(self) -> float:
        """How long to wait before the next start."""
        if time.monotonic() - self.started_at > self.healthy_after:
            self.delay = self.first
        delay, self.delay = self.delay, min(self.delay * 2, self.limit)
        return delay


@dataclass
class Child:
    name: str
    args: list[str]
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0
    started_at: float = field(default=0.0)


class Supervisor:
    def __init__(self) -> None:
        self.children: list[Child] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    def add(self, name: str, *args: str) -> None:
        # -P when this process has it: the children import the same pilothouse (the benchmarks run
        # a source tree from PYTHONPATH; without -P, ``-m`` puts the working directory first).
        safe_path = ["-P"] if sys.flags.safe_path else []
        self.children.append(Child(name, [sys.executable, *safe_path, "-m", "pilothouse", *args]))

    async def start(self) -> None:
        for child in self.children:
            self._tasks.append(asyncio.create_task(self._keep_running(child), name=f"supervise-{child.name}"))

    async def _keep_running(self, child: Child) -> None:
        backoff = Backoff()
        while not self._stopping:
            backoff.started()
            child.started_at = backoff.started_at
            child.process = await asyncio.create_subprocess_exec(
                *child.args, env={**os.environ, SUPERVISOR_PID_ENV: str(os.getpid())})
            log.info("started %s (pid %d)", child.name, child.process.pid)
            code = await child.process.wait()
            if self._stopping:
                return
            delay = backoff.exited()
            log.warning("%s exited with %s; restarting in %.0fs", child.name, code, delay)
            child.restarts += 1
            await asyncio.sleep(delay)

    async def stop(self, timeout: float = 10.0) -> None:
        self._stopping = True
        for child in self.children:
            if child.process is not None and child.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    child.process.send_signal(signal.SIGTERM)
        for child in self.children:
            if child.process is None:
                continue
            try:
                await asyncio.wait_for(child.process.wait(), timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    child.process.kill()
                await child.process.wait()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def component_args(component: str, config: ServerConfig) -> list[str]:
    """Flags an embedded component takes from the server's configuration: the controller manager
    publishes the cluster CA (``<data-dir>/pki/ca.crt``) as every namespace's kube-root-ca.crt."""
    if component == "controller-manager":
        pki = config.data_dir / "pki"
        return ["--root-ca-file", str(pki / "ca.crt"),
                # The CSR signer signs with the cluster CA, as kubeadm passes it to kube-controller-manager.
                "--cluster-signing-cert-file", str(pki / "ca.crt"), "--cluster-signing-key-file", str(pki / "ca.key")]
    return []


#: The user each embedded component is, as kubeadm's scheduler.conf and controller-manager.conf name it.
COMPONENT_USERS = {"scheduler": "system:kube-scheduler", "controller-manager": "system:kube-controller-manager"}


def component_connection(running: RunningServer, component: str, user: str = "",
                         groups: tuple[str, ...] = ()) -> list[str]:
    """The flags that point a child component at ``running``: a kubeconfig with its own client
    certificate over HTTPS, the URL over plain HTTP."""
    if running.pki is None:
        return ["--server", running.url]
    path = running.component_kubeconfig(component, user or COMPONENT_USERS[component], groups)
    return ["--kubeconfig", str(path)]
