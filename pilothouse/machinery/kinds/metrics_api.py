"""``metrics.k8s.io/v1beta1``: NodeMetrics and PodMetrics, read-only and never stored; answered from
the agents' resource metrics by apiserver/metricsapi.py (what metrics-server serves through an
APIService in Kubernetes). No official schema is published for them, so OpenAPI leaves them out, as
kube-apiserver's own document does."""

from __future__ import annotations

from pilothouse.machinery.kinds.types import ResourceType, Strategy

__all__ = ["RESOURCES"]

_READ_ONLY = ("get", "list")

RESOURCES: tuple[ResourceType, ...] = (
    ResourceType("metrics.k8s.io", "v1beta1", "NodeMetrics", "nodes", False, Strategy(), verbs=_READ_ONLY),
    ResourceType("metrics.k8s.io", "v1beta1", "PodMetrics", "pods", True, Strategy(), verbs=_READ_ONLY),
)
