"""Per-pod workers: drive each pod's containers to its spec and report its status.

One asyncio task per pod (the kubelet's pod workers), woken by the pod's informer events, by the
engine's container events (a death is seen at once) and by a periodic relist. A sync reads the
engine's containers for the pod (labels), then: sandbox, init containers in order, app containers
(restarted per ``restartPolicy`` with the crash back-off), probes, and finally the status through
``pods/status``. A pod with ``deletionTimestamp`` is stopped gracefully (preStop, SIGTERM, grace,
SIGKILL) and then deleted from the API with grace 0, which is what finally removes it.

Containers are labelled with the pod and container names and their attempt number, so a restarted
agent adopts what runs (same ids, restartCount continues) instead of starting anything again. The
newest exited attempt of each container is kept (``kubectl logs --previous``), older ones removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pilothouse.client import errors
from pilothouse.client.rest import APIClient, resource
from pilothouse.components.agent.backoff import Backoff, format_duration
from pilothouse.components.agent.dnsconfig import host_resolv_conf, name_files, sandbox_hostname
from pilothouse.components.agent.env import ConfigError, expand, make_environment
from pilothouse.components.agent.images import ImageManager, ImagePullFailure
from pilothouse.components.agent.metrics import POD_STARTS
from pilothouse.components.agent.podevents import container_reference, format_pod, pod_reference
from pilothouse.components.agent.podnet import PodNetwork, PodNetworkError
from pilothouse.components.agent.probes import ContainerProbes, run_handler
from pilothouse.components.agent.runtime.docker import PAUSE_COMMAND, PAUSE_IMAGE, oom_killed_ids
from pilothouse.components.agent.runtime.interface import (
    LABEL_CONTAINER_NAME,
    LABEL_POD_IP,
    LABEL_POD_NAME,
    LABEL_POD_NAMESPACE,
    LABEL_POD_UID,
    LABEL_ROLE,
    ContainerNotFound,
    ContainerRuntime,
    ContainerSpec,
    ContainerState,
    Mount,
    RuntimeError_,
)
from pilothouse.components.agent.satoken import TokenManager, requester_for
from pilothouse.components.agent.status import LABEL_RESTART_COUNT, PodObservation, compute_pod_status, status_patch
from pilothouse.components.agent.volumes import (
    VolumeError,
    container_mounts,
    pod_dir,
    prepare_volumes,
    remove_pod_dir,
)
from pilothouse.machinery import meta
from pilothouse.machinery.kinds.quantity import parse_quantity
from pilothouse.machinery.meta import Object

__all__ = ["PodContext", "PodWorker", "crash_message"]

log = logging.getLogger("pilothouse.agent.pods")

PODS = resource("", "v1", "pods")
MIN_GRACE = 2  # the kubelet's minimumGracePeriodInSeconds
SANDBOX = "POD"


def crash_message(delay: float, container: str, pod: Object) -> str:
    metadata = pod["metadata"]
    return (f"back-off {format_duration(delay)} restarting failed container={container} "
            f"pod={metadata['name']}_{metadata.get('namespace', 'default')}({metadata.get('uid', '')})")


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
    #: posts a status for a static pod's mirror (the static manager maps uid -> mirror name)
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


def _latest_first(states: list[ContainerState]) -> list[ContainerState]:
    return sorted(states, key=lambda s: (int(s.labels.get(LABEL_RESTART_COUNT, "0") or 0), s.started_at),
                  reverse=True)


def normalize_image(reference: str) -> str:
    """One spelling per image, so that ``busybox``, ``docker.io/library/busybox:latest`` and the
    engine's report of either compare equal (a spec change is a different image, not a spelling)."""
    name, digest = [*reference.split("@", 1), ""][:2]
    last = name.rsplit("/", 1)[-1]
    if ":" not in last and not digest:
        name += ":latest"
    for prefix in ("docker.io/library/", "docker.io/", "index.docker.io/library/"):
        if name.startswith(prefix):
            name = name[len(prefix):]
            break
    return name + (f"@{digest}" if digest else "")


def _wanted(pod: Object) -> tuple[Any, ...]:
    metadata = pod.get("metadata") or {}
    return (pod.get("spec"), metadata.get("deletionTimestamp"), metadata.get("deletionGracePeriodSeconds"),
            metadata.get("labels"), metadata.get("annotations"))


