"""Strategies of the apps/v1 kinds, assembled from ``defaults_apps``, ``validate_apps`` and ``prepare``.

As in pkg/registry/apps/<kind>/strategy.go: create starts from the zero status at generation 1,
spec changes bump generation (Deployments also on annotation changes), /status changes only status.
"""

from __future__ import annotations

from pilothouse.machinery.kinds import defaults_apps as d
from pilothouse.machinery.kinds import fields as f
from pilothouse.machinery.kinds import prepare as p
from pilothouse.machinery.kinds import validate_apps as v
from pilothouse.machinery.kinds.types import Object, Strategy, status_strategy

__all__ = ["CONTROLLERREVISION", "DAEMONSET", "DAEMONSET_STATUS", "DEPLOYMENT", "DEPLOYMENT_STATUS",
           "REPLICASET", "REPLICASET_STATUS", "STATEFULSET", "STATEFULSET_STATUS"]

_DS_TEMPLATE_GENERATION = "deprecated.daemonset.template.generation"


def _prepare_daemonset_create(daemonset: Object) -> None:
    p.create_with_zero_status("DaemonSet")(daemonset)
    # apps/v1 exposes the internal templateGeneration (1 on create) as this annotation.
    meta = daemonset["metadata"]
    annotations = meta.get("annotations")
    if annotations is None:
        annotations = meta["annotations"] = {}
    annotations[_DS_TEMPLATE_GENERATION] = "1"


DEPLOYMENT = Strategy(
    default=d.default_deployment,
    validate=v.validate_deployment,
    validate_update=v.validate_deployment_update,
    prepare_for_create=p.create_with_zero_status("Deployment"),
    prepare_for_update=p.prepare_deployment_update,
)
DEPLOYMENT_STATUS = status_strategy(DEPLOYMENT)

REPLICASET = Strategy(
    default=d.default_replicaset,
    validate=v.validate_replicaset,
    validate_update=v.validate_replicaset_update,
    prepare_for_create=p.create_with_zero_status("ReplicaSet"),
    prepare_for_update=p.update_keeping_status(),
    selectable_fields=f.replicaset_fields,
)
REPLICASET_STATUS = status_strategy(REPLICASET)

STATEFULSET = Strategy(
    default=d.default_statefulset,
    validate=v.validate_statefulset,
    validate_update=v.validate_statefulset_update,
    prepare_for_create=p.create_with_zero_status("StatefulSet"),
    prepare_for_update=p.update_keeping_status(),
)
STATEFULSET_STATUS = status_strategy(STATEFULSET)

DAEMONSET = Strategy(
    default=d.default_daemonset,
    validate=v.validate_daemonset,
    validate_update=v.validate_daemonset_update,
    prepare_for_create=_prepare_daemonset_create,
    prepare_for_update=p.prepare_daemonset_update,
)
DAEMONSET_STATUS = status_strategy(DAEMONSET)

CONTROLLERREVISION = Strategy()
