"""Volumes: core/v1 PersistentVolume, PersistentVolumeClaim, PodTemplate and the storage.k8s.io/v1
CSI kinds (CSIDriver, CSINode, CSIStorageCapacity, VolumeAttachment).

The rules users notice, from pkg/apis/core/validation (ValidatePersistentVolumeSpec,
ValidatePersistentVolumeClaimSpec/Update), pkg/apis/core/v1/defaults.go, pkg/apis/storage/v1/defaults.go
and pkg/apis/storage/validation. The persistentvolume-binder controller
(components/controllers/volumebinder.py) binds claims to statically created volumes; nothing
provisions volumes dynamically, attaches them (VolumeAttachment, CSINode and CSIDriver have no
controller) or mounts a claim's volume into a pod yet.
"""

from __future__ import annotations

from typing import Any

from pilothouse.machinery import meta
from pilothouse.machinery.errors import FieldError
from pilothouse.machinery.kinds import defaults_core as d
from pilothouse.machinery.kinds import prepare as p
from pilothouse.machinery.kinds.onupdate import same_on_update
from pilothouse.machinery.kinds.quantity import parse_quantity
from pilothouse.machinery.kinds.types import Object, Strategy, status_strategy
from pilothouse.machinery.kinds.validate_pod import validate_pod_template
from pilothouse.machinery.kinds.vcommon import GoValue, forbidden, invalid, not_supported, required

__all__ = [
    "CSIDRIVER",
    "CSINODE",
    "CSISTORAGECAPACITY",
    "PODTEMPLATE",
    "PV",
    "PVC",
    "PVC_STATUS",
    "PV_STATUS",
    "VOLUMEATTACHMENT",
    "VOLUMEATTACHMENT_STATUS",
    "validate_pv",
    "validate_pvc",
    "validate_pvc_update",
]

ACCESS_MODES = ("ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod")
_RECLAIM_POLICIES = ("Delete", "Recycle", "Retain")
_VOLUME_MODES = ("Block", "Filesystem")
# Every PersistentVolumeSource member: a volume names exactly one of them.
_PV_SOURCES = ("awsElasticBlockStore", "azureDisk", "azureFile", "cephfs", "cinder", "csi", "fc", "flexVolume",
               "flocker", "gcePersistentDisk", "glusterfs", "hostPath", "iscsi", "local", "nfs",
               "photonPersistentDisk", "portworxVolume", "quobyte", "rbd", "scaleIO", "storageos",
               "vsphereVolume")


def _access_mode_errors(modes: list[Any], path: str) -> list[FieldError]:
    errors = [not_supported(path, mode, ACCESS_MODES) for mode in modes if mode not in ACCESS_MODES]
    if "ReadWriteOncePod" in modes and len(modes) > 1:
        errors.append(forbidden(path, "may not use ReadWriteOncePod with other access modes"))
    return errors


def _volume_mode_errors(spec: dict[str, Any], path: str) -> list[FieldError]:
    mode = spec.get("volumeMode")
    return [not_supported(path, mode, _VOLUME_MODES)] if mode is not None and mode not in _VOLUME_MODES else []


# -- PersistentVolume ------------------------------------------------------------------------------

def default_pv(pv: Object) -> None:
    spec = pv.setdefault("spec", {})
    spec.setdefault("persistentVolumeReclaimPolicy", "Retain")
    spec.setdefault("volumeMode", "Filesystem")


def validate_pv(pv: Object) -> list[FieldError]:
    spec = pv.get("spec") or {}
    errors: list[FieldError] = []
    modes = spec.get("accessModes") or []
    if not modes:
        errors.append(required("spec.accessModes"))
    errors += _access_mode_errors(modes, "spec.accessModes")
    capacity = spec.get("capacity") or {}
    if not capacity:
        errors.append(required("spec.capacity"))
    if "storage" not in capacity or len(capacity) > 1:
        errors.append(not_supported("spec.capacity", GoValue(capacity, "core.ResourceList{...}"), ("storage",)))
    policy = spec.get("persistentVolumeReclaimPolicy")
    if policy is not None and policy not in _RECLAIM_POLICIES:
        errors.append(not_supported("spec.persistentVolumeReclaimPolicy", policy, _RECLAIM_POLICIES))
    sources = [name for name in _PV_SOURCES if spec.get(name) is not None]
    if not sources:
        errors.append(required("spec", "must specify a volume type"))
    elif len(sources) > 1:
        errors.append(forbidden(f"spec.{sources[1]}", "may not specify more than 1 volume type"))
    return errors + _volume_mode_errors(spec, "spec.volumeMode")


def prepare_pv_create(pv: Object) -> None:
    """PersistentVolume PrepareForCreate: a new volume is Pending, since now (1.31's GA
    lastPhaseTransitionTime)."""
    pv["status"] = {"phase": "Pending", "lastPhaseTransitionTime": meta.format_time()}


# -- PersistentVolumeClaim -------------------------------------------------------------------------

def default_pvc(pvc: Object) -> None:
    pvc.setdefault("spec", {}).setdefault("volumeMode", "Filesystem")


