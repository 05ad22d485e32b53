"""Printers for the core (``v1``) kinds other than pods and events.

Each mirrors its ``print<Kind>`` function in printers.go; the comments note the quirks that
kubectl output shows (``<none>`` placeholders, integer vs string cells, what counts as DATA).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pilothouse.machinery.kinds.types import Object
from pilothouse.machinery.tables.columns import AGE, NAME, Column, Doc, age, printer
from pilothouse.machinery.tables.formatting import format_labels, layout_containers

__all__ = ["access_modes", "format_endpoints", "service_external_ip"]

_CONTAINERS = Column("Containers", priority=1, description="Names of each container in the template.")
_IMAGES = Column("Images", priority=1, description="Images referenced by each container in the template.")

_NODE_ROLE_PREFIX = "node-role.kubernetes.io/"
_NODE_ROLE_LABEL = "kubernetes.io/role"


def _name(obj: Object) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


@printer(
    ("", "Node"),
    [
        NAME,
        Column("Status", description="The status of the node"),
        Column("Roles", description="The roles of the node"),
        AGE,
        Column("Version", description=Doc("core.v1.NodeSystemInfo", "kubeletVersion")),
        Column("Internal-IP", priority=1, description=Doc("core.v1.NodeStatus", "addresses")),
        Column("External-IP", priority=1, description=Doc("core.v1.NodeStatus", "addresses")),
        Column("OS-Image", priority=1, description=Doc("core.v1.NodeSystemInfo", "osImage")),
        Column("Kernel-Version", priority=1, description=Doc("core.v1.NodeSystemInfo", "kernelVersion")),
        Column(
            "Container-Runtime",
            priority=1,
            description=Doc("core.v1.NodeSystemInfo", "containerRuntimeVersion"),
        ),
    ],
)
def node_cells(node: Object, now: datetime) -> list[Any]:
    status = node.get("status") or {}
    labels = (node.get("metadata") or {}).get("labels") or {}
    states: list[str] = []
    # Only the Ready condition decides STATUS; the last one of that type wins, as in Go's map.
    ready = None
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Ready":
            ready = condition
    if ready is not None:
        states.append("Ready" if ready.get("status") == "True" else "NotReady")
    else:
        states.append("Unknown")
    if (node.get("spec") or {}).get("unschedulable"):
        states.append("SchedulingDisabled")

    roles = set()
    for key, value in labels.items():
        if key.startswith(_NODE_ROLE_PREFIX):
            role = key[len(_NODE_ROLE_PREFIX) :]
            if role:
                roles.add(role)
        elif key == _NODE_ROLE_LABEL and value:
            roles.add(value)

    def address(kind: str) -> str:
        for entry in status.get("addresses") or []:
            if entry.get("type") == kind:
                return str(entry.get("address", ""))
        return "<none>"

    info = status.get("nodeInfo") or {}
    return [
        _name(node),
        ",".join(states),
        ",".join(sorted(roles)) or "<none>",
        age(node, now),
        info.get("kubeletVersion", ""),
        address("InternalIP"),
        address("ExternalIP"),
        info.get("osImage") or "<unknown>",
        info.get("kernelVersion") or "<unknown>",
        info.get("containerRuntimeVersion") or "<unknown>",
    ]


@printer(("", "Namespace"), [NAME, Column("Status", description="The status of the namespace"), AGE])
def namespace_cells(ns: Object, now: datetime) -> list[Any]:
    return [_name(ns), (ns.get("status") or {}).get("phase", ""), age(ns, now)]


def _lb_ingress(status: dict[str, Any]) -> str:
    """``loadBalancerStatusStringer`` with wide=true: sorted unique IPs (else hostnames)."""
    found = set()
    for ingress in (status.get("loadBalancer") or {}).get("ingress") or []:
        if ingress.get("ip"):
            found.add(ingress["ip"])
        elif ingress.get("hostname"):
            found.add(ingress["hostname"])
    return ",".join(sorted(found))


def service_external_ip(svc: Object) -> str:
    """``getServiceExternalIP`` (the server always prints wide, so nothing is elided)."""
    spec = svc.get("spec") or {}
    kind = spec.get("type") or "ClusterIP"
    external = spec.get("externalIPs") or []
    if kind in ("ClusterIP", "NodePort"):
        return ",".join(external) if external else "<none>"
    if kind == "LoadBalancer":
        lb = _lb_ingress(svc.get("status") or {})
        if external:
            return ",".join(([*lb.split(",")] if lb else []) + list(external))
        return lb or "<pending>"
    if kind == "ExternalName":
        return str(spec.get("externalName", ""))
    return "<unknown>"


@printer(
    ("", "Service"),
    [
        NAME,
        Column("Type", description=Doc("core.v1.ServiceSpec", "type")),
        Column("Cluster-IP", description=Doc("core.v1.ServiceSpec", "clusterIP")),
        Column("External-IP", description=Doc("core.v1.ServiceSpec", "externalIPs")),
        Column("Port(s)", description=Doc("core.v1.ServiceSpec", "ports")),
        AGE,
        Column("Selector", priority=1, description=Doc("core.v1.ServiceSpec", "selector")),
    ],
)
def service_cells(svc: Object, now: datetime) -> list[Any]:
    spec = svc.get("spec") or {}
    cluster_ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    ports = []
    for port in spec.get("ports") or []:
        protocol = port.get("protocol") or "TCP"
        if port.get("nodePort"):
            ports.append(f"{port.get('port', 0)}:{port['nodePort']}/{protocol}")
        else:
            ports.append(f"{port.get('port', 0)}/{protocol}")
    return [
        _name(svc),
        spec.get("type") or "ClusterIP",
        cluster_ips[0] if cluster_ips else "<none>",
        service_external_ip(svc),
        ",".join(ports) or "<none>",
        age(svc, now),
        format_labels(spec.get("selector")),
    ]


def _host_port(ip: str, port: Any) -> str:
    # net.JoinHostPort brackets IPv6 addresses.
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def format_endpoints(endpoints: Object) -> str:
    """``formatEndpoints`` with all ports: up to three ``ip:port`` then ``+ N more...``."""
    subsets = endpoints.get("subsets") or []
    if not subsets:
        return "<none>"
    shown: list[str] = []
    limit = 3
    more = False
    count = 0
    for subset in subsets:
        addresses = subset.get("addresses") or []
        ports = subset.get("ports") or []
        if not ports:
            # Headless services may have no ports.
            count += len(addresses)
            for address in addresses:
                if len(shown) == limit:
                    more = True
                    break
                shown.append(address.get("ip", ""))
            continue
        for port in ports:
            count += len(addresses)
            for address in addresses:
                if len(shown) == limit:
                    more = True
                    break
                shown.append(_host_port(address.get("ip", ""), port.get("port", 0)))
    text = ",".join(shown)
    return f"{text} + {count - limit} more..." if more else text


@printer(("", "Endpoints"), [NAME, Column("Endpoints", description=Doc("core.v1.Endpoints", "subsets")), AGE])
def endpoints_cells(endpoints: Object, now: datetime) -> list[Any]:
    return [_name(endpoints), format_endpoints(endpoints), age(endpoints, now)]


@printer(("", "ConfigMap"), [NAME, Column("Data", description=Doc("core.v1.ConfigMap", "data")), AGE])
def configmap_cells(cm: Object, now: datetime) -> list[Any]:
    return [_name(cm), len(cm.get("data") or {}) + len(cm.get("binaryData") or {}), age(cm, now)]


@printer(
    ("", "Secret"),
    [
        NAME,
        Column("Type", description=Doc("core.v1.Secret", "type")),
        Column("Data", description=Doc("core.v1.Secret", "data")),
        AGE,
    ],
)
def secret_cells(secret: Object, now: datetime) -> list[Any]:
    return [_name(secret), secret.get("type", ""), len(secret.get("data") or {}), age(secret, now)]


@printer(
    ("", "ServiceAccount"),
    [NAME, Column("Secrets", description=Doc("core.v1.ServiceAccount", "secrets")), AGE],
)
def serviceaccount_cells(sa: Object, now: datetime) -> list[Any]:
    return [_name(sa), len(sa.get("secrets") or []), age(sa, now)]


@printer(
    ("", "ResourceQuota"),
    [
        NAME,
        Column(
            "Request",
            description="Request represents a minimum amount of cpu/memory that a container may consume.",
        ),
        Column(
            "Limit",
            description="Limits control the maximum amount of cpu/memory that a container may use "
            "independent of contention on the node.",
        ),
        AGE,
    ],
)
def resourcequota_cells(quota: Object, now: datetime) -> list[Any]:
    status = quota.get("status") or {}
    hard = status.get("hard") or {}
    used = status.get("used") or {}
    requests: list[str] = []
    limits: list[str] = []
    for resource in sorted(hard):
        pieces = resource.split(".")
        target = limits if len(pieces) > 1 and pieces[0] == "limits" else requests
        target.append(f"{resource}: {used.get(resource, '0')}/{hard[resource]}")
    return [_name(quota), ", ".join(requests), ", ".join(limits), age(quota, now)]


@printer(
    ("", "PodTemplate"),
    [
        NAME,
        Column("Containers", description="Names of each container in the template."),
        Column("Images", description="Images referenced by each container in the template."),
        Column("Pod Labels", description="The labels for the pod template."),
    ],
)
def podtemplate_cells(template: Object, _now: datetime) -> list[Any]:
    pod = template.get("template") or {}
    names, images = layout_containers((pod.get("spec") or {}).get("containers"))
    return [_name(template), names, images, format_labels((pod.get("metadata") or {}).get("labels"))]


@printer(
    ("", "ReplicationController"),
    [
        NAME,
        Column("Desired", type="integer", description=Doc("core.v1.ReplicationControllerSpec", "replicas")),
        Column("Current", type="integer", description=Doc("core.v1.ReplicationControllerStatus", "replicas")),
        Column(
            "Ready", type="integer", description=Doc("core.v1.ReplicationControllerStatus", "readyReplicas")
        ),
        AGE,
        _CONTAINERS,
        _IMAGES,
        Column("Selector", priority=1, description=Doc("core.v1.ReplicationControllerSpec", "selector")),
    ],
)
def replicationcontroller_cells(rc: Object, now: datetime) -> list[Any]:
    spec = rc.get("spec") or {}
    status = rc.get("status") or {}
    template = spec.get("template") or {}
    names, images = layout_containers((template.get("spec") or {}).get("containers"))
    return [
        _name(rc),
        spec.get("replicas", 1),
        status.get("replicas", 0),
        status.get("readyReplicas", 0),
        age(rc, now),
        names,
        images,
        format_labels(spec.get("selector")),
    ]


_ACCESS_MODES = (
    ("ReadWriteOnce", "RWO"),
    ("ReadOnlyMany", "ROX"),
    ("ReadWriteMany", "RWX"),
    ("ReadWriteOncePod", "RWOP"),
)
_BETA_STORAGE_CLASS = "volume.beta.kubernetes.io/storage-class"


def access_modes(modes: list[str] | None) -> str:
    """``helper.GetAccessModesAsString``: RWO,ROX,RWX,RWOP in that fixed order."""
    present = set(modes or [])
    return ",".join(short for mode, short in _ACCESS_MODES if mode in present)


def _storage_class(obj: Object) -> str:
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    if _BETA_STORAGE_CLASS in annotations:
        return str(annotations[_BETA_STORAGE_CLASS])
    return str((obj.get("spec") or {}).get("storageClassName") or "")


@printer(
    ("", "PersistentVolume"),
    [
        NAME,
        Column("Capacity", description=Doc("core.v1.PersistentVolumeSpec", "capacity")),
        Column("Access Modes", description=Doc("core.v1.PersistentVolumeSpec", "accessModes")),
        Column(
            "Reclaim Policy", description=Doc("core.v1.PersistentVolumeSpec", "persistentVolumeReclaimPolicy")
        ),
        Column("Status", description=Doc("core.v1.PersistentVolumeStatus", "phase")),
        Column("Claim", description=Doc("core.v1.PersistentVolumeSpec", "claimRef")),
        Column("StorageClass", description="StorageClass of the pv"),
        Column("VolumeAttributesClass", description="VolumeAttributesClass of the pv"),
        Column("Reason", description=Doc("core.v1.PersistentVolumeStatus", "reason")),
        AGE,
        Column("VolumeMode", priority=1, description=Doc("core.v1.PersistentVolumeSpec", "volumeMode")),
    ],
)
def persistentvolume_cells(pv: Object, now: datetime) -> list[Any]:
    spec = pv.get("spec") or {}
    status = pv.get("status") or {}
    claim = spec.get("claimRef")
    phase = "Terminating" if (pv.get("metadata") or {}).get("deletionTimestamp") else status.get("phase", "")
    return [
        _name(pv),
        (spec.get("capacity") or {}).get("storage", "0"),
        access_modes(spec.get("accessModes")),
        spec.get("persistentVolumeReclaimPolicy", ""),
        phase,
        f"{claim.get('namespace', '')}/{claim.get('name', '')}" if claim else "",
        _storage_class(pv),
        spec.get("volumeAttributesClassName") or "<unset>",
        status.get("reason", ""),
        age(pv, now),
        spec.get("volumeMode") or "<unset>",
    ]


@printer(
    ("", "PersistentVolumeClaim"),
    [
        NAME,
        Column("Status", description=Doc("core.v1.PersistentVolumeClaimStatus", "phase")),
        Column("Volume", description=Doc("core.v1.PersistentVolumeClaimSpec", "volumeName")),
        Column("Capacity", description=Doc("core.v1.PersistentVolumeClaimStatus", "capacity")),
        Column("Access Modes", description=Doc("core.v1.PersistentVolumeClaimStatus", "accessModes")),
        Column("StorageClass", description="StorageClass of the pvc"),
        Column("VolumeAttributesClass", description="VolumeAttributesClass of the pvc"),
        AGE,
        Column("VolumeMode", priority=1, description=Doc("core.v1.PersistentVolumeClaimSpec", "volumeMode")),
    ],
)
def persistentvolumeclaim_cells(pvc: Object, now: datetime) -> list[Any]:
    spec = pvc.get("spec") or {}
    status = pvc.get("status") or {}
    phase = "Terminating" if (pvc.get("metadata") or {}).get("deletionTimestamp") else status.get("phase", "")
    capacity = modes = ""
    # Capacity and access modes show only once the claim is bound to a volume.
    if spec.get("volumeName"):
        modes = access_modes(status.get("accessModes"))
        capacity = (status.get("capacity") or {}).get("storage", "0")
    return [
        _name(pvc),
        phase,
        spec.get("volumeName", ""),
        capacity,
        modes,
        _storage_class(pvc),
        spec.get("volumeAttributesClassName") or "<unset>",
        age(pvc, now),
        spec.get("volumeMode") or "<unset>",
    ]


@printer(
    ("", "ComponentStatus"),
    [
        NAME,
        Column("Status", description="Status of the component conditions"),
        Column("Message", description="Message of the component conditions"),
        Column("Error", description="Error of the component conditions"),
    ],
)
def componentstatus_cells(cs: Object, _now: datetime) -> list[Any]:
    status, message, error = "Unknown", "", ""
    for condition in cs.get("conditions") or []:
        if condition.get("type") == "Healthy":
            status = "Healthy" if condition.get("status") == "True" else "Unhealthy"
            message = condition.get("message", "")
            error = condition.get("error", "")
            break
    return [_name(cs), status, message, error]
