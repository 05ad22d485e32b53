"""A ContainerRuntime without containers: pods "run" in memory.

For scale tests (thousands of nodes and pods on one machine) and for exercising the pod workers
without an engine. Containers start instantly and run until stopped; ``command`` of the form
``["exit", "N"]`` makes one exit with code N at once, so restart logic can be driven too.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from pilothouse.components.agent.runtime.interface import (
    ContainerEvent,
    ContainerNotFound,
    ContainerSpec,
    ContainerState,
    ContainerStats,
    ExecSession,
)

__all__ = ["SimulatedRuntime"]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class SimulatedRuntime:
    def __init__(self, subnet: str = "10.244") -> None:
        self.subnet = subnet
        self.containers: dict[str, tuple[ContainerSpec, ContainerState]] = {}
        self._ids = itertools.count(1)
        self._ips = itertools.count(2)
        self._subscribers: list[asyncio.Queue[ContainerEvent]] = []

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def info(self) -> dict[str, str]:
        return {"name": "simulated", "version": "0.1.0", "kernelVersion": "simulated", "operatingSystem": "linux",
                "osImage": "pilothouse simulated node", "architecture": "amd64"}

    async def ensure_pause_image(self) -> str:
        return "sha256:simulated-pause"

    async def image_id(self, image: str) -> str | None:
        return f"sha256:{abs(hash(image)):064x}"[:71]

    async def image_size(self, image: str) -> int:
        return 0

    async def pull_image(self, image: str, auth: dict[str, str] | None) -> str:
        return f"sha256:{abs(hash(image)):064x}"[:71]

    def next_ip(self) -> str:
        n = next(self._ips)
        return f"{self.subnet}.{n // 250 % 250}.{n % 250 + 2}"

    async def create_container(self, spec: ContainerSpec) -> str:
        cid = f"{next(self._ids):064x}"
        state = ContainerState(id=cid, name=spec.name, labels=dict(spec.labels), image=spec.image,
                               image_id=await self.pull_image(spec.image, None), state="created")
        if spec.sandbox_id is None:
            state.ip = self.next_ip()
        else:
            state.ip = self.containers[spec.sandbox_id][1].ip if spec.sandbox_id in self.containers else ""
        self.containers[cid] = (spec, state)
        return cid

    def _get(self, container_id: str) -> tuple[ContainerSpec, ContainerState]:
        found = self.containers.get(container_id)
        if found is None:
            raise ContainerNotFound(container_id)
        return found

    def _emit(self, state: ContainerState, action: str) -> None:
        event = ContainerEvent(state.id, action, dict(state.labels),
                               state.exit_code if action == "die" else None)
        for queue in self._subscribers:
            queue.put_nowait(event)

    async def start_container(self, container_id: str) -> None:
        spec, state = self._get(container_id)
        state.state, state.started_at, state.finished_at = "running", _now(), ""
        self._emit(state, "start")
        if spec.command and spec.command[0] == "exit":
            self._exit(state, int(spec.command[1]) if len(spec.command) > 1 else 0)

    def _exit(self, state: ContainerState, code: int) -> None:
        if state.state != "running":
            return
        state.state, state.exit_code, state.finished_at = "exited", code, _now()
        self._emit(state, "die")

    async def stop_container(self, container_id: str, timeout: float) -> None:
        self._exit(self._get(container_id)[1], 143)

    async def kill_container(self, container_id: str, signal: str = "SIGKILL") -> None:
        self._exit(self._get(container_id)[1], 137 if signal in ("SIGKILL", "KILL", "9") else 143)

    async def remove_container(self, container_id: str) -> None:
        self.containers.pop(container_id, None)

    async def list_containers(self, labels: dict[str, str] | None = None) -> list[ContainerState]:
        wanted = (labels or {}).items()
        return [state for _, state in self.containers.values() if wanted <= state.labels.items()]

    async def inspect_container(self, container_id: str) -> ContainerState:
        return self._get(container_id)[1]

    async def stats(self, container_id: str) -> ContainerStats:
        """Nothing runs: no CPU, no memory."""
        self._get(container_id)
        return ContainerStats(cpu_seconds=0.0, memory_working_set=0, timestamp=time.time())

    async def logs(self, container_id: str, *, follow: bool = False, tail: int | None = None,
                   since: float | None = None, timestamps: bool = False) -> AsyncIterator[bytes]:
        self._get(container_id)
        if False:  # pragma: no cover - an empty async generator
            yield b""

    async def exec(self, container_id: str, command: list[str], *, tty: bool, stdin: bool,
                   stdout: bool = True, stderr: bool = True) -> ExecSession:
        raise NotImplementedError("the simulated runtime cannot exec")

    async def attach(self, container_id: str, *, stdin: bool, tty: bool) -> ExecSession:
        raise NotImplementedError("the simulated runtime cannot attach")

    async def events(self) -> AsyncIterator[ContainerEvent]:
        queue: asyncio.Queue[ContainerEvent] = asyncio.Queue()
        self._subscribers.append(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._subscribers.remove(queue)
