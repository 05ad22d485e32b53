"""Field selector values per kind (Kubernetes' ``ToSelectableFields`` / ``GetAttrs``), and name rules.

``kubectl get pods --field-selector spec.nodeName=n1`` and every kubelet watch depend on these.
Only the labels Kubernetes supports are present, so a selector on any other field can be
rejected as Kubernetes does ("field label not supported"). Values are strings, booleans are
"true"/"false", a missing field is "". Cluster-scoped kinds have no ``metadata.namespace``.
"""

from __future__ import annotations

from typing import Any

from pilothouse.machinery.kinds.types import Object

__all__ = [
    "NAME_RULES",
    "cluster_metadata_fields",
    "core_event_fields",
    "events_v1_fields",
    "job_fields",
    "namespace_fields",
    "node_fields",
    "pod_fields",
    "replicaset_fields",
    "secret_fields",
    "service_fields",
]

#: Which name format each kind requires: "subdomain" (DNS-1123 subdomain, the default),
#: "label" (DNS-1123 label), "dns1035-label" (DNS-1035 label: starts with a letter; Services),
#: "path-segment" (anything that is a valid URL path segment).
NAME_RULES: dict[tuple[str, str], str] = {
    ("", "Namespace"): "label",
    ("", "Service"): "dns1035-label",
    ("", "Pod"): "subdomain",
    ("", "Node"): "subdomain",
    ("", "Endpoints"): "subdomain",
    ("", "ConfigMap"): "subdomain",
    ("", "Secret"): "subdomain",
    ("", "ServiceAccount"): "subdomain",
    ("", "Event"): "subdomain",
    ("", "ResourceQuota"): "subdomain",
    ("", "LimitRange"): "subdomain",
    ("", "ReplicationController"): "subdomain",
    ("apps", "Deployment"): "subdomain",
    ("apps", "ReplicaSet"): "subdomain",
    ("apps", "StatefulSet"): "label",
    ("apps", "DaemonSet"): "subdomain",
    ("apps", "ControllerRevision"): "subdomain",
    ("batch", "Job"): "subdomain",
    ("batch", "CronJob"): "subdomain",
    ("coordination.k8s.io", "Lease"): "subdomain",
    ("events.k8s.io", "Event"): "subdomain",
    ("discovery.k8s.io", "EndpointSlice"): "subdomain",
    ("policy", "PodDisruptionBudget"): "subdomain",
    **{("rbac.authorization.k8s.io", kind): "path-segment"
       for kind in ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")},
    ("scheduling.k8s.io", "PriorityClass"): "subdomain",
    ("storage.k8s.io", "StorageClass"): "subdomain",
    # The surface kinds (machinery/kinds/surface.py): subdomains, but APIServices ("v1." is one).
    **{key: "subdomain" for key in (
        ("", "PersistentVolume"), ("", "PersistentVolumeClaim"), ("", "PodTemplate"), ("", "ComponentStatus"),
        ("", "Binding"), ("authentication.k8s.io", "TokenReview"), ("authentication.k8s.io", "SelfSubjectReview"),
        ("authorization.k8s.io", "SubjectAccessReview"), ("authorization.k8s.io", "SelfSubjectAccessReview"),
        ("authorization.k8s.io", "LocalSubjectAccessReview"), ("authorization.k8s.io", "SelfSubjectRulesReview"),
        ("autoscaling", "HorizontalPodAutoscaler"), ("networking.k8s.io", "Ingress"),
        ("networking.k8s.io", "IngressClass"), ("networking.k8s.io", "NetworkPolicy"),
        ("certificates.k8s.io", "CertificateSigningRequest"), ("storage.k8s.io", "CSIDriver"),
        ("storage.k8s.io", "CSINode"), ("storage.k8s.io", "CSIStorageCapacity"), ("storage.k8s.io", "VolumeAttachment"),
        ("node.k8s.io", "RuntimeClass"), ("admissionregistration.k8s.io", "MutatingWebhookConfiguration"),
        ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"),
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy"),
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding"),
        ("flowcontrol.apiserver.k8s.io", "FlowSchema"), ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration"),
    )},
    ("apiregistration.k8s.io", "APIService"): "path-segment",
    # metrics-server's read-only kinds carry the name of their Node or Pod.
    ("metrics.k8s.io", "NodeMetrics"): "subdomain",
    ("metrics.k8s.io", "PodMetrics"): "subdomain",
    # DNS subdomain, and also plural.group (checked by the CRD strategy).
    ("apiextensions.k8s.io", "CustomResourceDefinition"): "subdomain",
}


def _meta(obj: Object) -> dict[str, Any]:
    return obj.get("metadata") or {}


def _namespaced(obj: Object) -> dict[str, str]:
    meta = _meta(obj)
    return {"metadata.name": meta.get("name", ""), "metadata.namespace": meta.get("namespace", "")}


def cluster_metadata_fields(obj: Object) -> dict[str, str]:
    """Cluster-scoped kinds: only metadata.name."""
    return {"metadata.name": _meta(obj).get("name", "")}


def _bool(value: Any) -> str:
    return "true" if value else "false"


def pod_fields(pod: Object) -> dict[str, str]:
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    pod_ips = status.get("podIPs") or []
    fields = _namespaced(pod)
    fields.update({
        "spec.nodeName": spec.get("nodeName") or "",
        "spec.restartPolicy": spec.get("restartPolicy") or "",
        "spec.schedulerName": spec.get("schedulerName") or "",
        "spec.serviceAccountName": spec.get("serviceAccountName") or "",
        "spec.hostNetwork": _bool(spec.get("hostNetwork")),
        "status.phase": status.get("phase") or "",
        # Kubernetes takes the first of podIPs (status.podIP is its mirror).
        "status.podIP": (pod_ips[0].get("ip") or "") if pod_ips else (status.get("podIP") or ""),
        "status.nominatedNodeName": status.get("nominatedNodeName") or "",
    })
    return fields


def node_fields(node: Object) -> dict[str, str]:
    fields = cluster_metadata_fields(node)
    fields["spec.unschedulable"] = _bool((node.get("spec") or {}).get("unschedulable"))
    return fields


def namespace_fields(namespace: Object) -> dict[str, str]:
    fields = cluster_metadata_fields(namespace)
    fields["status.phase"] = (namespace.get("status") or {}).get("phase") or ""
    return fields


def secret_fields(secret: Object) -> dict[str, str]:
    fields = _namespaced(secret)
    fields["type"] = secret.get("type") or ""
    return fields


def service_fields(service: Object) -> dict[str, str]:
    spec = service.get("spec") or {}
    fields = _namespaced(service)
    fields["spec.clusterIP"] = spec.get("clusterIP") or ""
    fields["spec.type"] = spec.get("type") or ""
    return fields


def replicaset_fields(replicaset: Object) -> dict[str, str]:
    fields = _namespaced(replicaset)
    fields["status.replicas"] = str((replicaset.get("status") or {}).get("replicas") or 0)
    return fields


def job_fields(job: Object) -> dict[str, str]:
    fields = _namespaced(job)
    fields["status.successful"] = str((job.get("status") or {}).get("succeeded") or 0)
    return fields


_REFERENCE_FIELDS = ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")


def _reference_fields(prefix: str, reference: Object) -> dict[str, str]:
    """The selectable fields of an event's object reference (``involvedObject`` or ``regarding``)."""
    return {f"{prefix}.{name}": reference.get(name) or "" for name in _REFERENCE_FIELDS}


def core_event_fields(event: Object) -> dict[str, str]:
    involved = event.get("involvedObject") or {}
    source = (event.get("source") or {}).get("component") or event.get("reportingComponent") or ""
    fields = _namespaced(event)
    fields.update(_reference_fields("involvedObject", involved))
    fields.update({
        "reason": event.get("reason") or "",
        "reportingComponent": event.get("reportingComponent") or "",
        "source": source,
        "type": event.get("type") or "",
    })
    return fields


def events_v1_fields(event: Object) -> dict[str, str]:
    """events.k8s.io/v1 names for the same fields (its field label conversion)."""
    regarding = event.get("regarding") or {}
    fields = _namespaced(event)
    fields.update(_reference_fields("regarding", regarding))
    fields.update({
        "reason": event.get("reason") or "",
        "reportingController": event.get("reportingController") or "",
        "type": event.get("type") or "",
    })
    return fields
