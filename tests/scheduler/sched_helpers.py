"""Builders for Node and Pod objects shared by the scheduler tests."""

from __future__ import annotations

from typing import Any

Object = dict[str, Any]


def node(name: str, *, labels: dict[str, str] | None = None, cpu: str = "4", memory: str = "32Gi",
         pods: str = "110", taints: list[Object] | None = None, unschedulable: bool = False,
         ready: str | None = "True", images: list[Object] | None = None) -> Object:
    status: Object = {"allocatable": {"cpu": cpu, "memory": memory, "pods": pods, "ephemeral-storage": "100Gi"},
                      "capacity": {"cpu": cpu, "memory": memory, "pods": pods, "ephemeral-storage": "100Gi"}}
    if ready is not None:
        status["conditions"] = [{"type": "Ready", "status": ready, "reason": "KubeletReady",
                                 "message": "kubelet is posting ready status"}]
    if images:
        status["images"] = images
    spec: Object = {}
    if taints:
        spec["taints"] = taints
    if unschedulable:
        spec["unschedulable"] = True
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
            "spec": spec, "status": status}


def pod(name: str, *, namespace: str = "default", labels: dict[str, str] | None = None,
        cpu: str | None = None, memory: str | None = None, node_name: str = "",
        node_selector: dict[str, str] | None = None, tolerations: list[Object] | None = None,
        affinity: Object | None = None, host_port: int | None = None,
        spread: list[Object] | None = None, image: str = "registry.k8s.io/pause:3.10",
        extra_spec: Object | None = None) -> Object:
    requests = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v is not None}
    container: Object = {"name": "main", "image": image}
    if requests:
        container["resources"] = {"requests": requests}
    if host_port:
        container["ports"] = [{"containerPort": 80, "hostPort": host_port, "protocol": "TCP"}]
    spec: Object = {"containers": [container], "schedulerName": "default-scheduler"}
    if node_name:
        spec["nodeName"] = node_name
    if node_selector:
        spec["nodeSelector"] = node_selector
    if tolerations:
        spec["tolerations"] = tolerations
    if affinity:
        spec["affinity"] = affinity
    if spread:
        spec["topologySpreadConstraints"] = spread
    spec.update(extra_spec or {})
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": labels or {}, "uid": f"uid-{name}"},
            "spec": spec, "status": {"phase": "Pending"}}


def anti_affinity(labels: dict[str, str], key: str = "kubernetes.io/hostname") -> Object:
    return {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": labels}, "topologyKey": key}]}}


def seed_nodes() -> list[Object]:
    azure = {"host": "azure", "environment": "production"}
    return [node("azure-prd-02", labels=azure), node("azure-prd-03", labels=azure),
            node("azure-prd-04", labels=azure),
            node("ded-prd-01", labels={"dedicated": "processing", "environment": "production"},
                 taints=[{"key": "dedicated", "value": "processing", "effect": "NoSchedule"}])]


PROCESSING_TOLERATION = [{"key": "dedicated", "operator": "Equal", "value": "processing", "effect": "NoSchedule"}]
