"""Stopping a pod's containers and removing what is left of a pod (the kubelet's killPod and cleanup).

A container is stopped as the kubelet's killContainer does: its preStop hook within the grace
period, then SIGTERM and, once the rest of the grace has run out, SIGKILL (at least the kubelet's
minimum grace). Removal takes the containers (app containers first: the engine refuses to remove a
sandbox others joined), the pod's addresses, volumes, tokens and back-off entries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from pilothouse.components.agent.podcontext import MIN_GRACE, PodContext
from pilothouse.components.agent.prober import PodProbes
from pilothouse.components.agent.probes import run_handler
from pilothouse.components.agent.runtime.interface import (
    LABEL_CONTAINER_NAME,
    LABEL_POD_IP,
    LABEL_POD_UID,
    LABEL_ROLE,
    ContainerNotFound,
    ContainerState,
    RuntimeError_,
)
from pilothouse.components.agent.volumes import remove_pod_dir
from pilothouse.machinery.meta import Object

__all__ = ["PodTeardown", "grace_period", "release_address"]

log = logging.getLogger("pilothouse.agent.pods")


def grace_period(pod: Object) -> float:
    metadata = pod["metadata"]
    if metadata.get("deletionGracePeriodSeconds") is not None:
        return float(metadata["deletionGracePeriodSeconds"])
    return float((pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30))


def release_address(ctx: PodContext, sandbox: ContainerState) -> None:
    """Free the address of a removed sandbox the agent had wired."""
    if ctx.network is not None and sandbox.labels.get(LABEL_POD_IP):
        ctx.network.release(sandbox.labels[LABEL_POD_IP], sandbox.name)


class PodTeardown:
    def __init__(self, ctx: PodContext, uid: str, probes: PodProbes) -> None:
        self.ctx = ctx
        self.uid = uid
        self.probes = probes

    async def stop_container(self, pod: Object, container: Object | None, state: ContainerState,
                             grace: float) -> None:
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
                    self.ctx.container_event(pod, container or {}, "Warning", "FailedPreStopHook",
                                             "PreStopHook failed")
        remaining = max(MIN_GRACE if grace >= MIN_GRACE else 0, deadline - time.monotonic())
        self.probes.stop(state.id)
        with contextlib.suppress(ContainerNotFound):
            await self.ctx.runtime.stop_container(state.id, remaining)

    async def stop_all(self, pod: Object, states: list[ContainerState], grace: float) -> None:
        """Stop the running ones of ``states``: app containers together, then the sandbox."""
        spec = pod.get("spec") or {}
        containers = {c.get("name"): c for c in (spec.get("containers") or []) + (spec.get("initContainers") or [])}
        running = [s for s in states if s.state == "running"]
        apps = [s for s in running if s.labels.get(LABEL_ROLE) != "sandbox"]
        for state in apps:  # the kubelet's killContainer
            name = state.labels.get(LABEL_CONTAINER_NAME, "")
            self.ctx.container_event(pod, containers.get(name) or {"name": name}, "Normal", "Killing",
                                     f"Stopping container {name}")
        await asyncio.gather(*(self.stop_container(pod, containers.get(s.labels.get(LABEL_CONTAINER_NAME)), s, grace)
                               for s in apps))
        for state in running:
            if state.labels.get(LABEL_ROLE) == "sandbox":
                with contextlib.suppress(ContainerNotFound):
                    await self.ctx.runtime.stop_container(state.id, MIN_GRACE)

    async def remove_all(self) -> None:
        """Remove every container of the pod and its volumes (the pod is gone for good)."""
        ctx = self.ctx
        states = await ctx.runtime.list_containers({LABEL_POD_UID: self.uid})
        # app containers first: the engine refuses to remove a sandbox others joined
        for state in sorted(states, key=lambda s: s.labels.get(LABEL_ROLE) == "sandbox"):
            with contextlib.suppress(RuntimeError_):
                await ctx.runtime.remove_container(state.id)
                release_address(ctx, state)
        self.probes.stop_all()
        ctx.images.forget_pod(self.uid)
        ctx.crash_backoff.forget_prefix(f"{self.uid}/")
        await asyncio.to_thread(remove_pod_dir, ctx.root_dir, self.uid)
        if ctx.tokens is not None:
            ctx.tokens.forget(self.uid)