def validate_pvc(pvc: Object) -> list[FieldError]:
    spec = pvc.get("spec") or {}
    errors: list[FieldError] = []
    modes = spec.get("accessModes") or []
    if not modes:
        errors.append(required("spec.accessModes", "at least 1 access mode is required"))
    errors += _access_mode_errors(modes, "spec.accessModes")
    requests = (spec.get("resources") or {}).get("requests") or {}
    if "storage" not in requests:
        errors.append(required("spec.resources[storage]"))
    elif (parse_quantity(requests["storage"]) or 0) <= 0:
        errors.append(invalid("spec.resources[storage]", str(requests["storage"]), "must be greater than zero"))
    return errors + _volume_mode_errors(spec, "spec.volumeMode")


def validate_pvc_update(new: Object, old: Object) -> list[FieldError]:
    """A claim's spec is immutable but for resources.requests (once bound) and a volumeName set on
    an unbound claim (ValidatePersistentVolumeClaimUpdate, VolumeAttributesClass off in 1.32)."""
    errors = validate_pvc(new)
    new_spec = meta.clone(new.get("spec") or {})
    old_spec = meta.clone(old.get("spec") or {})
    if not old_spec.get("volumeName"):
        new_spec.pop("volumeName", None)
        old_spec.pop("volumeName", None)
    bound = (old.get("status") or {}).get("phase") == "Bound"
    if bound:
        for spec in (new_spec, old_spec):
            (spec.get("resources") or {}).pop("requests", None)
    if new_spec != old_spec:
        errors.append(forbidden("spec", "spec is immutable after creation except resources.requests and "
                                "volumeAttributesClassName for bound claims"))
    return errors


def prepare_pvc_create(pvc: Object) -> None:
    pvc["status"] = {"phase": "Pending"}


# -- PodTemplate -----------------------------------------------------------------------------------

def default_podtemplate(template: Object) -> None:
    d.default_pod_template(template.get("template"))


def validate_podtemplate(template: Object) -> list[FieldError]:
    return validate_pod_template(template.get("template"), "template")


# -- storage.k8s.io --------------------------------------------------------------------------------

def default_csidriver(driver: Object) -> None:
    """storage/v1 SetDefaults_CSIDriver with 1.32's default feature gates."""
    spec = driver.setdefault("spec", {})
    for key, value in (("attachRequired", True), ("podInfoOnMount", False), ("storageCapacity", False),
                       ("fsGroupPolicy", "ReadWriteOnceWithFSType"), ("requiresRepublish", False),
                       ("seLinuxMount", False)):
        spec.setdefault(key, value)
    if not spec.get("volumeLifecycleModes"):
        spec["volumeLifecycleModes"] = ["Persistent"]


_CSIDRIVER_IMMUTABLE = ("attachRequired", "podInfoOnMount", "fsGroupPolicy", "volumeLifecycleModes")


def validate_csidriver_update(new: Object, old: Object) -> list[FieldError]:
    new_spec, old_spec = new.get("spec") or {}, old.get("spec") or {}
    return [invalid(f"spec.{key}", new_spec.get(key), "field is immutable")
            for key in _CSIDRIVER_IMMUTABLE if new_spec.get(key) != old_spec.get(key)]


def validate_volumeattachment(attachment: Object) -> list[FieldError]:
    spec = attachment.get("spec") or {}
    errors: list[FieldError] = []
    if not spec.get("attacher"):
        errors.append(required("spec.attacher"))
    if not spec.get("nodeName"):
        errors.append(required("spec.nodeName"))
    source = spec.get("source") or {}
    given = [key for key in ("persistentVolumeName", "inlineVolumeSpec") if source.get(key)]
    if len(given) != 1:
        errors.append(required("spec.source", "must specify exactly one of inlineVolumeSpec and "
                               "persistentVolumeName"))
    return errors


def validate_volumeattachment_update(new: Object, old: Object) -> list[FieldError]:
    errors = validate_volumeattachment(new)
    if new.get("spec") != old.get("spec"):
        spec = GoValue(new.get("spec"), "storage.VolumeAttachmentSpec{...}")
        errors.append(invalid("spec", spec, "field is immutable"))
    return errors


def validate_csistoragecapacity(capacity: Object) -> list[FieldError]:
    return [] if capacity.get("storageClassName") else [required("storageClassName")]


PV = Strategy(default=default_pv, validate=validate_pv, validate_update=same_on_update(validate_pv),
              prepare_for_create=prepare_pv_create, prepare_for_update=p.update_keeping_status(generation=False))
PV_STATUS = status_strategy(PV)
PVC = Strategy(default=default_pvc, validate=validate_pvc, validate_update=validate_pvc_update,
               prepare_for_create=prepare_pvc_create, prepare_for_update=p.update_keeping_status(generation=False))
PVC_STATUS = status_strategy(PVC)
PODTEMPLATE = Strategy(default=default_podtemplate, validate=validate_podtemplate,
                       validate_update=same_on_update(validate_podtemplate))
CSIDRIVER = Strategy(default=default_csidriver, validate_update=validate_csidriver_update)
CSINODE = Strategy()
CSISTORAGECAPACITY = Strategy(validate=validate_csistoragecapacity)
VOLUMEATTACHMENT = Strategy(validate=validate_volumeattachment, validate_update=validate_volumeattachment_update,
                            prepare_for_create=lambda attachment: attachment.__setitem__("status", {"attached": False}),
                            prepare_for_update=p.update_keeping_status(generation=False))
VOLUMEATTACHMENT_STATUS = status_strategy(VOLUMEATTACHMENT)
