"""Per-pod workers: drive each pod's containers to its spec and report its status.

One asyncio task per pod (the kubelet's pod workers), woken by the pod's informer events, by the
engine's container events (a death is seen at once) and by a periodic relist. The worker owns the
pod's stage in its life (:mod:`.podlifecycle`) and its loop; each sync does what the stage asks and
delegates to the pieces that own their own state:

- :mod:`.podobserver`: what the engine has of the pod (sandbox, attempts of each container);
- :mod:`.sandbox`: the pause container, its network and the pod's name files;
- :mod:`.containers`: init and app containers started, restarted with back-off, probes checked;
- :mod:`.podvolumes`, :mod:`.prober`: the pod's volumes and tokens, its containers' probes;
- :mod:`.teardown`: graceful stop (preStop, SIGTERM, grace, SIGKILL) and removal;
- the status, computed by :mod:`.status` and written here through ``pods/status``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from pilothouse.client import errors
from pilothouse.components.agent.containers import PodContainers
from pilothouse.components.agent.metrics import POD_STARTS
from pilothouse.components.agent.podcontext import MIN_GRACE, PODS, PodContext, SyncRound
from pilothouse.components.agent.podlifecycle import PodLifecycle, Stage
from pilothouse.components.agent.podobserver import Observation, PodObserver
from pilothouse.components.agent.podvolumes import PodVolumes
from pilothouse.components.agent.prober import PodProbes
from pilothouse.components.agent.runtime.interface import LABEL_POD_UID, RuntimeError_
from pilothouse.components.agent.sandbox import PodSandbox
from pilothouse.components.agent.status import PodObservation, compute_pod_status, status_patch
from pilothouse.components.agent.teardown import PodTeardown, grace_period
from pilothouse.machinery.meta import Object

__all__ = ["PodWorker"]

log = logging.getLogger("pilothouse.agent.pods")


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
        self.lifecycle = PodLifecycle(static=static)
        self.kick_event = asyncio.Event()
        #: whether the pod's sandbox ran at the last report (kubelet_running_pods)
        self.sandbox_running = False
        self._task: asyncio.Task[None] | None = None
        self._on_finished = on_finished
        # a pod the agent had no containers for when it started has only those its worker creates
        self.observer = PodObserver(ctx.runtime, self.uid,
                                    knows_all=ctx.engine_uids is not None and self.uid not in ctx.engine_uids)
        self.probes = PodProbes(ctx.runtime)
        self.teardown = PodTeardown(ctx, self.uid, self.probes)
        self.sandbox = PodSandbox(ctx, self.observer, self.teardown)
        self.volumes = PodVolumes(ctx, self.uid)
        self.containers = PodContainers(ctx, self.uid, observer=self.observer, sandbox=self.sandbox,
                                        volumes=self.volumes, probes=self.probes,
                                        teardown=self.teardown, kick=self.kick)

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
        self.lifecycle.gone()
        self.kick()

    def resend_status(self) -> None:
        """Forget the status last written so the next sync writes it whole (a fresh mirror pod has
        none)."""
        self.pod = {**self.pod, "status": {}}
        self.kick()

    def grace_period(self) -> float:
        return grace_period(self.pod)

    async def stop_for_exit(self) -> None:
        """Stop every container of the pod within its grace period (``--stop-pods-on-exit``),
        listing them from the engine: what this worker last saw may be stale."""
        states = await self.ctx.runtime.list_containers({LABEL_POD_UID: self.uid})
        await self.teardown.stop_all(self.pod, states, self.grace_period())

    async def cancel(self) -> None:
        """Stop driving this pod without touching its containers (agent shutdown: adoption later)."""
        self.probes.stop_all()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _run(self) -> None:
        while not self.lifecycle.finished:
            self.kick_event.clear()
            try:
                next_wake = await self.sync()
            except asyncio.CancelledError:
                raise
            except (errors.APIError, errors.ConnectionFailed, RuntimeError_) as error:
                log.warning("pod %s: %s", self.name, error)
                next_wake = 1.0
                self.observer.forget()  # a container may have been created without us noting it
            except Exception:
                log.exception("pod %s: sync failed", self.name)
                next_wake = 2.0
                self.observer.forget()
            if self.lifecycle.finished:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.kick_event.wait(), next_wake)
        if self._on_finished is not None:
            self._on_finished(self.uid)

    @property
    def name(self) -> str:
        metadata = self.pod["metadata"]
        return f"{metadata.get('namespace')}/{metadata.get('name')}"

    def running_containers(self) -> list[tuple[str, str, float]]:
        """(name, engine id, start time in epoch seconds) of each running container (/metrics/resource)."""
        return self.observer.running_containers()

    def container_states(self) -> list[str]:
        """The engine state of each container's latest attempt (kubelet_running_containers)."""
        return self.observer.container_states()

    # --------------------------------------------------------------- sync

    async def sync(self) -> float:
        """One pass of what the pod's stage asks; the seconds until the next unless woken earlier."""
        sync = SyncRound()
        self.lifecycle.observe(self.pod)
        stage = self.lifecycle.stage
        if stage >= Stage.TERMINATING:
            await self._sync_terminating(sync)
        elif stage is Stage.TERMINAL:
            seen = await self.observer.observe()
            await self.teardown.stop_all(self.pod, seen.states, grace=MIN_GRACE)
            await self._report(await self.observer.observe(), sync)
        else:
            await self._sync_running(sync)
        return sync.next_wake

    async def _sync_running(self, sync: SyncRound) -> None:
        seen = await self.observer.observe()
        pod = self.pod
        policy = (pod.get("spec") or {}).get("restartPolicy") or "Always"
        previous_sandbox = seen.sandbox.id if seen.sandbox is not None else None
        sandbox = await self.sandbox.ensure(pod, seen, policy)
        if sandbox is not None and sandbox.id != previous_sandbox and seen.states:
            sync.changed = True  # a replaced sandbox took the old containers with it
        if sandbox is not None and sandbox.state == "running":
            ended = await self.containers.drive(self.pod, sandbox, seen.attempts, policy, sync)
            if ended:
                self.lifecycle.end(ended)
            if sync.changed:
                seen = await self.observer.observe()
                sandbox = seen.sandbox
            else:
                # Only new containers started (the common case while a pod comes up): inspect
                # just those instead of listing the pod again.
                for container_id in sync.started:
                    seen.add_started(await self.ctx.runtime.inspect_container(container_id))
        if not self.lifecycle.terminal_phase:
            await self.volumes.refresh_tokens(self.pod, sandbox.ip if sandbox else None, sync)
        await self._report(Observation(sandbox, seen.attempts, seen.states), sync)

    async def _sync_terminating(self, sync: SyncRound) -> None:
        """Stop gracefully; then delete the API object (it is being deleted), or remove everything
        (it is gone)."""
        states = await self.observer.containers()
        await self.teardown.stop_all(self.pod, states, self.grace_period())
        if self.lifecycle.stage is Stage.TERMINATING:
            await self._report(await self.observer.observe(), sync)
            metadata = self.pod["metadata"]
            with contextlib.suppress(errors.NotFoundError, errors.ConflictError):
                await self.ctx.client.delete(PODS, metadata["name"], metadata.get("namespace"),
                                             grace_period_seconds=0, preconditions={"uid": self.uid})
        if self.lifecycle.stage is Stage.TERMINATING:
            sync.wake_in(2.0)  # the informer's DELETED event will mark us deleted
            return
        await self.teardown.remove_all()
        self.lifecycle.finish()

    # ------------------------------------------------------------- status

    async def _report(self, seen: Observation, sync: SyncRound) -> None:
        ready, started, begin_probes = self.probes.readiness(self.pod, seen.attempts)
        if begin_probes:
            sync.wake_in(0.05)  # begin the probes at once
        obs = PodObservation(attempts=seen.attempts, sandbox=seen.sandbox, waiting=dict(self.containers.waiting),
                             ready=ready, started=started, scheme=self.ctx.scheme, host_ip=self.ctx.host_ip,
                             host_network=bool((self.pod.get("spec") or {}).get("hostNetwork")),
                             terminal_phase=self.lifecycle.terminal_phase)
        status = compute_pod_status(self.pod, obs)
        if status["phase"] in ("Succeeded", "Failed"):
            self.lifecycle.end(status["phase"])
        self.sandbox_running = seen.sandbox is not None and seen.sandbox.state == "running"
        await self._write_status(status)
        POD_STARTS.observe(self.pod)

    async def _write_status(self, status: Object) -> None:
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
