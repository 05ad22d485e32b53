"""API objects for the policy tests: Pods, Namespaces and NetworkPolicies as the server returns them."""

from __future__ import annotations

from typing import Any

Object = dict[str, Any]


def pod(namespace: str, name: str, ip: str, labels: dict[str, str] | None = None, node: str = "node-a",
        ports: tuple[tuple[str, int, str], ...] = ()) -> Object:
    metadata = {"namespace": namespace, "name": name, "labels": labels or {}}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata,
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox", "ports": [
                {"name": port_name, "containerPort": number, "protocol": protocol}
                for port_name, number, protocol in ports]}]},
            "status": {"phase": "Running", "podIP": ip}}


def namespace(name: str, labels: dict[str, str] | None = None) -> Object:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name, **(labels or {})}}}


def policy(namespace: str, name: str, selector: Object | None = None, *, ingress: list[Object] | None = None,
           egress: list[Object] | None = None, types: list[str] | None = None) -> Object:
    spec: Object = {"podSelector": selector or {}}
    if ingress is not None:
        spec["ingress"] = ingress
    if egress is not None:
        spec["egress"] = egress
    if types is not None:
        spec["policyTypes"] = types
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"namespace": namespace, "name": name}, "spec": spec}
