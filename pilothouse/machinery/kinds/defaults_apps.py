"""Defaulting of apps/v1 workloads, as Kubernetes' pkg/apis/apps/v1/defaults.go.

Controllers and ``kubectl rollout`` read these defaults (a Deployment without ``strategy`` still
rolls with 25%/25%), so they must be present on the stored object. Each workload's pod template
also gets the pod spec defaults.
"""

from __future__ import annotations

from typing import Any

from pilothouse.machinery.kinds.defaults_core import default_pod_template, default_pvc_template
from pilothouse.machinery.kinds.types import Object
from pilothouse.machinery.meta import child

__all__ = ["default_daemonset", "default_deployment", "default_replicaset", "default_statefulset"]


def _spec(obj: Object) -> dict[str, Any]:
    return child(obj, "spec")


def default_deployment(deployment: Object) -> None:
    spec = _spec(deployment)
    if spec.get("replicas") is None:
        spec["replicas"] = 1
    strategy = child(spec, "strategy")
    if not strategy.get("type"):
        strategy["type"] = "RollingUpdate"
    if strategy["type"] == "RollingUpdate":
        rolling = child(strategy, "rollingUpdate")
        if rolling.get("maxUnavailable") is None:
            rolling["maxUnavailable"] = "25%"
        if rolling.get("maxSurge") is None:
            rolling["maxSurge"] = "25%"
    if spec.get("revisionHistoryLimit") is None:
        spec["revisionHistoryLimit"] = 10
    if spec.get("progressDeadlineSeconds") is None:
        spec["progressDeadlineSeconds"] = 600
    default_pod_template(spec.get("template"))


def default_replicaset(replicaset: Object) -> None:
    spec = _spec(replicaset)
    if spec.get("replicas") is None:
        spec["replicas"] = 1
    default_pod_template(spec.get("template"))


def default_statefulset(statefulset: Object) -> None:
    spec = _spec(statefulset)
    if not spec.get("podManagementPolicy"):
        spec["podManagementPolicy"] = "OrderedReady"
    strategy = child(spec, "updateStrategy")
    if not strategy.get("type"):
        strategy["type"] = "RollingUpdate"
        strategy.setdefault("rollingUpdate", {})
    rolling = strategy.get("rollingUpdate")
    if strategy["type"] == "RollingUpdate" and rolling is not None and rolling.get("partition") is None:
        rolling["partition"] = 0
    # StatefulSetAutoDeletePVC is GA in 1.32.
    retention = child(spec, "persistentVolumeClaimRetentionPolicy")
    if not retention.get("whenDeleted"):
        retention["whenDeleted"] = "Retain"
    if not retention.get("whenScaled"):
        retention["whenScaled"] = "Retain"
    if spec.get("replicas") is None:
        spec["replicas"] = 1
    if spec.get("revisionHistoryLimit") is None:
        spec["revisionHistoryLimit"] = 10
    default_pod_template(spec.get("template"))
    for claim in spec.get("volumeClaimTemplates") or ():
        default_pvc_template(claim)


def default_daemonset(daemonset: Object) -> None:
    spec = _spec(daemonset)
    strategy = child(spec, "updateStrategy")
    if not strategy.get("type"):
        strategy["type"] = "RollingUpdate"
    if strategy["type"] == "RollingUpdate":
        rolling = child(strategy, "rollingUpdate")
        if rolling.get("maxUnavailable") is None:
            rolling["maxUnavailable"] = 1
        if rolling.get("maxSurge") is None:
            rolling["maxSurge"] = 0
    if spec.get("revisionHistoryLimit") is None:
        spec["revisionHistoryLimit"] = 10
    default_pod_template(spec.get("template"))
