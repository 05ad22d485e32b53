"""The engine's spec of one container attempt from the pod's (the kubelet's generateContainerConfig):
name, labels, command and args with ``$(VAR)`` expanded, mounts, resource limits, the sandbox to join."""

from __future__ import annotations

from pilothouse.components.agent.env import expand
from pilothouse.components.agent.podcontext import PodContext, container_labels
from pilothouse.components.agent.runtime.interface import ContainerSpec, ContainerState, Mount
from pilothouse.machinery.kinds.quantity import parse_quantity
from pilothouse.machinery.meta import Object

__all__ = ["container_spec"]


def container_spec(ctx: PodContext, pod: Object, container: Object, sandbox: ContainerState, attempt: int,
                   env: dict[str, str], mounts: list[Mount]) -> ContainerSpec:
    name = container.get("name", "")
    limits = (container.get("resources") or {}).get("limits") or {}
    requests = (container.get("resources") or {}).get("requests") or {}
    memory = parse_quantity(str(limits["memory"])) if "memory" in limits else None
    cpu = parse_quantity(str(limits["cpu"])) if "cpu" in limits else None
    cpu_request = parse_quantity(str(requests.get("cpu", limits.get("cpu", "0")))) or 0
    metadata = pod["metadata"]
    return ContainerSpec(
        name=f"k8s_{name}_{metadata['name']}_{metadata.get('namespace')}_{metadata['uid']}_{attempt}",
        image=str(container.get("image")), labels=container_labels(ctx, pod, name, "container", attempt),
        command=[expand(c, env) for c in container["command"]] if container.get("command") else None,
        args=[expand(a, env) for a in container["args"]] if container.get("args") else None,
        env=env, working_dir=container.get("workingDir"), mounts=mounts, sandbox_id=sandbox.id,
        memory_limit=int(memory) if memory else None,
        cpu_quota_millis=int(cpu * 1000) if cpu else None,
        cpu_shares=max(2, int(cpu_request * 1024)) if cpu_request else 2,
        tty=bool(container.get("tty")), stdin=bool(container.get("stdin")),
        stdin_once=bool(container.get("stdinOnce")))
