"""Benchmark processes that never outlive the benchmark, and their RSS.

A benchmark that starts ``pilothouse server`` (which supervises a scheduler and a controller
manager) and agents must stop all of them however it ends: finished, timed out, interrupted (SIGINT)
or terminated (SIGTERM). Each child runs in its own session, hence its own process group, so its
children go with it; on exit every group gets SIGTERM, then SIGKILL after a grace period. SIGTERM to
the benchmark itself becomes SystemExit so the ``finally`` runs (Python's default would just die).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from types import FrameType, TracebackType
from typing import IO, Any

__all__ = ["ProcessGroup", "rss_bytes"]


def rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _exit_on_term(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


class ProcessGroup:
    """``with ProcessGroup() as group: group.start([...])``: every started process group is killed
    when the block exits, by any route."""

    def __init__(self, grace: float = 15.0) -> None:
        self.grace = grace
        self.processes: list[subprocess.Popen[bytes]] = []
        self._previous: Any = None

    def start(self, argv: Sequence[str], *, stdout: IO[bytes] | int | None = None,
              env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(list(argv), stdout=stdout, stderr=subprocess.STDOUT, env=env,
                                   start_new_session=True)
        self.processes.append(process)
        return process

    def __enter__(self) -> ProcessGroup:
        self._previous = signal.signal(signal.SIGTERM, _exit_on_term)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()
        signal.signal(signal.SIGTERM, self._previous)

    def stop(self) -> None:
        """SIGTERM every group (agents first, the server last), wait, then SIGKILL what is left."""
        for process in reversed(self.processes):
            self._signal(process, signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        for process in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(max(0.1, deadline - time.monotonic()))
        for process in self.processes:
            # The group too: a supervised child may outlive its parent.
            self._signal(process, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(5)

    @staticmethod
    def _signal(process: subprocess.Popen[bytes], signum: int) -> None:
        try:
            os.killpg(process.pid, signum)
        except ProcessLookupError:
            pass
        except PermissionError:  # pragma: no cover - not ours
            print(f"cannot signal process group {process.pid}", file=sys.stderr)
