"""The event source each controller records as, as kube-controller-manager names them (the
``EventSource{Component: ...}`` of each controller's recorder), so ``kubectl describe`` shows the
same "From" column as on Kubernetes. Controllers not listed record as ``controller-manager``."""

from __future__ import annotations

__all__ = ["EVENT_SOURCES"]

#: controller name (``Controller.name``) -> event source component
EVENT_SOURCES: dict[str, str] = {
    "cronjob": "cronjob-controller",
    "daemonset": "daemonset-controller",
    "deployment": "deployment-controller",
    "endpoints": "endpoint-controller",
    "endpointslice": "endpoint-slice-controller",
    "garbage-collector": "garbage-collector-controller",
    "horizontal-pod-autoscaler": "horizontal-pod-autoscaler",
    "job": "job-controller",
    "namespace": "namespace-controller",
    "nodeipam": "cidrAllocator",
    "nodelifecycle": "node-controller",
    "persistentvolume-binder": "persistentvolume-controller",
    "replicaset": "replicaset-controller",
    "replicationcontroller": "replication-controller",
    "statefulset": "statefulset-controller",
    "ttl-after-finished": "ttlafterfinished-controller",
}
