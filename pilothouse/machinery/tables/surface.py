"""Printers for the storage, admission-policy, flowcontrol and apiregistration kinds that had none:
the columns and cells of pkg/printers/internalversion/printers.go (1.32) and, for APIService,
kube-aggregator's ``ConvertToTable`` (staging/.../registry/apiservice/etcd/etcd.go)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pilothouse.machinery.kinds.types import Object
from pilothouse.machinery.tables.columns import AGE, NAME, Column, Doc, age, printer
from pilothouse.machinery.tables.formatting import format_label_selector

__all__ = ["apiservice_available"]


def _name(obj: Object) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def _spec(obj: Object) -> dict[str, Any]:
    return obj.get("spec") or {}


@printer(("storage.k8s.io", "CSIDriver"), [
    NAME,
    Column("AttachRequired", type="boolean", description=Doc("storage.v1.CSIDriverSpec", "attachRequired")),
    Column("PodInfoOnMount", type="boolean", description=Doc("storage.v1.CSIDriverSpec", "podInfoOnMount")),
    Column("StorageCapacity", type="boolean", description=Doc("storage.v1.CSIDriverSpec", "storageCapacity")),
    Column("TokenRequests", description=Doc("storage.v1.CSIDriverSpec", "tokenRequests")),
    Column("RequiresRepublish", type="boolean", description=Doc("storage.v1.CSIDriverSpec", "requiresRepublish")),
    Column("Modes", description=Doc("storage.v1.CSIDriverSpec", "volumeLifecycleModes")),
    AGE,
])
def csidriver_cells(driver: Object, now: datetime) -> list[Any]:
    spec = _spec(driver)
    audiences = [t.get("audience", "") for t in spec.get("tokenRequests") or ()]
    modes = ",".join(spec.get("volumeLifecycleModes") or ())
    return [_name(driver), spec.get("attachRequired", True), spec.get("podInfoOnMount", False),
            spec.get("storageCapacity", False), ",".join(audiences) if audiences else "<unset>",
            spec.get("requiresRepublish", False), modes or "<none>", age(driver, now)]


@printer(("storage.k8s.io", "CSINode"), [
    NAME,
    Column("Drivers", type="integer", description="Drivers indicates the number of CSI drivers registered on the node"),
    AGE,
])
def csinode_cells(node: Object, now: datetime) -> list[Any]:
    return [_name(node), len(_spec(node).get("drivers") or ()), age(node, now)]


@printer(("storage.k8s.io", "CSIStorageCapacity"), [
    NAME,
    Column("StorageClassName", description=Doc("storage.v1.CSIStorageCapacity", "storageClassName")),
    Column("Capacity", description=Doc("storage.v1.CSIStorageCapacity", "capacity")),
])
def csistoragecapacity_cells(capacity: Object, _now: datetime) -> list[Any]:
    return [_name(capacity), capacity.get("storageClassName", ""), capacity.get("capacity") or "<unset>"]


@printer(("storage.k8s.io", "VolumeAttachment"), [
    NAME,
    Column("Attacher", format="name", description=Doc("storage.v1.VolumeAttachmentSpec", "attacher")),
    Column("PV", description=Doc("storage.v1.VolumeAttachmentSource", "persistentVolumeName")),
    Column("Node", description=Doc("storage.v1.VolumeAttachmentSpec", "nodeName")),
    Column("Attached", type="boolean", description=Doc("storage.v1.VolumeAttachmentStatus", "attached")),
    AGE,
])
def volumeattachment_cells(attachment: Object, now: datetime) -> list[Any]:
    spec = _spec(attachment)
    return [_name(attachment), spec.get("attacher", ""), (spec.get("source") or {}).get("persistentVolumeName", ""),
            spec.get("nodeName", ""), bool((attachment.get("status") or {}).get("attached")), age(attachment, now)]


@printer(("admissionregistration.k8s.io", "ValidatingAdmissionPolicy"), [
    NAME,
    Column("Validations", type="integer",
           description="Validations indicates the number of validation rules defined in this configuration"),
    Column("ParamKind", description="ParamKind specifies the kind of resources used to parameterize this policy"),
    AGE,
])
def validatingadmissionpolicy_cells(policy: Object, now: datetime) -> list[Any]:
    spec = _spec(policy)
    param = spec.get("paramKind")
    param_kind = f"{param.get('apiVersion', '')}/{param.get('kind', '')}" if param is not None else "<unset>"
    return [_name(policy), len(spec.get("validations") or ()), param_kind, age(policy, now)]


@printer(("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding"), [
    NAME,
    Column("PolicyName", description="PolicyName indicates the policy definition which the policy binding binded to"),
    Column("ParamRef", description="ParamRef indicates the param resource which sets the configration param"),
    AGE,
])
def validatingadmissionpolicybinding_cells(binding: Object, now: datetime) -> list[Any]:
    spec = _spec(binding)
    ref = spec.get("paramRef")
    param = "<unset>"
    if ref is not None:
        if ref.get("name"):
            # Without the policy's paramKind a name alone cannot tell its scope: "*" namespace.
            param = f"{ref.get('namespace') or '*'}/{ref['name']}"
        elif ref.get("selector") is not None:
            param = format_label_selector(ref["selector"])
    return [_name(binding), spec.get("policyName", ""), param, age(binding, now)]


@printer(("flowcontrol.apiserver.k8s.io", "FlowSchema"), [
    NAME,
    Column("PriorityLevel", description=Doc("flowcontrol.v1.PriorityLevelConfigurationReference", "name")),
    Column("MatchingPrecedence", description=Doc("flowcontrol.v1.FlowSchemaSpec", "matchingPrecedence")),
    Column("DistinguisherMethod", description=Doc("flowcontrol.v1.FlowSchemaSpec", "distinguisherMethod")),
    AGE,
    Column("MissingPL", description="references a broken or non-existent PriorityLevelConfiguration"),
])
def flowschema_cells(schema: Object, now: datetime) -> list[Any]:
    spec = _spec(schema)
    method = (spec.get("distinguisherMethod") or {}).get("type") or "<none>"
    dangling = "?"
    for condition in (schema.get("status") or {}).get("conditions") or ():
        if condition.get("type") == "Dangling":
            dangling = condition.get("status", "?")
            break
    return [_name(schema), (spec.get("priorityLevelConfiguration") or {}).get("name", ""),
            spec.get("matchingPrecedence", 0), method, age(schema, now), dangling]


@printer(("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration"), [
    NAME,
    Column("Type", description=Doc("flowcontrol.v1.PriorityLevelConfigurationSpec", "type")),
    Column("NominalConcurrencyShares",
           description=Doc("flowcontrol.v1.LimitedPriorityLevelConfiguration", "nominalConcurrencyShares")),
    Column("Queues", description=Doc("flowcontrol.v1.QueuingConfiguration", "queues")),
    Column("HandSize", description=Doc("flowcontrol.v1.QueuingConfiguration", "handSize")),
    Column("QueueLengthLimit", description=Doc("flowcontrol.v1.QueuingConfiguration", "queueLengthLimit")),
    AGE,
])
def prioritylevel_cells(level: Object, now: datetime) -> list[Any]:
    spec = _spec(level)
    cells: list[Any] = ["<none>"] * 4
    limited = spec.get("limited")
    if limited is not None:
        cells[0] = limited.get("nominalConcurrencyShares", 0)
        queuing = (limited.get("limitResponse") or {}).get("queuing")
        if queuing is not None:
            cells[1:] = [queuing.get("queues", 0), queuing.get("handSize", 0), queuing.get("queueLengthLimit", 0)]
    return [_name(level), spec.get("type", ""), *cells, age(level, now)]


def apiservice_available(service: Object) -> str:
    """The AVAILABLE cell: the Available condition's status, with its reason when not True."""
    for condition in (service.get("status") or {}).get("conditions") or ():
        if condition.get("type") == "Available":
            status = str(condition.get("status", ""))
            reason = condition.get("reason")
            return f"{status} ({reason})" if status != "True" and reason else status
    return "Unknown"


@printer(("apiregistration.k8s.io", "APIService"), [
    NAME,
    Column("Service", description="The reference to the service that hosts this API endpoint."),
    Column("Available", description="Whether this service is available."),
    AGE,
])
def apiservice_cells(service: Object, now: datetime) -> list[Any]:
    backend = _spec(service).get("service")
    where = f"{backend.get('namespace', '')}/{backend.get('name', '')}" if backend is not None else "Local"
    return [_name(service), where, apiservice_available(service), age(service, now)]
