"""What the node agent needs from a container engine, engine-neutral.

Shaped by the Docker Engine API (which podman's service also serves), because that is the engine
we drive; the simulated runtime implements the same protocol without containers. A pod is one
*sandbox* container (holding the pod's network namespace, like Kubernetes' pause container) plus
its app and init containers joined to that namespace. Every container carries labels naming its
pod (uid, namespace, name) and container, so that after a restart the agent adopts what runs
instead of starting it again.

Errors::

    RuntimeError_           any engine failure (message from the engine)
      ImagePullError        pull failed (bad credentials, unknown image): ErrImagePull
      ContainerNotFound     the id is gone
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

__all__ = [
    "LABEL_CONTAINER_NAME",
    "LABEL_POD_IP",
    "LABEL_POD_NAME",
    "LABEL_POD_NAMESPACE",
    "LABEL_POD_UID",
    "LABEL_ROLE",
    "ContainerEvent",
    "ContainerNotFound",
    "ContainerRuntime",
    "ContainerSpec",
    "ContainerState",
    "ContainerStats",
    "ExecSession",
    "ImagePullError",
    "Mount",
    "RuntimeError_",
]

LABEL_POD_UID = "io.kubernetes.pod.uid"
LABEL_POD_NAME = "io.kubernetes.pod.name"
LABEL_POD_NAMESPACE = "io.kubernetes.pod.namespace"
LABEL_CONTAINER_NAME = "io.kubernetes.container.name"
#: "sandbox" or "container"
LABEL_ROLE = "io.pilothouse.role"
#: On a sandbox the agent wired itself (see ``agent.podnet``): its address, which the engine does not know.
LABEL_POD_IP = "io.pilothouse.pod-ip"


class RuntimeError_(Exception):
    pass


class ImagePullError(RuntimeError_):
    pass


class ContainerNotFound(RuntimeError_):
    pass


@dataclass(frozen=True)
class Mount:
    source: str  # a host path
    target: str
    read_only: bool = False


@dataclass
class ContainerSpec:
    name: str  # engine-level container name (unique on the node)
    image: str
    labels: dict[str, str]
    command: list[str] | None = None  # entrypoint override (Kubernetes "command")
    args: list[str] | None = None  # cmd override (Kubernetes "args")
    env: dict[str, str] = field(default_factory=dict)
    working_dir: str | None = None
    mounts: list[Mount] = field(default_factory=list)
    #: Join this sandbox container's network (and IPC/UTS) namespace; None for the sandbox itself.
    sandbox_id: str | None = None
    hostname: str | None = None
    memory_limit: int | None = None  # bytes
    cpu_quota_millis: int | None = None  # Kubernetes milli-CPUs as a CFS quota
    cpu_shares: int | None = None
    tty: bool = False
    stdin: bool = False
    stdin_once: bool = False
    user: str | None = None
    host_network: bool = False
    #: No networking from the engine (an empty network namespace): the agent wires the sandbox itself.
    no_network: bool = False
    #: Ports published on the host (hostPort), on the sandbox only: (container port, host port, protocol).
    host_ports: list[tuple[int, int, str]] = field(default_factory=list)


@dataclass
class ContainerState:
    id: str
    name: str
    labels: dict[str, str]
    image: str
    image_id: str
    state: str  # created | running | exited | paused | unknown
    exit_code: int = 0
    started_at: str = ""  # RFC 3339
    finished_at: str = ""
    oom_killed: bool = False
    error: str = ""
    ip: str = ""  # the sandbox's IP: from the engine's network, or LABEL_POD_IP
    pid: int = 0


@dataclass(frozen=True)
class ContainerStats:
    """A container's cgroup figures, as the kubelet's resource metrics take them."""

    cpu_seconds: float  # cumulative CPU time
    memory_working_set: int  # bytes: usage less inactive file pages
    timestamp: float  # when the engine read them (epoch seconds)


@dataclass(frozen=True)
class ContainerEvent:
    id: str
    action: str  # start | die | oom | destroy ...
    labels: dict[str, str]
    exit_code: int | None = None


class ExecSession(Protocol):
    """A running exec or attach: bytes in, bytes out, then an exit code."""

    async def write_stdin(self, data: bytes) -> None: ...
    async def close_stdin(self) -> None: ...
    def output(self) -> AsyncIterator[tuple[int, bytes]]:
        """(stream, data) pairs: 1 stdout, 2 stderr (tty: all on 1), until the process ends."""
        ...
    async def resize(self, width: int, height: int) -> None: ...
    async def exit_code(self) -> int | None: ...
    async def close(self) -> None: ...


class ContainerRuntime(Protocol):
    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def info(self) -> dict[str, str]:
        """Engine name and version, OS, kernel: for the Node's nodeInfo."""
        ...

    async def image_id(self, image: str) -> str | None:
        """The local image's id, or None if absent."""
        ...

    async def image_size(self, image: str) -> int:
        """The local image's size in bytes (0 if unknown): the kubelet's Pulled event names it."""
        ...

    async def pull_image(self, image: str, auth: dict[str, str] | None) -> str:
        """Pull (with registry credentials ``{"username","password","serveraddress"}``); the image id."""
        ...

    async def create_container(self, spec: ContainerSpec) -> str: ...
    async def start_container(self, container_id: str) -> None: ...
    async def stop_container(self, container_id: str, timeout: float) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds."""
        ...

    async def kill_container(self, container_id: str, signal: str = "SIGKILL") -> None: ...
    async def remove_container(self, container_id: str) -> None: ...
    async def list_containers(self, labels: dict[str, str] | None = None) -> list[ContainerState]:
        """All containers (running or not) carrying these labels."""
        ...

    async def inspect_container(self, container_id: str) -> ContainerState: ...
    async def stats(self, container_id: str) -> ContainerStats:
        """One reading of a running container's CPU and memory; ContainerNotFound if gone."""
        ...

    def logs(self, container_id: str, *, follow: bool = False, tail: int | None = None,
             since: float | None = None, timestamps: bool = False) -> AsyncIterator[bytes]: ...
    async def exec(self, container_id: str, command: list[str], *, tty: bool, stdin: bool,
                   stdout: bool = True, stderr: bool = True) -> ExecSession: ...
    async def attach(self, container_id: str, *, stdin: bool, tty: bool) -> ExecSession: ...
    def events(self) -> AsyncIterator[ContainerEvent]: ...
