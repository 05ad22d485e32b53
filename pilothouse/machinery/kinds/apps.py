"""Strategies of the apps/v1 kinds. Placeholder values: filled in with defaults and validation."""

from __future__ import annotations

from dataclasses import replace

from pilothouse.machinery.kinds.types import (
    Strategy,
    keep_all_but_status,
    keep_status_on_update,
    reset_status_on_create,
)

__all__ = ["CONTROLLERREVISION", "DAEMONSET", "DAEMONSET_STATUS", "DEPLOYMENT", "DEPLOYMENT_STATUS",
           "REPLICASET", "REPLICASET_STATUS", "STATEFULSET", "STATEFULSET_STATUS"]

_SPEC_AND_STATUS = Strategy(prepare_for_create=reset_status_on_create, prepare_for_update=keep_status_on_update)

DEPLOYMENT = _SPEC_AND_STATUS
DEPLOYMENT_STATUS = replace(DEPLOYMENT, prepare_for_update=keep_all_but_status)
REPLICASET = _SPEC_AND_STATUS
REPLICASET_STATUS = replace(REPLICASET, prepare_for_update=keep_all_but_status)
STATEFULSET = _SPEC_AND_STATUS
STATEFULSET_STATUS = replace(STATEFULSET, prepare_for_update=keep_all_but_status)
DAEMONSET = _SPEC_AND_STATUS
DAEMONSET_STATUS = replace(DAEMONSET, prepare_for_update=keep_all_but_status)
CONTROLLERREVISION = Strategy()
