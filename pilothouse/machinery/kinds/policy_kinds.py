"""Kinds that admission plugins enabled by default read: PriorityClass, StorageClass.

Rules as pkg/apis/scheduling/validation and pkg/apis/storage/validation write them, defaults as
their v1 ``SetDefaults_*``. Neither kind has a controller: the Priority and DefaultStorageClass
admission plugins read them (``machinery/admission``), and the API server creates the two system
PriorityClasses at startup, as kube-apiserver's scheduling post-start hook does.
"""

from __future__ import annotations

from typing import Any

from pilothouse.machinery.errors import FieldError
from pilothouse.machinery.kinds.types import Object, ResourceType, Strategy
from pilothouse.machinery.kinds.vcommon import forbidden, invalid, not_supported, required
from pilothouse.machinery.validation.names import is_qualified_name

__all__ = [
    "HIGHEST_USER_DEFINABLE_PRIORITY",
    "PRIORITYCLASS",
    "RESOURCES",
    "STORAGECLASS",
    "SYSTEM_PRIORITY_CLASSES",
    "default_priority_class",
    "default_storage_class",
    "validate_priority_class",
    "validate_priority_class_update",
    "validate_storage_class",
    "validate_storage_class_update",
]

HIGHEST_USER_DEFINABLE_PRIORITY = 1_000_000_000
_SYSTEM_CRITICAL_PRIORITY = 2 * HIGHEST_USER_DEFINABLE_PRIORITY
_SYSTEM_PREFIX = "system-"
_PREEMPTION_POLICIES = ("Never", "PreemptLowerPriority")

#: The classes kube-apiserver creates at startup (pkg/apis/scheduling: systemPriorityClasses).
SYSTEM_PRIORITY_CLASSES: tuple[Object, ...] = (
    {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
     "metadata": {"name": "system-node-critical"}, "value": _SYSTEM_CRITICAL_PRIORITY + 1000,
     "description": "Used for system critical pods that must not be moved from their current node."},
    {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
     "metadata": {"name": "system-cluster-critical"}, "value": _SYSTEM_CRITICAL_PRIORITY,
     "description": "Used for system critical pods that must run in the cluster, but can be moved to "
                    "another node if necessary."},
)


# -- PriorityClass -----------------------------------------------------------------------------

def default_priority_class(pc: Object) -> None:
    """SetDefaults_PriorityClass; ``value`` is a non-omitempty int32, so an absent one reads 0."""
    pc.setdefault("value", 0)
    if pc.get("preemptionPolicy") is None:
        pc["preemptionPolicy"] = "PreemptLowerPriority"


def _known_system_class(name: str, value: Any, global_default: bool) -> str:
    """IsKnownSystemPriorityClass: "" when it is one, else why not."""
    for known in SYSTEM_PRIORITY_CLASSES:
        if known["metadata"]["name"] == name:
            if known["value"] != value:
                return f"value of {name} PriorityClass must be {known['value']}"
            if global_default:
                return f"globalDefault of {name} PriorityClass must be false"
            return ""
    return f"{name} is not a known system priority class"


def validate_priority_class(pc: Object) -> list[FieldError]:
    name = (pc.get("metadata") or {}).get("name") or ""
    value = pc.get("value", 0)
    errors: list[FieldError] = []
    if name.startswith(_SYSTEM_PREFIX):
        why = _known_system_class(name, value, bool(pc.get("globalDefault")))
        if why:
            errors.append(forbidden("metadata.name", f"priority class names with '{_SYSTEM_PREFIX}' prefix "
                                    f"are reserved for system use only. error: {why}"))
    elif isinstance(value, int) and value > HIGHEST_USER_DEFINABLE_PRIORITY:
        errors.append(forbidden("value", "maximum allowed value of a user defined priority is "
                                f"{HIGHEST_USER_DEFINABLE_PRIORITY}"))
    policy = pc.get("preemptionPolicy")
    if policy is not None and policy not in _PREEMPTION_POLICIES:
        errors.append(not_supported("preemptionPolicy", policy, _PREEMPTION_POLICIES))
    return errors


