"""Strategies of the smaller groups: coordination, events, discovery, policy.

Small enough to keep their few rules here: EndpointSlice port defaults, the PodDisruptionBudget
spec rules (pkg/apis/policy/validation), and the events.k8s.io field labels.
"""

from __future__ import annotations

import re
from typing import Any

from pilothouse.machinery.errors import FieldError
from pilothouse.machinery.kinds import fields as f
from pilothouse.machinery.kinds import prepare as p
from pilothouse.machinery.kinds.types import FIELD_LABEL_NOT_SUPPORTED, Object, Strategy, status_strategy
from pilothouse.machinery.kinds.vcommon import (
    GoValue,
    invalid,
    nonnegative,
    not_supported,
    validate_label_selector,
)

__all__ = ["ENDPOINTSLICE", "EVENT_V1", "LEASE", "PDB", "PDB_STATUS", "default_endpointslice",
           "validate_pdb"]

_PERCENT = re.compile(r"^[0-9]+%$")


def default_endpointslice(slice_: Object) -> None:
    """discovery/v1 SetDefaults_EndpointPort: name "" and protocol TCP."""
    for port in slice_.get("ports") or ():
        if port.get("name") is None:
            port["name"] = ""
        if port.get("protocol") is None:
            port["protocol"] = "TCP"


def _int_or_percent(value: Any, path: str) -> list[FieldError]:
    if isinstance(value, str):
        if not _PERCENT.match(value):
            return [invalid(path, value, "a valid percent string must be a numeric string followed by an "
                            "ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')")]
        if int(value[:-1]) > 100:
            return [invalid(path, value, "must not be greater than 100%")]
        return []
    return nonnegative(value, path)


def validate_pdb(pdb: Object) -> list[FieldError]:
    spec = pdb.get("spec") or {}
    errors: list[FieldError] = []
    if spec.get("minAvailable") is not None and spec.get("maxUnavailable") is not None:
        errors.append(invalid("spec", GoValue(spec, "policy.PodDisruptionBudgetSpec{...}"),
                              "minAvailable and maxUnavailable cannot be both set"))
    for key in ("minAvailable", "maxUnavailable"):
        if spec.get(key) is not None:
            errors += _int_or_percent(spec[key], f"spec.{key}")
    errors += validate_label_selector(spec.get("selector"), "spec.selector")
    policy = spec.get("unhealthyPodEvictionPolicy")
    if policy is not None and policy not in ("IfHealthyBudget", "AlwaysAllow"):
        errors.append(not_supported("spec.unhealthyPodEvictionPolicy", policy, ("AlwaysAllow", "IfHealthyBudget")))
    return errors


LEASE = Strategy()
# The same storage as core/v1 Events, so the same --event-ttl.
EVENT_V1 = Strategy(selectable_fields=f.events_v1_fields, field_label_error=FIELD_LABEL_NOT_SUPPORTED,
                    expires=True)
ENDPOINTSLICE = Strategy(default=default_endpointslice)
PDB = Strategy(
    validate=validate_pdb,
    prepare_for_create=p.create_with_zero_status("PodDisruptionBudget"),
    prepare_for_update=p.update_keeping_status(),
)
PDB_STATUS = status_strategy(PDB)
