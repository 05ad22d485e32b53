"""What the engine has of one pod: its sandbox and each container's attempts, newest first.

The kubelet asks its runtime cache (GetPodStatus) at each sync; this is that for one pod. The
engine's label-filtered listing walks every container on the node (about 19 ms of podman's CPU with
100 containers, against 3 ms to inspect one): a pod's worker creates its containers itself, so after
one listing the observer inspects the ids it knows instead, until an error makes it list again.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from pilothouse.components.agent.runtime.docker import oom_killed_ids
from pilothouse.components.agent.runtime.interface import (
    LABEL_CONTAINER_NAME,
    LABEL_POD_UID,
    LABEL_ROLE,
    ContainerNotFound,
    ContainerRuntime,
    ContainerState,
)
from pilothouse.components.agent.status import LABEL_RESTART_COUNT
from pilothouse.machinery import meta

__all__ = ["Observation", "PodObserver", "latest_first"]


def latest_first(states: list[ContainerState]) -> list[ContainerState]:
    return sorted(states, key=lambda s: (int(s.labels.get(LABEL_RESTART_COUNT, "0") or 0), s.started_at),
                  reverse=True)


@dataclass
class Observation:
    sandbox: ContainerState | None = None  # the newest sandbox attempt
    #: container name -> attempts, newest first
    attempts: dict[str, list[ContainerState]] = field(default_factory=dict)
    states: list[ContainerState] = field(default_factory=list)  # everything, sandboxes included

    def add_started(self, state: ContainerState) -> None:
        """A container this sync started, as the newest attempt of its name."""
        name = state.labels.get(LABEL_CONTAINER_NAME, "")
        self.attempts[name] = [state, *self.attempts.get(name, [])]


class PodObserver:
    def __init__(self, runtime: ContainerRuntime, uid: str, *, knows_all: bool) -> None:
        self.runtime = runtime
        self.uid = uid
        #: ids of this pod's containers, as far as they are all known (None: list them)
        self._known: set[str] | None = set() if knows_all else None
        #: the last observation (the metrics and /metrics/resource read it)
        self.last = Observation()

    async def containers(self) -> list[ContainerState]:
        """This pod's containers: listed from the engine once, then inspected by id."""
        if self._known is None:
            states = await self.runtime.list_containers({LABEL_POD_UID: self.uid})
        else:
            found = await asyncio.gather(*(self._inspect_or_none(i) for i in sorted(self._known)))
            states = [s for s in found if s is not None]
        self._known = {s.id for s in states}
        return states

    async def _inspect_or_none(self, container_id: str) -> ContainerState | None:
        try:
            return await self.runtime.inspect_container(container_id)
        except ContainerNotFound:
            return None

    def created(self, container_id: str) -> None:
        if self._known is not None:
            self._known.add(container_id)

    def forget(self) -> None:
        """List from the engine next time (after an error a container may exist that was not noted)."""
        self._known = None

    async def observe(self) -> Observation:
        states = await self.containers()
        sandboxes = latest_first([s for s in states if s.labels.get(LABEL_ROLE) == "sandbox"])
        attempts: dict[str, list[ContainerState]] = {}
        for state in states:
            if state.labels.get(LABEL_ROLE) != "sandbox":
                attempts.setdefault(state.labels.get(LABEL_CONTAINER_NAME, ""), []).append(state)
        oom: set[str] | None = None
        for name, items in attempts.items():
            attempts[name] = latest_first(items)
            for state in items:
                # podman reports OOMKilled false: ask the kernel log for SIGKILLed containers
                if state.state == "exited" and state.exit_code == 137 and not state.oom_killed:
                    if oom is None:
                        oom = await asyncio.to_thread(oom_killed_ids)
                    state.oom_killed = state.id in oom
        self.last = Observation(sandboxes[0] if sandboxes else None, attempts, states)
        return self.last

    def running_containers(self) -> list[tuple[str, str, float]]:
        """(name, engine id, start time in epoch seconds) of each running container (/metrics/resource)."""
        out = []
        for name, attempts in self.last.attempts.items():
            if attempts and attempts[0].state == "running":
                started = meta.parse_time(attempts[0].started_at)
                out.append((name, attempts[0].id, started.timestamp() if started else 0.0))
        return out

    def container_states(self) -> list[str]:
        """The engine state of each container's latest attempt (kubelet_running_containers)."""
        return [attempts[0].state for attempts in self.last.attempts.values() if attempts]
