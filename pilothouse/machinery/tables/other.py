"""Printers for the remaining built-in groups (coordination, discovery, policy, networking, rbac,
storage, scheduling, node, admissionregistration, certificates, autoscaling)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pilothouse.machinery.kinds.types import Object
from pilothouse.machinery.tables.columns import AGE, NAME, Column, Doc, age, printer
from pilothouse.machinery.tables.duration import human_duration
from pilothouse.machinery.tables.formatting import format_label_selector, int_or_string

__all__ = ["format_hpa_metrics", "list_with_more"]


def _name(obj: Object) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def list_with_more(shown: list[str], more: bool, count: int, limit: int) -> str:
    """``listWithMoreString``: ``a,b,c + N more...``, or ``<unset>`` for nothing."""
    text = ",".join(shown)
    if more:
        return f"{text} + {count - limit} more..."
    return text or "<unset>"


@printer(
    ("coordination.k8s.io", "Lease"),
    [NAME, Column("Holder", description=Doc("coordination.v1.LeaseSpec", "holderIdentity")), AGE],
)
def lease_cells(lease: Object, now: datetime) -> list[Any]:
    return [_name(lease), (lease.get("spec") or {}).get("holderIdentity") or "", age(lease, now)]


@printer(
    ("discovery.k8s.io", "EndpointSlice"),
    [
        NAME,
        Column("AddressType", description=Doc("discovery.v1.EndpointSlice", "addressType")),
        Column("Ports", description=Doc("discovery.v1.EndpointSlice", "ports")),
        Column("Endpoints", description=Doc("discovery.v1.EndpointSlice", "endpoints")),
        AGE,
    ],
)
def endpointslice_cells(eps: Object, now: datetime) -> list[Any]:
    limit = 3
    ports: list[str] = []
    port_count = 0
    for port in eps.get("ports") or []:
        if len(ports) < limit:
            if port.get("port") is not None:
                ports.append(str(port["port"]))
            elif port.get("name") is not None:
                ports.append(str(port["name"]))
            else:
                ports.append("*")
        port_count += 1
    addresses: list[str] = []
    address_count = 0
    for endpoint in eps.get("endpoints") or []:
        for address in endpoint.get("addresses") or []:
            if len(addresses) < limit:
                addresses.append(address)
            address_count += 1
    return [
        _name(eps),
        eps.get("addressType", ""),
        list_with_more(ports, port_count > limit, port_count, limit),
        list_with_more(addresses, address_count > limit, address_count, limit),
        age(eps, now),
    ]


@printer(
    ("policy", "PodDisruptionBudget"),
    [
        NAME,
        Column("Min Available", description="The minimum number of pods that must be available."),
        Column("Max Unavailable", description="The maximum number of pods that may be unavailable."),
        Column(
            "Allowed Disruptions",
            type="integer",
            description="Calculated number of pods that may be disrupted at this time.",
        ),
        AGE,
    ],
)
def pdb_cells(pdb: Object, now: datetime) -> list[Any]:
    spec = pdb.get("spec") or {}
    min_available = spec.get("minAvailable")
    max_unavailable = spec.get("maxUnavailable")
    return [
        _name(pdb),
        "N/A" if min_available is None else int_or_string(min_available),
        "N/A" if max_unavailable is None else int_or_string(max_unavailable),
        (pdb.get("status") or {}).get("disruptionsAllowed", 0),
        age(pdb, now),
    ]


@printer(
    ("networking.k8s.io", "Ingress"),
    [
        NAME,
        Column(
            "Class",
            description="The name of the IngressClass resource that should be used for additional "
            "configuration",
        ),
        Column(
            "Hosts", description="Hosts that incoming requests are matched against before the ingress rule"
        ),
        Column("Address", description="Address is a list containing ingress points for the load-balancer"),
        Column("Ports", description="Ports of TLS configurations that open"),
        AGE,
    ],
)
def ingress_cells(ing: Object, now: datetime) -> list[Any]:
    spec = ing.get("spec") or {}
    rules = spec.get("rules") or []
    hosts: list[str] = []
    more = False
    for rule in rules:
        if len(hosts) == 3:
            more = True
        if not more and rule.get("host"):
            hosts.append(rule["host"])
    host_text = ",".join(hosts) if hosts else "*"
    if hosts and more:
        host_text = f"{host_text} + {len(rules) - 3} more..."
    found = set()
    for entry in ((ing.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []:
        if entry.get("ip"):
            found.add(entry["ip"])
        elif entry.get("hostname"):
            found.add(entry["hostname"])
    return [
        _name(ing),
        spec.get("ingressClassName") or "<none>",
        host_text,
        ",".join(sorted(found)),
        "80, 443" if spec.get("tls") else "80",
        age(ing, now),
    ]


@printer(
    ("networking.k8s.io", "IngressClass"),
    [
        NAME,
        Column("Controller", description="Controller that is responsible for handling this class"),
        Column("Parameters", description="A reference to a resource with additional parameters"),
        AGE,
    ],
)
def ingressclass_cells(ic: Object, now: datetime) -> list[Any]:
    spec = ic.get("spec") or {}
    params = spec.get("parameters")
    text = "<none>"
    if params is not None:
        text = params.get("kind", "")
        if params.get("apiGroup") is not None:
            text += "." + params["apiGroup"]
        text += "/" + params.get("name", "")
    return [_name(ic), spec.get("controller", ""), text, age(ic, now)]


@printer(
    ("networking.k8s.io", "NetworkPolicy"),
    [NAME, Column("Pod-Selector", description=Doc("networking.v1.NetworkPolicySpec", "podSelector")), AGE],
)
def networkpolicy_cells(np: Object, now: datetime) -> list[Any]:
    selector = (np.get("spec") or {}).get("podSelector") or {}
    return [_name(np), format_label_selector(selector), age(np, now)]


def _binding_columns(what: str) -> list[Column]:
    return [
        NAME,
        Column("Role", description=Doc(f"rbac.v1.{what[0].upper()}{what[1:]}", "roleRef")),
        AGE,
        Column("Users", priority=1, description=f"Users in the {what}"),
        Column("Groups", priority=1, description=f"Groups in the {what}"),
        Column("ServiceAccounts", priority=1, description=f"ServiceAccounts in the {what}"),
    ]


def _binding_cells(binding: Object, now: datetime) -> list[Any]:
    ref = binding.get("roleRef") or {}
    users: list[str] = []
    groups: list[str] = []
    accounts: list[str] = []
    for subject in binding.get("subjects") or []:
        kind = subject.get("kind")
        if kind == "ServiceAccount":
            # rbac.SubjectsStrings: namespace/name, or the bare name when no namespace is given.
            namespace = subject.get("namespace")
            accounts.append(f"{namespace}/{subject.get('name', '')}" if namespace else subject.get("name", ""))
        elif kind == "User":
            users.append(subject.get("name", ""))
        elif kind == "Group":
            groups.append(subject.get("name", ""))
    return [
        _name(binding),
        f"{ref.get('kind', '')}/{ref.get('name', '')}",
        age(binding, now),
        ", ".join(users),
        ", ".join(groups),
        ", ".join(accounts),
    ]


printer(("rbac.authorization.k8s.io", "RoleBinding"), _binding_columns("roleBinding"))(_binding_cells)
printer(("rbac.authorization.k8s.io", "ClusterRoleBinding"), _binding_columns("clusterRoleBinding"))(
    _binding_cells
)

_DEFAULT_CLASS = (
    "storageclass.kubernetes.io/is-default-class",
    "storageclass.beta.kubernetes.io/is-default-class",
)


@printer(
    ("storage.k8s.io", "StorageClass"),
    [
        NAME,
        Column("Provisioner", description=Doc("storage.v1.StorageClass", "provisioner")),
        Column("ReclaimPolicy", description=Doc("storage.v1.StorageClass", "reclaimPolicy")),
        Column("VolumeBindingMode", description=Doc("storage.v1.StorageClass", "volumeBindingMode")),
        Column("AllowVolumeExpansion", description=Doc("storage.v1.StorageClass", "allowVolumeExpansion")),
        AGE,
    ],
)
def storageclass_cells(sc: Object, now: datetime) -> list[Any]:
    annotations = (sc.get("metadata") or {}).get("annotations") or {}
    name = _name(sc)
    if any(annotations.get(key) == "true" for key in _DEFAULT_CLASS):
        name += " (default)"
    return [
        name,
        sc.get("provisioner", ""),
        sc.get("reclaimPolicy") or "Delete",
        sc.get("volumeBindingMode") or "Immediate",
        bool(sc.get("allowVolumeExpansion")),
        age(sc, now),
    ]


@printer(
    ("scheduling.k8s.io", "PriorityClass"),
    [
        NAME,
        Column("Value", type="integer", description=Doc("scheduling.v1.PriorityClass", "value")),
        Column(
            "Global-Default", type="boolean", description=Doc("scheduling.v1.PriorityClass", "globalDefault")
        ),
        AGE,
        Column("PreemptionPolicy", description=Doc("scheduling.v1.PriorityClass", "preemptionPolicy")),
    ],
)
def priorityclass_cells(pc: Object, now: datetime) -> list[Any]:
    return [
        _name(pc),
        pc.get("value", 0),
        bool(pc.get("globalDefault")),
        age(pc, now),
        pc.get("preemptionPolicy") or "",
    ]


@printer(
    ("node.k8s.io", "RuntimeClass"),
    [NAME, Column("Handler", description=Doc("node.v1.RuntimeClass", "handler")), AGE],
)
def runtimeclass_cells(rc: Object, now: datetime) -> list[Any]:
    return [_name(rc), rc.get("handler", ""), age(rc, now)]


_WEBHOOKS = [
    NAME,
    Column(
        "Webhooks",
        type="integer",
        description="Webhooks indicates the number of webhooks registered in this configuration",
    ),
    AGE,
]


@printer(
    [
        ("admissionregistration.k8s.io", "MutatingWebhookConfiguration"),
        ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"),
    ],
    _WEBHOOKS,
)
def webhook_configuration_cells(config: Object, now: datetime) -> list[Any]:
    return [_name(config), len(config.get("webhooks") or []), age(config, now)]


@printer(
    ("certificates.k8s.io", "CertificateSigningRequest"),
    [
        NAME,
        AGE,
        Column("SignerName", description=Doc("certificates.v1.CertificateSigningRequestSpec", "signerName")),
        Column("Requestor", description=Doc("certificates.v1.CertificateSigningRequestSpec", "request")),
        Column(
            "RequestedDuration",
            description=Doc("certificates.v1.CertificateSigningRequestSpec", "expirationSeconds"),
        ),
        Column("Condition", description=Doc("certificates.v1.CertificateSigningRequestStatus", "conditions")),
    ],
)
def csr_cells(csr: Object, now: datetime) -> list[Any]:
    spec = csr.get("spec") or {}
    status = csr.get("status") or {}
    kinds = {c.get("type") for c in status.get("conditions") or []}
    text = "Denied" if "Denied" in kinds else "Approved" if "Approved" in kinds else "Pending"
    if "Failed" in kinds:
        text += ",Failed"
    if status.get("certificate"):
        text += ",Issued"
    seconds = spec.get("expirationSeconds")
    return [
        _name(csr),
        age(csr, now),
        spec.get("signerName") or "<none>",
        spec.get("username", ""),
        human_duration(seconds) if seconds is not None else "<none>",
        text,
    ]


def _current(status: dict[str, Any] | None, source: str, field: str) -> str:
    value = ((status or {}).get(source) or {}).get("current", {}).get(field)
    return "<unknown>" if value is None else str(value)


def format_hpa_metrics(specs: list[dict[str, Any]], statuses: list[dict[str, Any]]) -> str:
    """``formatHPAMetrics`` for autoscaling/v2 metrics: at most two, then ``+ N more...``."""
    if not specs:
        return "<none>"
    shown: list[str] = []
    for index, spec in enumerate(specs):
        status = statuses[index] if index < len(statuses) else None
        kind = spec.get("type")
        if kind in ("External", "Object"):
            source = kind[0].lower() + kind[1:]
            target = (spec.get(source) or {}).get("target") or {}
            if target.get("averageValue") is not None:
                shown.append(f"{_current(status, source, 'averageValue')}/{target['averageValue']} (avg)")
            else:
                shown.append(f"{_current(status, source, 'value')}/{target.get('value', '<unknown>')}")
        elif kind == "Pods":
            target = (spec.get("pods") or {}).get("target") or {}
            shown.append(
                f"{_current(status, 'pods', 'averageValue')}/{target.get('averageValue', '<unknown>')}"
            )
        elif kind in ("Resource", "ContainerResource"):
            source = "resource" if kind == "Resource" else "containerResource"
            metric = spec.get(source) or {}
            target = metric.get("target") or {}
            if target.get("averageValue") is not None:
                current = _current(status, source, "averageValue")
                shown.append(f"{metric.get('name', '')}: {current}/{target['averageValue']}")
            else:
                utilization = ((status or {}).get(source) or {}).get("current", {}).get("averageUtilization")
                current = "<unknown>" if utilization is None else f"{utilization}%"
                goal = target.get("averageUtilization")
                shown.append(
                    f"{metric.get('name', '')}: {current}/{'<auto>' if goal is None else f'{goal}%'}"
                )
        else:
            shown.append("<unknown type>")
    if len(shown) > 2:
        return f"{', '.join(shown[:2])} + {len(shown) - 2} more..."
    return ", ".join(shown)


@printer(
    ("autoscaling", "HorizontalPodAutoscaler"),
    [
        NAME,
        Column("Reference", description=Doc("autoscaling.v2.HorizontalPodAutoscalerSpec", "scaleTargetRef")),
        Column("Targets", description=Doc("autoscaling.v2.HorizontalPodAutoscalerSpec", "metrics")),
        Column("MinPods", description=Doc("autoscaling.v2.HorizontalPodAutoscalerSpec", "minReplicas")),
        Column("MaxPods", description=Doc("autoscaling.v2.HorizontalPodAutoscalerSpec", "maxReplicas")),
        Column(
            "Replicas", description=Doc("autoscaling.v2.HorizontalPodAutoscalerStatus", "currentReplicas")
        ),
        AGE,
    ],
)
def hpa_cells(hpa: Object, now: datetime) -> list[Any]:
    spec = hpa.get("spec") or {}
    status = hpa.get("status") or {}
    metrics = spec.get("metrics")
    current = status.get("currentMetrics") or []
    if metrics is None and "targetCPUUtilizationPercentage" in spec:
        # autoscaling/v1 shape: one CPU utilisation metric.
        metrics = [
            {
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "target": {"averageUtilization": spec["targetCPUUtilizationPercentage"]},
                },
            }
        ]
        observed = status.get("currentCPUUtilizationPercentage")
        current = (
            [{"resource": {"current": {"averageUtilization": observed}}}] if observed is not None else []
        )
    ref = spec.get("scaleTargetRef") or {}
    min_replicas = spec.get("minReplicas")
    return [
        _name(hpa),
        f"{ref.get('kind', '')}/{ref.get('name', '')}",
        format_hpa_metrics(metrics or [], current),
        "<unset>" if min_replicas is None else str(min_replicas),
        spec.get("maxReplicas", 0),
        status.get("currentReplicas", 0),
        age(hpa, now),
    ]