class PodWorker:
    def __init__(self, ctx: PodContext, pod: Object, *, static: bool = False,
                 on_finished: Callable[[str], None] | None = None) -> None:
        self.ctx = ctx
        self.pod = pod
        self.uid: str = pod["metadata"]["uid"]
        self.static = static
        self.deleted = False  # the API object (or static manifest) is gone
        self.done = False
        self.kick_event = asyncio.Event()
        self.waiting: dict[str, tuple[str, str]] = {}
        self.probes: dict[str, ContainerProbes] = {}  # by container id
        #: the attempts of each container as the last ``_observe`` listed them
        self._observed_attempts: dict[str, list[ContainerState]] = {}
        #: what the current sync changed: containers started, and whether anything else changed
        self._started_now: list[str] = []
        self._other_change = False
        self.terminal_phase = ""
        #: whether the pod's sandbox ran at the last report (kubelet_running_pods)
        self.sandbox_running = False
        self._volumes: dict[str, Path] | None = None
        self._task: asyncio.Task[None] | None = None
        self._on_finished = on_finished
        self._next_wake = 10.0
        self._reported: Object | None = None
        self._dns_warned: set[tuple[str, str]] = set()
        #: ids of this pod's containers, as far as this worker knows them all (None: list them).
        #: The engine's label-filtered listing walks every container on the node (about 19 ms of
        #: podman's CPU with 100 containers, against 3 ms to inspect one): a pod's worker creates
        #: its containers itself, so after one listing it inspects what it knows instead.
        self._known: set[str] | None = None if ctx.engine_uids is None or self.uid in ctx.engine_uids else set()

    # ----------------------------------------------------------- plumbing

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"pod-{self.pod['metadata'].get('name')}")

    def update(self, pod: Object) -> None:
        old = self.pod
        self.pod = pod
        # Our own status writes come back through the watch: only a change of what the pod asks
        # for (spec, deletion, labels/annotations for the downward API) needs a sync now; the
        # events stream and the periodic relist cover the rest.
        if _wanted(old) != _wanted(pod):
            self.kick()

    def kick(self) -> None:
        self.kick_event.set()

    def mark_deleted(self) -> None:
        """The API object (or static manifest) is gone: tear the pod down and finish."""
        self.deleted = True
        self.kick()

    def resend_status(self) -> None:
        """Forget the status last written so the next sync writes it whole (a fresh mirror pod has
        none)."""
        self.pod = {**self.pod, "status": {}}
        self.kick()

    async def stop_for_exit(self) -> None:
        """Stop every container of the pod within its grace period (``--stop-pods-on-exit``),
        listing them from the engine: what this worker last saw may be stale."""
        states = await self.ctx.runtime.list_containers({LABEL_POD_UID: self.uid})
        await self._stop_all(states, self.grace_period())

    async def cancel(self) -> None:
        """Stop driving this pod without touching its containers (agent shutdown: adoption later)."""
        for probes in self.probes.values():
            probes.stop()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _run(self) -> None:
        while not self.done:
            self.kick_event.clear()
            self._next_wake = 10.0
            try:
                await self.sync()
            except asyncio.CancelledError:
                raise
            except (errors.APIError, errors.ConnectionFailed, RuntimeError_) as error:
                log.warning("pod %s: %s", self.name, error)
                self._next_wake = 1.0
                self._known = None  # a container may have been created without us noting it
            except Exception:
                log.exception("pod %s: sync failed", self.name)
                self._next_wake = 2.0
                self._known = None
            if self.done:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.kick_event.wait(), self._next_wake)
        if self._on_finished is not None:
            self._on_finished(self.uid)

    @property
    def name(self) -> str:
        metadata = self.pod["metadata"]
        return f"{metadata.get('namespace')}/{metadata.get('name')}"

    def _container_event(self, container: Object, event_type: str, reason: str, message: str) -> None:
        self.ctx.event(container_reference(self.pod, str(container.get("name", ""))), event_type, reason, message)

    def _wake_in(self, seconds: float) -> None:
        self._next_wake = max(0.05, min(self._next_wake, seconds))

    # --------------------------------------------------------------- sync

    async def _containers(self) -> list[ContainerState]:
        """This pod's containers: listed from the engine once, then inspected by id."""
        if self._known is None:
            states = await self.ctx.runtime.list_containers({LABEL_POD_UID: self.uid})
        else:
            found = await asyncio.gather(*(self._inspect_or_none(i) for i in sorted(self._known)))
            states = [s for s in found if s is not None]
        self._known = {s.id for s in states}
        return states

    async def _inspect_or_none(self, container_id: str) -> ContainerState | None:
        try:
            return await self.ctx.runtime.inspect_container(container_id)
        except ContainerNotFound:
            return None

    def _created(self, container_id: str) -> None:
        if self._known is not None:
            self._known.add(container_id)

    async def _observe(self) -> tuple[ContainerState | None, dict[str, list[ContainerState]], list[ContainerState]]:
        states = await self._containers()
        attempts_by_name: dict[str, list[ContainerState]] = {}
        self._observed_attempts = attempts_by_name  # filled below, kept for _start
        sandboxes = _latest_first([s for s in states if s.labels.get(LABEL_ROLE) == "sandbox"])
        attempts: dict[str, list[ContainerState]] = attempts_by_name
        for state in states:
            if state.labels.get(LABEL_ROLE) != "sandbox":
                attempts.setdefault(state.labels.get(LABEL_CONTAINER_NAME, ""), []).append(state)
        oom: set[str] | None = None
        for name, items in attempts.items():
            attempts[name] = _latest_first(items)
            for state in items:
                # podman reports OOMKilled false: ask the kernel log for SIGKILLed containers
                if state.state == "exited" and state.exit_code == 137 and not state.oom_killed:
                    if oom is None:
                        oom = await asyncio.to_thread(oom_killed_ids)
                    state.oom_killed = state.id in oom
        return (sandboxes[0] if sandboxes else None), attempts, states

    async def sync(self) -> None:
        pod = self.pod
        if self.deleted or pod["metadata"].get("deletionTimestamp"):
            await self._terminate()
            return
        sandbox, attempts, states = await self._observe()
        spec = pod.get("spec") or {}
        policy = spec.get("restartPolicy") or "Always"
        phase = (pod.get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed") and not self.static:
            self.terminal_phase = phase
        if self.terminal_phase:
            await self._stop_all(states, grace=MIN_GRACE)
            sandbox, attempts, states = await self._observe()
        else:
            self._started_now, self._other_change = [], False
            previous_sandbox = sandbox.id if sandbox is not None else None
            try:
                sandbox = await self._ensure_sandbox(sandbox, attempts, states, policy)
            except RuntimeError_ as error:
                self.ctx.event(pod_reference(pod), "Warning", "FailedCreatePodSandBox",
                               f"Failed to create pod sandbox: {error}")
                raise
            if sandbox is not None and sandbox.id != previous_sandbox and states:
                self._other_change = True  # a replaced sandbox took the old containers with it
            if sandbox is not None and sandbox.state == "running":
                await self._drive_containers(sandbox, attempts, policy)
                if self._other_change:
                    sandbox, attempts, states = await self._observe()
                else:
                    # Only new containers started (the common case while a pod comes up): inspect
                    # just those instead of listing the pod again.
                    for container_id in self._started_now:
                        started = await self.ctx.runtime.inspect_container(container_id)
                        name = started.labels.get(LABEL_CONTAINER_NAME, "")
                        attempts[name] = [started, *attempts.get(name, [])]
        await self._refresh_tokens(sandbox)
        await self._report(sandbox, attempts)

    def _tokens(self) -> TokenManager:
        if self.ctx.tokens is None:
            self.ctx.tokens = TokenManager(requester_for(self.ctx.client))
        return self.ctx.tokens

    async def _refresh_tokens(self, sandbox: ContainerState | None) -> None:
        """Rewrite the volumes once a token in them is due (the kubelet remounts projected volumes at
        its syncs and the token manager hands out a new token after 80% of the old one's life),
        and wake up again for the next one."""
        tokens = self.ctx.tokens
        due = tokens.next_refresh(self.uid) if tokens is not None and self._volumes is not None else None
        if tokens is None or due is None or self.terminal_phase:
            return
        if due <= tokens.now():
            try:
                await prepare_volumes(self.pod, self.ctx.root_dir, self.ctx.fetch or _no_fetch,
                                      pod_ip=(sandbox.ip if sandbox else None) or self.ctx.host_ip,
                                      host_ip=self.ctx.host_ip, allocatable=self.ctx.allocatable, tokens=tokens)
            except VolumeError as error:
                self.ctx.event(pod_reference(self.pod), "Warning", "FailedMount", str(error))
                self._wake_in(5.0)
                return
            due = tokens.next_refresh(self.uid) or due
        self._wake_in((due - tokens.now()).total_seconds())

    async def _ensure_sandbox(self, sandbox: ContainerState | None, attempts: dict[str, list[ContainerState]],
                              states: list[ContainerState], policy: str) -> ContainerState | None:
        if sandbox is not None and sandbox.state == "running":
            return sandbox
        if sandbox is not None and policy != "Always" and self._all_finished(attempts, policy):
            return sandbox  # nothing will run again: no new sandbox
        if sandbox is not None:  # the kubelet's words when a pod's sandbox died under it
            self.ctx.event(pod_reference(self.pod), "Normal", "SandboxChanged",
                           "Pod sandbox changed, it will be killed and re-created.")
        # a new sandbox: whatever ran in the old network namespace is gone with it
        await self._stop_all([s for s in states if s.state == "running"], grace=MIN_GRACE)
        for state in states:
            if state.labels.get(LABEL_ROLE) == "sandbox":
                with contextlib.suppress(RuntimeError_):
                    await self.ctx.runtime.remove_container(state.id)
                    self._release_address(state)
        attempt = int(sandbox.labels.get(LABEL_RESTART_COUNT, "0")) + 1 if sandbox else 0
        metadata = self.pod["metadata"]
        spec = self.pod.get("spec") or {}
        host_ports = [(int(p["containerPort"]), int(p["hostPort"]), p.get("protocol", "TCP"))
                      for c in spec.get("containers") or [] for p in c.get("ports") or [] if p.get("hostPort")]
        labels = self._labels(SANDBOX, "sandbox", attempt)
        sandbox_spec = ContainerSpec(
            name=f"k8s_POD_{metadata['name']}_{metadata.get('namespace')}_{self.uid}_{attempt}",
            image=PAUSE_IMAGE, command=PAUSE_COMMAND[:1], args=PAUSE_COMMAND[1:], labels=labels,
            # a hostNetwork pod keeps the node's hostname, as the kubelet leaves it
            hostname=None if spec.get("hostNetwork") else sandbox_hostname(self.pod, self.ctx.cluster_domain),
            host_network=bool(spec.get("hostNetwork")),
            host_ports=host_ports)
        network = self.ctx.network
        if network is None or sandbox_spec.host_network or host_ports:
            # hostPort needs the engine's port mapping: such a pod keeps the engine's networking
            container_id = await self.ctx.runtime.create_container(sandbox_spec)
            self._created(container_id)
            await self.ctx.runtime.start_container(container_id)
            return await self.ctx.runtime.inspect_container(container_id)
        try:
            address = await network.allocate(sandbox_spec.name)
        except PodNetworkError as error:
            raise RuntimeError_(str(error)) from error
        labels[LABEL_POD_IP] = address
        sandbox_spec.no_network = True
        container_id = ""
        try:
            container_id = await self.ctx.runtime.create_container(sandbox_spec)
            self._created(container_id)
            await self.ctx.runtime.start_container(container_id)
            state = await self.ctx.runtime.inspect_container(container_id)
            await network.attach(state.pid, address, sandbox_spec.name)
        except (RuntimeError_, PodNetworkError, OSError) as error:
            # a sandbox without its network must not stay: the next sync would take it as ready
            if container_id:
                with contextlib.suppress(RuntimeError_):
                    await self.ctx.runtime.remove_container(container_id)
            network.release(address, sandbox_spec.name)
            if isinstance(error, RuntimeError_):
                raise
            raise RuntimeError_(f"pod network: {error}") from error
        return state

    def _release_address(self, sandbox: ContainerState) -> None:
        """Free the address of a removed sandbox the agent had wired."""
        if self.ctx.network is not None and sandbox.labels.get(LABEL_POD_IP):
            self.ctx.network.release(sandbox.labels[LABEL_POD_IP], sandbox.name)

    def _name_files(self, sandbox: ContainerState) -> list[Mount]:
        """/etc/resolv.conf and /etc/hosts as the kubelet writes them (see ``dnsconfig.name_files``),
        kept in the pod's directory and mounted into each container."""
        ctx = self.ctx
        on_bridge = bool(sandbox.labels.get(LABEL_POD_IP))
        files, warnings = name_files(self.pod, sandbox.ip if on_bridge else "", host_resolv_conf(ctx.resolv_conf),
                                     ctx.cluster_dns, ctx.cluster_domain)
        for reason, message in warnings:
            if (reason, message) not in self._dns_warned:  # once per pod, not per container start
                self._dns_warned.add((reason, message))
                ctx.event(pod_reference(self.pod), "Warning", reason, message)
        directory = pod_dir(ctx.root_dir, self.uid)
        directory.mkdir(parents=True, exist_ok=True)
        mounts = []
        for target, content in files.items():
            path = directory / ("etc-hosts" if target == "/etc/hosts" else "resolv.conf")
            if not path.exists() or path.read_text() != content:
                path.write_text(content)
            mounts.append(Mount(str(path), target))
        return mounts

    def _labels(self, container: str, role: str, attempt: int) -> dict[str, str]:
        metadata = self.pod["metadata"]
        return {LABEL_POD_UID: self.uid, LABEL_POD_NAME: metadata["name"],
                LABEL_POD_NAMESPACE: metadata.get("namespace", "default"), LABEL_CONTAINER_NAME: container,
                LABEL_ROLE: role, LABEL_RESTART_COUNT: str(attempt), LABEL_AGENT: self.ctx.agent_id}

    def _all_finished(self, attempts: dict[str, list[ContainerState]], policy: str) -> bool:
        for container in (self.pod.get("spec") or {}).get("containers") or []:
            items = attempts.get(container.get("name", ""))
            if not items or items[0].state != "exited":
                return False
            if policy == "OnFailure" and items[0].exit_code != 0:
                return False
        return True

    async def _drive_containers(self, sandbox: ContainerState, attempts: dict[str, list[ContainerState]],
                                policy: str) -> None:
        spec = self.pod.get("spec") or {}
        for container in spec.get("initContainers") or []:
            name = container.get("name", "")
            items = attempts.get(name) or []
            latest = items[0] if items else None
            if latest is not None and latest.state == "exited" and latest.exit_code == 0:
                self.waiting.pop(name, None)
                continue
            if latest is not None and latest.state == "created":
                await self._start_created(container, latest)
                return
            if latest is not None and latest.state == "running":
                return
            if latest is not None and latest.state == "exited" and policy == "Never":
                self.terminal_phase = "Failed"
                return
            await self._start_or_backoff(container, sandbox, latest)
            return
        for container in spec.get("containers") or []:
            name = container.get("name", "")
            items = attempts.get(name) or []
            latest = items[0] if items else None
            if latest is None:
                await self._start_or_backoff(container, sandbox, None)
            elif latest.state == "running":
                self.waiting.pop(name, None)
                await self._check_running(container, latest, sandbox)
            elif latest.state == "created":
                await self._start_created(container, latest)
            elif latest.state == "exited":
                restart = policy == "Always" or (policy == "OnFailure" and latest.exit_code != 0)
                if restart:
                    await self._start_or_backoff(container, sandbox, latest)
                else:
                    self.waiting.pop(name, None)

    async def _start_created(self, container: Object, state: ContainerState) -> None:
        """Start a container created but never started: the engine or this agent died between the
        two calls (chaos seed 136199913: podman SIGKILLed there), and nothing else would ever start
        it. The kubelet starts such a container again too; starting the attempt made keeps its
        restart count. One that cannot start is removed, so the next sync creates it anew."""
        name = container.get("name", "")
        try:
            await self.ctx.runtime.start_container(state.id)
        except RuntimeError_ as error:
            self.waiting[name] = ("CreateContainerError", str(error))
            with contextlib.suppress(RuntimeError_):
                await self.ctx.runtime.remove_container(state.id)
            self._wake_in(1.0)
            return
        self._started_now.append(state.id)
        self.waiting.pop(name, None)
        self._container_event(container, "Normal", "Started", f"Started container {name}")

    async def _check_running(self, container: Object, state: ContainerState, sandbox: ContainerState) -> None:
        probes = self.probes.get(state.id)
        if probes is None and any(k in container for k in ("livenessProbe", "readinessProbe", "startupProbe")):
            probes = ContainerProbes(self.ctx.runtime, state.id, container, sandbox.ip or self.ctx.host_ip, self.kick,
                                     lambda kind, reason, message: self._container_event(container, kind, reason,
                                                                                         message))
            self.probes[state.id] = probes
            probes.start()
        if probes is not None and probes.failed:
            # the kubelet kills the container with the pod's grace period; it then restarts per policy
            # (each failed probe was already an Unhealthy event)
            probes.stop()
            grace = float((self.pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30))
            probe = "startup" if probes.failed.startswith("Startup") else "liveness"
            self._container_event(container, "Normal", "Killing",
                                  f"Container {container.get('name')} failed {probe} probe, will be restarted")
            await self._stop_container(container, state, grace)
            self.kick()
        elif container.get("image") and state.image and \
                normalize_image(container["image"]) != normalize_image(state.image):
            await self._stop_container(container, state, MIN_GRACE)  # the spec changed: restart
            self.kick()

    async def _start_or_backoff(self, container: Object, sandbox: ContainerState,
                                latest: ContainerState | None) -> None:
        name = container.get("name", "")
        key = f"{self.uid}/{name}"
        backoff = self.ctx.crash_backoff
        if latest is not None and latest.state == "exited":
            finished = _monotonic_of(latest.finished_at)
            if backoff.in_backoff_since(key, finished):
                delay = backoff.get(key)
                self.waiting[name] = ("CrashLoopBackOff", crash_message(delay, name, self.pod))
                self._container_event(container, "Warning", "BackOff",
                                      f"Back-off restarting failed container {name} in pod {format_pod(self.pod)}")
                self._wake_in(delay - (time.monotonic() - finished) + 0.05)
                return
            backoff.next(key, finished)
        attempt = int(latest.labels.get(LABEL_RESTART_COUNT, "0")) + 1 if latest else 0
        try:
            await self._start(container, sandbox, attempt, latest)
        except ImagePullFailure as failure:
            self.waiting[name] = (failure.reason, failure.message)
            # the image manager recorded what happened; the kubelet adds the container's error
            self._container_event(container, "Warning", "Failed", f"Error: {failure.reason}")
            if failure.reason == "ErrImagePull":
                # as the kubelet: the next sync (soon) reports ImagePullBackOff while the back-off runs
                self._wake_in(1.0)
            else:
                self._wake_in(max(1.0, self.ctx.images.backoff_remaining(self.uid, str(container.get("image")))))
        except ConfigError as error:
            self.waiting[name] = ("CreateContainerConfigError", str(error))
            self._container_event(container, "Warning", "Failed", f"Error: {error}")
            self._wake_in(5.0)
        except VolumeError as error:
            self.waiting[name] = ("ContainerCreating", "")
            self.ctx.event(pod_reference(self.pod), "Warning", "FailedMount", str(error))
            self._wake_in(2.0)
        except RuntimeError_ as error:
            self.waiting[name] = ("CreateContainerError", str(error))
            self._container_event(container, "Warning", "Failed", f"Error: {error}")
            self._wake_in(5.0)

    async def _start(self, container: Object, sandbox: ContainerState, attempt: int,
                     latest: ContainerState | None) -> None:
        name = container.get("name", "")
        pod = self.pod
        ctx = self.ctx
        pod_ip = sandbox.ip or ctx.host_ip
        fetch = ctx.fetch or _no_fetch
        await ctx.images.ensure(pod, container, lambda kind, reason, message:
                                self._container_event(container, kind, reason, message))
        env = await make_environment(pod, container, fetch, pod_ip=pod_ip, host_ip=ctx.host_ip,
                                     allocatable=ctx.allocatable)
        if self._volumes is None:
            self._volumes = await prepare_volumes(pod, ctx.root_dir, fetch, pod_ip=pod_ip, host_ip=ctx.host_ip,
                                                  tokens=self._tokens(),
                                                  allocatable=ctx.allocatable)
        mounts = container_mounts(container, self._volumes)
        mounts += [m for m in self._name_files(sandbox) if m.target not in {n.target for n in mounts}]
        limits = (container.get("resources") or {}).get("limits") or {}
        requests = (container.get("resources") or {}).get("requests") or {}
        memory = parse_quantity(str(limits["memory"])) if "memory" in limits else None
        cpu = parse_quantity(str(limits["cpu"])) if "cpu" in limits else None
        cpu_request = parse_quantity(str(requests.get("cpu", limits.get("cpu", "0")))) or 0
        metadata = pod["metadata"]
        spec = ContainerSpec(
            name=f"k8s_{name}_{metadata['name']}_{metadata.get('namespace')}_{self.uid}_{attempt}",
            image=str(container.get("image")), labels=self._labels(name, "container", attempt),
            command=[expand(c, env) for c in container["command"]] if container.get("command") else None,
            args=[expand(a, env) for a in container["args"]] if container.get("args") else None,
            env=env, working_dir=container.get("workingDir"), mounts=mounts, sandbox_id=sandbox.id,
            memory_limit=int(memory) if memory else None,
            cpu_quota_millis=int(cpu * 1000) if cpu else None,
            cpu_shares=max(2, int(cpu_request * 1024)) if cpu_request else 2,
            tty=bool(container.get("tty")), stdin=bool(container.get("stdin")),
            stdin_once=bool(container.get("stdinOnce")))
        # keep only the newest exited attempt (for --previous), the one we replace now; the sync has
        # just listed this pod's containers, so no second listing is needed
        for old in self._observed_attempts.get(name, []):
            if old.state != "running" and (latest is None or old.id != latest.id):
                with contextlib.suppress(RuntimeError_):
                    await ctx.runtime.remove_container(old.id)
                self._other_change = True
        container_id = await ctx.runtime.create_container(spec)
        self._created(container_id)
        self._container_event(container, "Normal", "Created", f"Created container: {name}")
        await ctx.runtime.start_container(container_id)
        self._started_now.append(container_id)
        self.waiting.pop(name, None)
        self._container_event(container, "Normal", "Started", f"Started container {name}")
        hook = ((container.get("lifecycle") or {}).get("postStart"))
        if hook:
            result = await run_handler(hook, runtime=ctx.runtime, container_id=container_id, container=container,
                                       pod_ip=pod_ip, timeout=30)
            if not result.ok:
                self._container_event(container, "Warning", "FailedPostStartHook", result.output)
                await ctx.runtime.stop_container(container_id, MIN_GRACE)

    # -------------------------------------------------------- termination

    async def _stop_container(self, container: Object | None, state: ContainerState, grace: float) -> None:
        self._other_change = True
        deadline = time.monotonic() + grace
        hook = ((container or {}).get("lifecycle") or {}).get("preStop")
        if hook and state.state == "running":
            try:
                result = await asyncio.wait_for(run_handler(hook, runtime=self.ctx.runtime, container_id=state.id,
                                                            container=container or {}, pod_ip="", timeout=grace),
                                                grace)
            except TimeoutError:  # the grace period ran out first: the kubelet stops the container anyway
                log.info("preStop hook of %s did not complete within the grace period", state.id)
            else:
                if not result.ok:
                    # The kubelet's executePreStopHook: logged with the hook's output, the event without
                    # it (the output may hold secrets), and the container is stopped all the same.
                    log.warning("preStop hook of %s failed: %s", state.id, result.output)
                    self._container_event(container or {}, "Warning", "FailedPreStopHook", "PreStopHook failed")
        remaining = max(MIN_GRACE if grace >= MIN_GRACE else 0, deadline - time.monotonic())
        probes = self.probes.pop(state.id, None)
        if probes is not None:
            probes.stop()
        with contextlib.suppress(ContainerNotFound):
            await self.ctx.runtime.stop_container(state.id, remaining)

    async def _stop_all(self, states: list[ContainerState], grace: float) -> None:
        containers = {c.get("name"): c for c in ((self.pod.get("spec") or {}).get("containers") or [])
                      + ((self.pod.get("spec") or {}).get("initContainers") or [])}
        running = [s for s in states if s.state == "running"]
        apps = [s for s in running if s.labels.get(LABEL_ROLE) != "sandbox"]
        for state in apps:  # the kubelet's killContainer
            name = state.labels.get(LABEL_CONTAINER_NAME, "")
            self._container_event(containers.get(name) or {"name": name}, "Normal", "Killing",
                                  f"Stopping container {name}")
        await asyncio.gather(*(self._stop_container(containers.get(s.labels.get(LABEL_CONTAINER_NAME)), s, grace)
                               for s in apps))
        for state in running:
            if state.labels.get(LABEL_ROLE) == "sandbox":
                with contextlib.suppress(ContainerNotFound):
                    await self.ctx.runtime.stop_container(state.id, MIN_GRACE)

    def grace_period(self) -> float:
        metadata = self.pod["metadata"]
        if metadata.get("deletionGracePeriodSeconds") is not None:
            return float(metadata["deletionGracePeriodSeconds"])
        return float((self.pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30))

    async def _terminate(self) -> None:
        states = await self._containers()
        await self._stop_all(states, self.grace_period())
        if not self.deleted and not self.static:
            sandbox, attempts, _ = await self._observe()
            await self._report(sandbox, attempts)
            metadata = self.pod["metadata"]
            with contextlib.suppress(errors.NotFoundError, errors.ConflictError):
                await self.ctx.client.delete(PODS, metadata["name"], metadata.get("namespace"),
                                             grace_period_seconds=0, preconditions={"uid": self.uid})
        if self.deleted or self.static:
            await self.cleanup()
            self.done = True
        else:
            self._wake_in(2.0)  # the informer's DELETED event will mark us deleted

    async def cleanup(self) -> None:
        """Remove every container of the pod and its volumes (the pod is gone for good)."""
        states = await self.ctx.runtime.list_containers({LABEL_POD_UID: self.uid})
        # app containers first: the engine refuses to remove a sandbox others joined
        for state in sorted(states, key=lambda s: s.labels.get(LABEL_ROLE) == "sandbox"):
            with contextlib.suppress(RuntimeError_):
                await self.ctx.runtime.remove_container(state.id)
                self._release_address(state)
        for probes in self.probes.values():
            probes.stop()
        self.probes.clear()
        self.ctx.images.forget_pod(self.uid)
        self.ctx.crash_backoff.forget_prefix(f"{self.uid}/")
        await asyncio.to_thread(remove_pod_dir, self.ctx.root_dir, self.uid)
        if self.ctx.tokens is not None:
            self.ctx.tokens.forget(self.uid)

    # ------------------------------------------------------------- status

    async def _report(self, sandbox: ContainerState | None, attempts: dict[str, list[ContainerState]]) -> None:
        ready: dict[str, bool] = {}
        started: dict[str, bool] = {}
        specs = {c.get("name"): c for c in (self.pod.get("spec") or {}).get("containers") or []}
        for name, items in attempts.items():
            if items and items[0].state == "running":
                probes = self.probes.get(items[0].id)
                if probes is not None:
                    ready[items[0].id], started[items[0].id] = probes.ready, probes.started
                    continue
                # Running but its probes not begun yet (it started during this sync): not ready
                # until a readiness probe says so, not started until a startup probe does.
                spec = specs.get(name) or {}
                ready[items[0].id] = "readinessProbe" not in spec and "startupProbe" not in spec
                started[items[0].id] = "startupProbe" not in spec
                if "readinessProbe" in spec or "startupProbe" in spec or "livenessProbe" in spec:
                    self._wake_in(0.05)  # begin the probes at once
        obs = PodObservation(attempts=attempts, sandbox=sandbox, waiting=dict(self.waiting), ready=ready,
                             started=started, scheme=self.ctx.scheme, host_ip=self.ctx.host_ip,
                             host_network=bool((self.pod.get("spec") or {}).get("hostNetwork")),
                             terminal_phase=self.terminal_phase)
        status = compute_pod_status(self.pod, obs)
        if status["phase"] in ("Succeeded", "Failed"):
            self.terminal_phase = status["phase"]
        self.sandbox_running = sandbox is not None and sandbox.state == "running"
        await self.write_status(status)
        POD_STARTS.observe(self.pod)

    def running_containers(self) -> list[tuple[str, str, float]]:
        """(name, engine id, start time in epoch seconds) of each running container (/metrics/resource)."""
        out = []
        for name, attempts in self._observed_attempts.items():
            if attempts and attempts[0].state == "running":
                started = meta.parse_time(attempts[0].started_at)
                out.append((name, attempts[0].id, started.timestamp() if started else 0.0))
        return out

    def container_states(self) -> list[str]:
        """The engine state of each container's latest attempt (kubelet_running_containers)."""
        return [attempts[0].state for attempts in self._observed_attempts.values() if attempts]

    async def write_status(self, status: Object) -> None:
        old = self.pod.get("status") or {}
        patch = status_patch(old, status)
        if patch is None:
            return
        metadata = self.pod["metadata"]
        try:
            updated = await self.ctx.client.patch(PODS, metadata["name"], {"status": patch}, metadata.get("namespace"),
                                                  subresource="status")
        except errors.NotFoundError:
            return
        # remember what we wrote (a static pod's mirror has another uid; the informer refreshes the rest)
        self.pod = {**self.pod, "status": updated.get("status") or status}


def _monotonic_of(rfc3339: str) -> float:
    """An engine timestamp on the monotonic clock the back-off uses."""
    moment = meta.parse_time(rfc3339)
    if moment is None:
        return time.monotonic()
    return time.monotonic() - max(0.0, (meta.now() - moment).total_seconds())


async def _no_fetch(kind: str, namespace: str, name: str) -> Object | None:
    return None
