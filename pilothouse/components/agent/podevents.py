"""What the kubelet's events about a pod refer to, and the phrases they share.

A container's events name the container through the reference's ``fieldPath`` (the kubelet's
``GenerateContainerRef``: ``spec.containers{web}``, ``spec.initContainers{setup}``), so ``kubectl
get events -o wide`` and watchers can tell the containers of one pod apart; the pod's own events
(FailedMount, DNS) refer to the pod. Pods from an informer's list carry no ``kind``: it is set here.
"""

from __future__ import annotations

from pilothouse.client.events import object_reference
from pilothouse.machinery.meta import Object

__all__ = ["container_reference", "format_pod", "pod_reference"]



def pod_reference(pod: Object) -> Object:
    return object_reference({**pod, "kind": "Pod", "apiVersion": "v1"})


def container_reference(pod: Object, name: str) -> Object:
    spec = pod.get("spec") or {}
    init = any(c.get("name") == name for c in spec.get("initContainers") or ())
    return {**pod_reference(pod), "fieldPath": f"spec.{'initContainers' if init else 'containers'}{{{name}}}"}


def format_pod(pod: Object) -> str:
    """``format.Pod``: ``name_namespace(uid)``, how the kubelet names a pod in its messages."""
    metadata = pod.get("metadata") or {}
    return f"{metadata.get('name', '')}_{metadata.get('namespace', '')}({metadata.get('uid', '')})"
