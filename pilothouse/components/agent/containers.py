"""A pod's containers driven to its spec: the kubelet's computePodActions and startContainer.

Init containers run one at a time, in order, each to success; then the app containers start, and
restart per ``restartPolicy`` with the crash back-off (CrashLoopBackOff). A running container gets
its probes; one whose liveness or startup probe failed, or whose image the spec changed, is stopped
and started again at the next sync. Why a container is held back (back-off, image pull, config
error) is kept here, for the status.

Containers are labelled with the pod and container names and their attempt number, so a restarted
agent adopts what runs (same ids, restartCount continues) instead of starting anything again. The
newest exited attempt of each container is kept (``kubectl logs --previous``), older ones removed.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

from pilothouse.components.agent.backoff import format_duration
from pilothouse.components.agent.containerspec import container_spec
from pilothouse.components.agent.env import ConfigError, make_environment
from pilothouse.components.agent.images import ImagePullFailure
from pilothouse.components.agent.podcontext import MIN_GRACE, PodContext, SyncRound, no_fetch
from pilothouse.components.agent.podevents import format_pod
from pilothouse.components.agent.podobserver import PodObserver
from pilothouse.components.agent.podvolumes import PodVolumes
from pilothouse.components.agent.prober import PodProbes
from pilothouse.components.agent.probes import run_handler
from pilothouse.components.agent.runtime.interface import ContainerState, RuntimeError_
from pilothouse.components.agent.sandbox import PodSandbox
from pilothouse.components.agent.status import LABEL_RESTART_COUNT
from pilothouse.components.agent.teardown import PodTeardown
from pilothouse.components.agent.volumes import VolumeError, container_mounts
from pilothouse.machinery import meta
from pilothouse.machinery.meta import Object

__all__ = ["PodContainers", "crash_message", "normalize_image"]

Attempts = dict[str, list[ContainerState]]


def crash_message(delay: float, container: str, pod: Object) -> str:
    metadata = pod["metadata"]
    return (f"back-off {format_duration(delay)} restarting failed container={container} "
            f"pod={metadata['name']}_{metadata.get('namespace', 'default')}({metadata.get('uid', '')})")


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


def _monotonic_of(rfc3339: str) -> float:
    """An engine timestamp on the monotonic clock the back-off uses."""
    moment = meta.parse_time(rfc3339)
    if moment is None:
        return time.monotonic()
    return time.monotonic() - max(0.0, (meta.now() - moment).total_seconds())


class PodContainers:
    def __init__(self, ctx: PodContext, uid: str, *, observer: PodObserver, sandbox: PodSandbox,
                 volumes: PodVolumes, probes: PodProbes, teardown: PodTeardown, kick: Callable[[], None]) -> None:
        self.ctx = ctx
        self.uid = uid
        self.observer = observer
        self.sandbox = sandbox
        self.volumes = volumes
        self.probes = probes
        self.teardown = teardown
        self.kick = kick
        #: container name -> (reason, message) while it is held back (the status's waiting state)
        self.waiting: dict[str, tuple[str, str]] = {}

    async def drive(self, pod: Object, sandbox: ContainerState, attempts: Attempts, policy: str,
                    sync: SyncRound) -> str:
        """One step towards the spec; the phase the pod ends in when that is decided here ("Failed":
        an init container failed and will not be restarted), else ""."""
        spec = pod.get("spec") or {}
        for container in spec.get("initContainers") or []:
            name = container.get("name", "")
            items = attempts.get(name) or []
            latest = items[0] if items else None
            if latest is not None and latest.state == "exited" and latest.exit_code == 0:
                self.waiting.pop(name, None)
                continue
            if latest is not None and latest.state == "created":
                await self._start_created(pod, container, latest, sync)
                return ""
            if latest is not None and latest.state == "running":
                return ""
            if latest is not None and latest.state == "exited" and policy == "Never":
                return "Failed"
            await self._start_or_backoff(pod, container, sandbox, latest, attempts, sync)
            return ""
        for container in spec.get("containers") or []:
            name = container.get("name", "")
            items = attempts.get(name) or []
            latest = items[0] if items else None
            if latest is None:
                await self._start_or_backoff(pod, container, sandbox, None, attempts, sync)
            elif latest.state == "running":
                self.waiting.pop(name, None)
                await self._check_running(pod, container, latest, sandbox, sync)
            elif latest.state == "created":
                await self._start_created(pod, container, latest, sync)
            elif latest.state == "exited":
                restart = policy == "Always" or (policy == "OnFailure" and latest.exit_code != 0)
                if restart:
                    await self._start_or_backoff(pod, container, sandbox, latest, attempts, sync)
                else:
                    self.waiting.pop(name, None)
        return ""

    async def _start_created(self, pod: Object, container: Object, state: ContainerState, sync: SyncRound) -> None:
        """Start a container created but never started: the engine or this agent died between the
        two calls (chaos seed 136199913: podman SIGKILLed there), and nothing else would ever start
        it. The kubelet starts such a container again too; starting the attempt made keeps its
        restart count. One that cannot start is removed, so the next sync creates it anew."""
        ctx = self.ctx
        name = container.get("name", "")
        try:
            await ctx.runtime.start_container(state.id)
        except RuntimeError_ as error:
            self.waiting[name] = ("CreateContainerError", str(error))
            with contextlib.suppress(RuntimeError_):
                await ctx.runtime.remove_container(state.id)
            sync.wake_in(1.0)
            return
        sync.started.append(state.id)
        self.waiting.pop(name, None)
        ctx.container_event(pod, container, "Normal", "Started", f"Started container {name}")

    async def _check_running(self, pod: Object, container: Object, state: ContainerState, sandbox: ContainerState,
                             sync: SyncRound) -> None:
        ctx = self.ctx
        probes = self.probes.ensure(container, state, sandbox.ip or ctx.host_ip, self.kick,
                                    lambda kind, reason, message: ctx.container_event(pod, container, kind, reason,
                                                                                      message))
        if probes is not None and probes.failed:
            # the kubelet kills the container with the pod's grace period; it then restarts per policy
            # (each failed probe was already an Unhealthy event)
            probes.stop()
            grace = float((pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30))
            probe = "startup" if probes.failed.startswith("Startup") else "liveness"
            ctx.container_event(pod, container, "Normal", "Killing",
                                f"Container {container.get('name')} failed {probe} probe, will be restarted")
            sync.changed = True
            await self.teardown.stop_container(pod, container, state, grace)
            self.kick()
        elif container.get("image") and state.image and \
                normalize_image(container["image"]) != normalize_image(state.image):
            sync.changed = True
            await self.teardown.stop_container(pod, container, state, MIN_GRACE)  # the spec changed: restart
            self.kick()

    async def _start_or_backoff(self, pod: Object, container: Object, sandbox: ContainerState,
                                latest: ContainerState | None, attempts: Attempts, sync: SyncRound) -> None:
        ctx = self.ctx
        name = container.get("name", "")
        key = f"{self.uid}/{name}"
        backoff = ctx.crash_backoff
        if latest is not None and latest.state == "exited":
            finished = _monotonic_of(latest.finished_at)
            if backoff.in_backoff_since(key, finished):
                delay = backoff.get(key)
                self.waiting[name] = ("CrashLoopBackOff", crash_message(delay, name, pod))
                ctx.container_event(pod, container, "Warning", "BackOff",
                                    f"Back-off restarting failed container {name} in pod {format_pod(pod)}")
                sync.wake_in(delay - (time.monotonic() - finished) + 0.05)
                return
            backoff.next(key, finished)
        attempt = int(latest.labels.get(LABEL_RESTART_COUNT, "0")) + 1 if latest else 0
        try:
            await self._start(pod, container, sandbox, attempt, latest, attempts, sync)
        except ImagePullFailure as failure:
            self.waiting[name] = (failure.reason, failure.message)
            # the image manager recorded what happened; the kubelet adds the container's error
            ctx.container_event(pod, container, "Warning", "Failed", f"Error: {failure.reason}")
            if failure.reason == "ErrImagePull":
                # as the kubelet: the next sync (soon) reports ImagePullBackOff while the back-off runs
                sync.wake_in(1.0)
            else:
                sync.wake_in(max(1.0, ctx.images.backoff_remaining(self.uid, str(container.get("image")))))
        except ConfigError as error:
            self.waiting[name] = ("CreateContainerConfigError", str(error))
            ctx.container_event(pod, container, "Warning", "Failed", f"Error: {error}")
            sync.wake_in(5.0)
        except VolumeError as error:
            self.waiting[name] = ("ContainerCreating", "")
            ctx.pod_event(pod, "Warning", "FailedMount", str(error))
            sync.wake_in(2.0)
        except RuntimeError_ as error:
            self.waiting[name] = ("CreateContainerError", str(error))
            ctx.container_event(pod, container, "Warning", "Failed", f"Error: {error}")
            sync.wake_in(5.0)

    async def _start(self, pod: Object, container: Object, sandbox: ContainerState, attempt: int,
                     latest: ContainerState | None, attempts: Attempts, sync: SyncRound) -> None:
        ctx = self.ctx
        name = container.get("name", "")
        pod_ip = sandbox.ip or ctx.host_ip
        await ctx.images.ensure(pod, container, lambda kind, reason, message:
                                ctx.container_event(pod, container, kind, reason, message))
        env = await make_environment(pod, container, ctx.fetch or no_fetch, pod_ip=pod_ip, host_ip=ctx.host_ip,
                                     allocatable=ctx.allocatable)
        mounts = container_mounts(container, await self.volumes.prepare(pod, pod_ip))
        mounts += [m for m in self.sandbox.name_files(pod, sandbox) if m.target not in {n.target for n in mounts}]
        spec = container_spec(ctx, pod, container, sandbox, attempt, env, mounts)
        # keep only the newest exited attempt (for --previous), the one we replace now; the sync has
        # just listed this pod's containers, so no second listing is needed
        for old in attempts.get(name, []):
            if old.state != "running" and (latest is None or old.id != latest.id):
                with contextlib.suppress(RuntimeError_):
                    await ctx.runtime.remove_container(old.id)
                sync.changed = True
        container_id = await ctx.runtime.create_container(spec)
        self.observer.created(container_id)
        ctx.container_event(pod, container, "Normal", "Created", f"Created container: {name}")
        await ctx.runtime.start_container(container_id)
        sync.started.append(container_id)
        self.waiting.pop(name, None)
        ctx.container_event(pod, container, "Normal", "Started", f"Started container {name}")
        hook = ((container.get("lifecycle") or {}).get("postStart"))
        if hook:
            result = await run_handler(hook, runtime=ctx.runtime, container_id=container_id, container=container,
                                       pod_ip=pod_ip, timeout=30)
            if not result.ok:
                ctx.container_event(pod, container, "Warning", "FailedPostStartHook", result.output)
                await ctx.runtime.stop_container(container_id, MIN_GRACE)
