"""A pod's sandbox: the pause container that holds its network namespace, its address and its names.

The kubelet's createPodSandbox and the CNI's ADD: a sandbox is created when there is none or the
old one died (whatever ran in the old network namespace is gone with it, so those containers are
stopped and the old sandbox removed). With the agent's pod network the sandbox starts without the
engine's network and gets a veth and an address from the node's range; host-network pods and pods
with host ports keep the engine's networking. The sandbox also gives each container the pod's
/etc/resolv.conf and /etc/hosts.
"""

from __future__ import annotations

import contextlib

from pilothouse.components.agent.dnsconfig import host_resolv_conf, name_files, sandbox_hostname
from pilothouse.components.agent.podcontext import MIN_GRACE, PodContext, container_labels
from pilothouse.components.agent.podnet import PodNetworkError
from pilothouse.components.agent.podobserver import Observation, PodObserver
from pilothouse.components.agent.runtime.docker import PAUSE_COMMAND, PAUSE_IMAGE
from pilothouse.components.agent.runtime.interface import (
    LABEL_POD_IP,
    LABEL_ROLE,
    ContainerSpec,
    ContainerState,
    Mount,
    RuntimeError_,
)
from pilothouse.components.agent.status import LABEL_RESTART_COUNT
from pilothouse.components.agent.teardown import PodTeardown, release_address
from pilothouse.components.agent.volumes import pod_dir
from pilothouse.machinery.meta import Object

__all__ = ["SANDBOX", "PodSandbox"]

SANDBOX = "POD"


def _all_finished(pod: Object, attempts: dict[str, list[ContainerState]], policy: str) -> bool:
    for container in (pod.get("spec") or {}).get("containers") or []:
        items = attempts.get(container.get("name", ""))
        if not items or items[0].state != "exited":
            return False
        if policy == "OnFailure" and items[0].exit_code != 0:
            return False
    return True


class PodSandbox:
    def __init__(self, ctx: PodContext, observer: PodObserver, teardown: PodTeardown) -> None:
        self.ctx = ctx
        self.observer = observer
        self.teardown = teardown
        self._dns_warned: set[tuple[str, str]] = set()  # once per pod, not per container start

    async def ensure(self, pod: Object, seen: Observation, policy: str) -> ContainerState | None:
        """The pod's running sandbox, created anew when there is none or it died (None: no new
        sandbox, nothing of the pod will run again). Raises RuntimeError_ with an event."""
        try:
            return await self._ensure(pod, seen, policy)
        except RuntimeError_ as error:
            self.ctx.pod_event(pod, "Warning", "FailedCreatePodSandBox", f"Failed to create pod sandbox: {error}")
            raise

    async def _ensure(self, pod: Object, seen: Observation, policy: str) -> ContainerState | None:
        sandbox = seen.sandbox
        if sandbox is not None and sandbox.state == "running":
            return sandbox
        if sandbox is not None and policy != "Always" and _all_finished(pod, seen.attempts, policy):
            return sandbox  # nothing will run again: no new sandbox
        if sandbox is not None:  # the kubelet's words when a pod's sandbox died under it
            self.ctx.pod_event(pod, "Normal", "SandboxChanged",
                               "Pod sandbox changed, it will be killed and re-created.")
        # a new sandbox: whatever ran in the old network namespace is gone with it
        await self.teardown.stop_all(pod, [s for s in seen.states if s.state == "running"], grace=MIN_GRACE)
        for state in seen.states:
            if state.labels.get(LABEL_ROLE) == "sandbox":
                with contextlib.suppress(RuntimeError_):
                    await self.ctx.runtime.remove_container(state.id)
                    release_address(self.ctx, state)
        attempt = int(sandbox.labels.get(LABEL_RESTART_COUNT, "0")) + 1 if sandbox else 0
        return await self._create(pod, attempt)

    async def _create(self, pod: Object, attempt: int) -> ContainerState:
        ctx = self.ctx
        metadata = pod["metadata"]
        spec = pod.get("spec") or {}
        host_ports = [(int(p["containerPort"]), int(p["hostPort"]), p.get("protocol", "TCP"))
                      for c in spec.get("containers") or [] for p in c.get("ports") or [] if p.get("hostPort")]
        labels = container_labels(ctx, pod, SANDBOX, "sandbox", attempt)
        sandbox_spec = ContainerSpec(
            name=f"k8s_POD_{metadata['name']}_{metadata.get('namespace')}_{metadata['uid']}_{attempt}",
            image=PAUSE_IMAGE, command=PAUSE_COMMAND[:1], args=PAUSE_COMMAND[1:], labels=labels,
            # a hostNetwork pod keeps the node's hostname, as the kubelet leaves it
            hostname=None if spec.get("hostNetwork") else sandbox_hostname(pod, ctx.cluster_domain),
            host_network=bool(spec.get("hostNetwork")),
            host_ports=host_ports)
        network = ctx.network
        if network is None or sandbox_spec.host_network or host_ports:
            # hostPort needs the engine's port mapping: such a pod keeps the engine's networking
            container_id = await ctx.runtime.create_container(sandbox_spec)
            self.observer.created(container_id)
            await ctx.runtime.start_container(container_id)
            return await ctx.runtime.inspect_container(container_id)
        try:
            address = await network.allocate(sandbox_spec.name)
        except PodNetworkError as error:
            raise RuntimeError_(str(error)) from error
        labels[LABEL_POD_IP] = address
        sandbox_spec.no_network = True
        container_id = ""
        try:
            container_id = await ctx.runtime.create_container(sandbox_spec)
            self.observer.created(container_id)
            await ctx.runtime.start_container(container_id)
            state = await ctx.runtime.inspect_container(container_id)
            await network.attach(state.pid, address, sandbox_spec.name)
        except (RuntimeError_, PodNetworkError, OSError) as error:
            # a sandbox without its network must not stay: the next sync would take it as ready
            if container_id:
                with contextlib.suppress(RuntimeError_):
                    await ctx.runtime.remove_container(container_id)
            network.release(address, sandbox_spec.name)
            if isinstance(error, RuntimeError_):
                raise
            raise RuntimeError_(f"pod network: {error}") from error
        return state

    def name_files(self, pod: Object, sandbox: ContainerState) -> list[Mount]:
        """/etc/resolv.conf and /etc/hosts as the kubelet writes them (see ``dnsconfig.name_files``),
        kept in the pod's directory and mounted into each container."""
        ctx = self.ctx
        on_bridge = bool(sandbox.labels.get(LABEL_POD_IP))
        files, warnings = name_files(pod, sandbox.ip if on_bridge else "", host_resolv_conf(ctx.resolv_conf),
                                     ctx.cluster_dns, ctx.cluster_domain)
        for reason, message in warnings:
            if (reason, message) not in self._dns_warned:
                self._dns_warned.add((reason, message))
                ctx.pod_event(pod, "Warning", reason, message)
        directory = pod_dir(ctx.root_dir, pod["metadata"]["uid"])
        directory.mkdir(parents=True, exist_ok=True)
        mounts = []
        for target, content in files.items():
            path = directory / ("etc-hosts" if target == "/etc/hosts" else "resolv.conf")
            if not path.exists() or path.read_text() != content:
                path.write_text(content)
            mounts.append(Mount(str(path), target))
        return mounts
