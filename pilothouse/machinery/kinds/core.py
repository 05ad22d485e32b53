"""Strategies of the core (v1) kinds: defaults, kind validation, create/update rules, field labels.

The behaviour itself lives in the ``defaults_core``, ``validate_pod``, ``validate_core``,
``prepare`` and ``fields`` modules; this module only assembles it per kind, as the registry
strategies of kube-apiserver's pkg/registry/core/<kind>/strategy.go do.
"""

from __future__ import annotations

from dataclasses import replace

from pilothouse.machinery.kinds import defaults_core as d
from pilothouse.machinery.kinds import fields as f
from pilothouse.machinery.kinds import prepare as p
from pilothouse.machinery.kinds import validate_core as v
from pilothouse.machinery.kinds import validate_pod as vp
from pilothouse.machinery.kinds import validate_quota as vq
from pilothouse.machinery.kinds.types import (
    FIELD_LABEL_NOT_SUPPORTED,
    Strategy,
    keep_all_but_status,
    no_field_errors,
    status_strategy,
)

__all__ = [
    "CONFIGMAP",
    "ENDPOINTS",
    "EVENT",
    "LIMITRANGE",
    "NAMESPACE",
    "NAMESPACE_FINALIZE",
    "NAMESPACE_STATUS",
    "NODE",
    "NODE_STATUS",
    "POD",
    "POD_STATUS",
    "RESOURCEQUOTA",
    "RESOURCEQUOTA_STATUS",
    "SECRET",
    "SERVICE",
    "SERVICEACCOUNT",
    "SERVICE_STATUS",
]

POD = Strategy(
    default=d.default_pod,
    validate=vp.validate_pod,
    validate_update=vp.validate_pod_update,
    prepare_for_create=p.prepare_pod_create,
    prepare_for_update=p.prepare_pod_update,
    selectable_fields=f.pod_fields,
    watch_index=("spec.nodeName",),
    plain_fields=("spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName", "status.phase",
                  "status.nominatedNodeName"),
    field_label_error=FIELD_LABEL_NOT_SUPPORTED,
    grace_period=p.pod_grace_period,
)
POD_STATUS = replace(POD, prepare_for_update=p.prepare_pod_status_update,
                     validate_update=vp.validate_pod_status_update)

NODE = Strategy(
    default=d.default_node,
    validate=v.validate_node,
    prepare_for_create=p.prepare_node_create,
    prepare_for_update=p.prepare_node_update,
    selectable_fields=f.node_fields,
    field_label_error=FIELD_LABEL_NOT_SUPPORTED,
)
NODE_STATUS = replace(NODE, prepare_for_update=p.prepare_node_status_update, validate_update=no_field_errors)

NAMESPACE = Strategy(
    default=d.default_namespace,
    prepare_for_create=p.prepare_namespace_create,
    prepare_for_update=p.prepare_namespace_update,
    selectable_fields=f.namespace_fields,
    plain_fields=("status.phase",),
    field_label_error=FIELD_LABEL_NOT_SUPPORTED,
    # Deleting a namespace marks it Terminating; it goes once the namespace controller has emptied
    # it and removed spec.finalizers through /finalize.
    on_delete_requested=p.mark_namespace_terminating,
    deletion_blocked=p.namespace_has_finalizers,
)
NAMESPACE_FINALIZE = replace(NAMESPACE, prepare_for_update=p.prepare_namespace_finalize)
NAMESPACE_STATUS = replace(NAMESPACE, prepare_for_update=keep_all_but_status)

SERVICE = Strategy(
    default=d.default_service,
    validate=v.validate_service,
    validate_update=v.validate_service_update,
    prepare_for_create=p.prepare_service_create,
    prepare_for_update=p.prepare_service_update,
    selectable_fields=f.service_fields,
    field_label_error=FIELD_LABEL_NOT_SUPPORTED,
)
SERVICE_STATUS = status_strategy(SERVICE)

RESOURCEQUOTA = Strategy(
    validate=vq.validate_resource_quota,
    prepare_for_create=p.create_with_zero_status("ResourceQuota", generation=False),
    prepare_for_update=p.update_keeping_status(generation=False),
)
RESOURCEQUOTA_STATUS = replace(RESOURCEQUOTA, prepare_for_update=keep_all_but_status)

CONFIGMAP = Strategy(validate=v.validate_configmap, validate_update=v.validate_configmap_update)
SECRET = Strategy(default=d.default_secret, validate=v.validate_secret, validate_update=v.validate_secret_update,
                  selectable_fields=f.secret_fields, field_label_error=FIELD_LABEL_NOT_SUPPORTED)
SERVICEACCOUNT = Strategy()
ENDPOINTS = Strategy(default=d.default_endpoints)
EVENT = Strategy(selectable_fields=f.core_event_fields, field_label_error=FIELD_LABEL_NOT_SUPPORTED,
                 expires=True)
LIMITRANGE = Strategy(default=d.default_limit_range, validate=vq.validate_limit_range)
