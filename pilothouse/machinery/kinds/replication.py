"""core/v1 ReplicationController, the seed's workload object: its row, defaults, validation, strategy.

As pkg/apis/core/v1/defaults.go (``SetDefaults_ReplicationController``), pkg/apis/core/validation
(``ValidateReplicationController*``) and pkg/registry/core/replicationcontroller/strategy.go. Unlike a
ReplicaSet, the selector is a plain label map and may change after creation.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from pilothouse.machinery.errors import FieldError
from pilothouse.machinery.kinds import fields as f
from pilothouse.machinery.kinds import prepare as p
from pilothouse.machinery.kinds.defaults_core import default_pod_template
from pilothouse.machinery.kinds.types import (
    FIELD_LABEL_NOT_SUPPORTED,
    Object,
    ResourceType,
    ScaleSpec,
    Strategy,
    no_field_errors,
    status_strategy,
)
from pilothouse.machinery.kinds.validate_pod import validate_controller_template
from pilothouse.machinery.kinds.vcommon import go_labels, invalid, nonnegative, required
from pilothouse.machinery.meta import child
from pilothouse.machinery.selectors import selector_from_set

__all__ = [
    "REPLICATIONCONTROLLER",
    "REPLICATIONCONTROLLER_STATUS",
    "RESOURCES",
    "default_replicationcontroller",
    "validate_replicationcontroller",
    "validate_replicationcontroller_status",
]

_KIND = "ReplicationController"


def default_replicationcontroller(rc: Object) -> None:
    """``SetDefaults_ReplicationController``: selector and labels from the template's labels when
    unset, one replica; then the pod template's own defaults."""
    spec = child(rc, "spec")
    template = spec.get("template")
    labels = (template.get("metadata") or {}).get("labels") if isinstance(template, dict) else None
    if labels is not None:
        if not spec.get("selector"):
            spec["selector"] = dict(labels)
        metadata = child(rc, "metadata")
        if not metadata.get("labels"):
            metadata["labels"] = dict(labels)
    if spec.get("replicas") is None:
        spec["replicas"] = 1
    default_pod_template(template)


def validate_replicationcontroller(rc: Object) -> list[FieldError]:
    """``ValidateReplicationControllerSpec``, in its order: minReadySeconds, a non-empty selector,
    replicas, then the template (required, labels matching the selector, restartPolicy Always)."""
    spec: dict[str, Any] = rc.get("spec") or {}
    errors = nonnegative(spec.get("minReadySeconds"), "spec.minReadySeconds")
    selector = spec.get("selector") or {}
    if not selector:
        errors.append(required("spec.selector"))
    errors += nonnegative(spec.get("replicas"), "spec.replicas")
    template = spec.get("template")
    if isinstance(template, dict) and selector:
        labels = (template.get("metadata") or {}).get("labels")
        if not selector_from_set(selector).matches(labels):
            errors.append(invalid("spec.template.metadata.labels", go_labels(labels),
                                  "`selector` does not match template `labels`"))
    errors += validate_controller_template(template, "spec.template", _KIND)
    return errors


_COUNTS = ("replicas", "fullyLabeledReplicas", "readyReplicas", "availableReplicas", "observedGeneration")


def validate_replicationcontroller_status(new: Object, _old: Object) -> list[FieldError]:
    """``ValidateReplicationControllerStatus``: counters non-negative, none above status.replicas,
    available never above ready."""
    status: dict[str, Any] = new.get("status") or {}
    errors: list[FieldError] = []
    for name in _COUNTS:
        errors += nonnegative(status.get(name), f"status.{name}")
    count: dict[str, int] = {name: value if isinstance(value := status.get(name), int) else 0
                             for name in _COUNTS}
    for name in ("fullyLabeledReplicas", "readyReplicas", "availableReplicas"):
        if count[name] > count["replicas"]:
            errors.append(invalid(f"status.{name}", count[name], "cannot be greater than status.replicas"))
    if count["availableReplicas"] > count["readyReplicas"]:
        errors.append(invalid("status.availableReplicas", count["availableReplicas"],
                              "cannot be greater than readyReplicas"))
    return errors


REPLICATIONCONTROLLER = Strategy(
    default=default_replicationcontroller,
    validate=validate_replicationcontroller,
    prepare_for_create=p.create_with_zero_status(_KIND),
    prepare_for_update=p.update_keeping_status(),
    # Kubernetes' ControllerToSelectableFields: metadata plus status.replicas, as a ReplicaSet's.
    selectable_fields=f.replicaset_fields,
    field_label_error=FIELD_LABEL_NOT_SUPPORTED,
    # rcStrategy.DefaultGarbageCollectionPolicy: v1 RCs orphan their pods unless told otherwise, "for
    # backwards compatibility" (kubectl always sends a policy, Background by default).
    default_propagation_policy="Orphan",
)
# rcStatusStrategy validates only the status (not the spec) on a /status write.
REPLICATIONCONTROLLER_STATUS = replace(status_strategy(REPLICATIONCONTROLLER), validate=no_field_errors,
                                       validate_update=validate_replicationcontroller_status)

RESOURCES: tuple[ResourceType, ...] = (
    ResourceType("", "v1", _KIND, "replicationcontrollers", True, REPLICATIONCONTROLLER, ("rc",), ("all",),
                 status_strategy=REPLICATIONCONTROLLER_STATUS,
                 scale=ScaleSpec(parse_selector=selector_from_set)),
)