def validate_priority_class_update(new: Object, old: Object) -> list[FieldError]:
    errors: list[FieldError] = []
    if new.get("value") != old.get("value"):
        errors.append(forbidden("value", "may not be changed in an update."))
    if new.get("preemptionPolicy") != old.get("preemptionPolicy"):
        errors.append(invalid("preemptionPolicy", new.get("preemptionPolicy"), "field is immutable"))
    return errors


# -- StorageClass ------------------------------------------------------------------------------

_MAX_PARAMETERS = 512
_MAX_PARAMETERS_SIZE = 256 * 1024
_RECLAIM_POLICIES = ("Delete", "Retain")
_BINDING_MODES = ("Immediate", "WaitForFirstConsumer")


def default_storage_class(sc: Object) -> None:
    """SetDefaults_StorageClass."""
    if not sc.get("reclaimPolicy"):
        sc["reclaimPolicy"] = "Delete"
    if not sc.get("volumeBindingMode"):
        sc["volumeBindingMode"] = "Immediate"


def _parameter_errors(parameters: dict[str, Any]) -> list[FieldError]:
    errors: list[FieldError] = []
    if len(parameters) > _MAX_PARAMETERS:
        errors.append(FieldError("FieldValueTooLong", "parameters",
                                 f"may not be more than {_MAX_PARAMETERS} bytes"))
    size = 0
    for key, value in parameters.items():
        if not key:
            errors.append(invalid("parameters", key, "field can not be empty."))
        size += len(key) + len(str(value))
    if size > _MAX_PARAMETERS_SIZE:
        errors.append(FieldError("FieldValueTooLong", "parameters",
                                 f"may not be more than {_MAX_PARAMETERS_SIZE} bytes"))
    return errors


def validate_storage_class(sc: Object) -> list[FieldError]:
    errors: list[FieldError] = []
    provisioner = sc.get("provisioner") or ""
    if not provisioner:
        errors.append(required("provisioner"))
    else:
        errors += [invalid("provisioner", provisioner.lower(), why)
                   for why in is_qualified_name(provisioner.lower())]
    errors += _parameter_errors(sc.get("parameters") or {})
    policy = sc.get("reclaimPolicy")
    if policy and policy not in _RECLAIM_POLICIES:
        errors.append(not_supported("reclaimPolicy", policy, _RECLAIM_POLICIES))
    mode = sc.get("volumeBindingMode")
    if not mode:
        errors.append(required("volumeBindingMode"))
    elif mode not in _BINDING_MODES:
        errors.append(not_supported("volumeBindingMode", mode, _BINDING_MODES))
    return errors


def validate_storage_class_update(new: Object, old: Object) -> list[FieldError]:
    errors: list[FieldError] = []
    if (new.get("parameters") or {}) != (old.get("parameters") or {}):
        errors.append(forbidden("parameters", "updates to parameters are forbidden."))
    if new.get("provisioner") != old.get("provisioner"):
        errors.append(forbidden("provisioner", "updates to provisioner are forbidden."))
    if new.get("reclaimPolicy") != old.get("reclaimPolicy"):
        errors.append(forbidden("reclaimPolicy", "updates to reclaimPolicy are forbidden."))
    if new.get("volumeBindingMode") != old.get("volumeBindingMode"):
        errors.append(invalid("volumeBindingMode", new.get("volumeBindingMode"), "field is immutable"))
    return errors


PRIORITYCLASS = Strategy(default=default_priority_class, validate=validate_priority_class,
                         validate_update=validate_priority_class_update)
STORAGECLASS = Strategy(default=default_storage_class, validate=validate_storage_class,
                        validate_update=validate_storage_class_update)

RESOURCES: tuple[ResourceType, ...] = (
    ResourceType("scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", False, PRIORITYCLASS, ("pc",)),
    ResourceType("storage.k8s.io", "v1", "StorageClass", "storageclasses", False, STORAGECLASS, ("sc",)),
)
