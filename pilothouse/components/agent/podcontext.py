"""What every piece of a pod's worker shares: the node's context, one sync's record, container labels.

``PodContext`` is the node (engine, API, images, network), the same for every pod. ``SyncRound`` is
what one sync of one pod did and wants next: the pieces of the worker (sandbox, containers, volumes)
record in it instead of in flags of the worker, and it ends with the sync.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from pilothouse.client.rest import APIClient, resource
from pilothouse.components.agent.backoff import Backoff
from pilothouse.components.agent.images import ImageManager
from pilothouse.components.agent.podevents import container_reference, pod_reference
from pilothouse.components.agent.podnet import PodNetwork
from pilothouse.components.agent.runtime.interface import (
    LABEL_CONTAINER_NAME,
    LABEL_POD_NAME,
    LABEL_POD_NAMESPACE,
    LABEL_POD_UID,
    LABEL_ROLE,
    ContainerRuntime,
)
from pilothouse.components.agent.satoken import TokenManager
from pilothouse.components.agent.status import LABEL_RESTART_COUNT
from pilothouse.machinery.meta import Object

__all__ = ["LABEL_AGENT", "MIN_GRACE", "PODS", "PodContext", "SyncRound", "container_labels", "no_fetch"]

PODS = resource("", "v1", "pods")
MIN_GRACE = 2  # the kubelet's minimumGracePeriodInSeconds

#: Names the agent instance that created a container (see ``PodContext.agent_id``).
LABEL_AGENT = "io.pilothouse.agent"


@dataclass
class PodContext:
    """What every worker shares: the engine, the API, the node."""

    client: APIClient
    runtime: ContainerRuntime
    images: ImageManager
    node_name: str
    host_ip: str
    root_dir: Path
    scheme: str  # containerID scheme: docker | podman | simulated
    allocatable: dict[str, str] = field(default_factory=dict)
    crash_backoff: Backoff = field(default_factory=lambda: Backoff(10.0, 300.0))
    fetch: Callable[[str, str, str], Awaitable[Object | None]] | None = None
    #: records an Event (reference, type, reason, message): the agent's EventRecorder
    event: Callable[[Object, str, str, str], None] = lambda *args: None
    #: the agent wires pod sandboxes itself (None: the engine's networking)
    network: PodNetwork | None = None
    #: uids of the pods this agent had containers for when it started (None: unknown); a pod
    #: not among them has no containers the worker did not create itself
    engine_uids: set[str] | None = None
    #: service-account tokens for projected volumes (TokenRequest, refreshed at 80% of their life)
    tokens: TokenManager | None = None
    #: kubelet's --cluster-dns (empty: ClusterFirst falls back to Default), --cluster-domain, --resolv-conf
    cluster_dns: list[str] = field(default_factory=list)
    cluster_domain: str = "cluster.local"
    resolv_conf: str = "/etc/resolv.conf"

    @property
    def agent_id(self) -> str:
        """Which agent owns a container: several agents (clusters side by side, or simulated
        hosts) may share one engine, and each may only clean up its own containers."""
        return f"{self.node_name}@{self.root_dir}"

    def pod_event(self, pod: Object, event_type: str, reason: str, message: str) -> None:
        self.event(pod_reference(pod), event_type, reason, message)

    def container_event(self, pod: Object, container: Object, event_type: str, reason: str, message: str) -> None:
        self.event(container_reference(pod, str(container.get("name", ""))), event_type, reason, message)


@dataclass
class SyncRound:
    """What one sync did and asks for next."""

    #: containers this sync started (the worker inspects just those instead of listing the pod again)
    started: list[str] = field(default_factory=list)
    #: anything else changed in the engine (stopped, removed, a new sandbox): list the pod again
    changed: bool = False
    #: seconds until the next sync unless something wakes the worker first (the relist period at most)
    next_wake: float = 10.0

    def wake_in(self, seconds: float) -> None:
        self.next_wake = max(0.05, min(self.next_wake, seconds))


def container_labels(ctx: PodContext, pod: Object, container: str, role: str, attempt: int) -> dict[str, str]:
    """The labels by which a restarted agent finds (adopts) a pod's containers and their attempts."""
    metadata = pod["metadata"]
    return {LABEL_POD_UID: metadata["uid"], LABEL_POD_NAME: metadata["name"],
            LABEL_POD_NAMESPACE: metadata.get("namespace", "default"), LABEL_CONTAINER_NAME: container,
            LABEL_ROLE: role, LABEL_RESTART_COUNT: str(attempt), LABEL_AGENT: ctx.agent_id}


async def no_fetch(kind: str, namespace: str, name: str) -> Object | None:
    return None
