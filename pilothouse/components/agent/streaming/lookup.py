"""How the streaming server finds what a request names: a pod's container, a pod's IP.

The server gets these from whoever knows the pods (the agent's pod manager) through the small
:class:`PodLookup` protocol, so it depends on nothing else of the agent. :class:`RuntimeLabelLookup`
answers from the engine alone, by the labels every pod container carries (see
``runtime/interface.py``): good enough for an agent that has no better index, and for tests.

A lookup that knows *why* there is nothing to stream (pod unknown, container still waiting) raises
:class:`StreamTargetError` with kubelet's message and HTTP status; returning None makes the server use
kubelet's generic messages.
"""

from __future__ import annotations

from typing import Protocol

from pilothouse.components.agent.runtime.interface import (
    LABEL_CONTAINER_NAME,
    LABEL_POD_NAME,
    LABEL_POD_NAMESPACE,
    LABEL_ROLE,
    ContainerRuntime,
    ContainerState,
)

__all__ = ["PodLookup", "RuntimeLabelLookup", "StreamTargetError"]


class StreamTargetError(Exception):
    """Nothing to stream from, with the HTTP status and text kubelet would answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class PodLookup(Protocol):
    async def container_id(self, namespace: str, pod: str, container: str, previous: bool = False) -> str | None:
        """The engine id of the pod's container: the current instance, or with ``previous`` the last
        instance that exited before it. None when there is none."""
        ...

    async def pod_ip(self, namespace: str, pod: str) -> str | None:
        """The pod's IP (its sandbox's address on the engine network), None if it has no sandbox."""
        ...


def _age_key(state: ContainerState) -> tuple[str, str]:
    return (state.started_at or "", state.finished_at or "")


class RuntimeLabelLookup:
    """:class:`PodLookup` from the engine's labels: newest instance is current, the one before it previous."""

    def __init__(self, runtime: ContainerRuntime) -> None:
        self.runtime = runtime

    async def _instances(self, namespace: str, pod: str, role: str, container: str | None) -> list[ContainerState]:
        labels = {LABEL_POD_NAMESPACE: namespace, LABEL_POD_NAME: pod}
        if container is not None:
            labels[LABEL_CONTAINER_NAME] = container
        states = await self.runtime.list_containers(labels)
        # The role label is ours; containers created without it count as app containers.
        found = [s for s in states if s.labels.get(LABEL_ROLE, "container") == role]
        # Running first, then newest: a restarted container's fresh instance may not have started yet.
        return sorted(found, key=lambda s: (s.state == "running", *_age_key(s)), reverse=True)

    async def container_id(self, namespace: str, pod: str, container: str, previous: bool = False) -> str | None:
        instances = await self._instances(namespace, pod, "container", container)
        if not previous:
            return instances[0].id if instances else None
        if len(instances) < 2:
            return None  # a single run has no "last termination state", even once it exited
        if instances[0].state == "exited":
            # Between restarts (kubelet: state waiting, lastState terminated = the newest run).
            return instances[0].id
        exited = [s for s in instances[1:] if s.state == "exited"]
        return exited[0].id if exited else None

    async def pod_ip(self, namespace: str, pod: str) -> str | None:
        sandboxes = await self._instances(namespace, pod, "sandbox", None)
        for sandbox in sandboxes:
            if sandbox.state == "running":
                if sandbox.ip:
                    return sandbox.ip
                state = await self.runtime.inspect_container(sandbox.id)
                # No address of its own: a hostNetwork pod, whose ports are the host's.
                return state.ip or "127.0.0.1"
        return None
