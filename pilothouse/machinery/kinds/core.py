"""Strategies of the core (v1) kinds. Placeholder values: filled in with defaults and validation."""

from __future__ import annotations

from dataclasses import replace

from pilothouse.machinery.kinds.types import (
    Strategy,
    keep_all_but_status,
    keep_status_on_update,
    reset_status_on_create,
)

__all__ = ["CONFIGMAP", "ENDPOINTS", "EVENT", "LIMITRANGE", "NAMESPACE", "NAMESPACE_STATUS", "NODE",
           "NODE_STATUS", "POD", "POD_STATUS", "RESOURCEQUOTA", "RESOURCEQUOTA_STATUS", "SECRET",
           "SERVICE", "SERVICEACCOUNT", "SERVICE_STATUS"]

_SPEC_AND_STATUS = Strategy(prepare_for_create=reset_status_on_create, prepare_for_update=keep_status_on_update)

POD = _SPEC_AND_STATUS
POD_STATUS = replace(POD, prepare_for_update=keep_all_but_status)
NODE = _SPEC_AND_STATUS
NODE_STATUS = replace(NODE, prepare_for_update=keep_all_but_status)
NAMESPACE = _SPEC_AND_STATUS
NAMESPACE_STATUS = replace(NAMESPACE, prepare_for_update=keep_all_but_status)
SERVICE = _SPEC_AND_STATUS
SERVICE_STATUS = replace(SERVICE, prepare_for_update=keep_all_but_status)
RESOURCEQUOTA = _SPEC_AND_STATUS
RESOURCEQUOTA_STATUS = replace(RESOURCEQUOTA, prepare_for_update=keep_all_but_status)
CONFIGMAP = Strategy()
SECRET = Strategy()
SERVICEACCOUNT = Strategy()
ENDPOINTS = Strategy()
EVENT = Strategy()
LIMITRANGE = Strategy()
