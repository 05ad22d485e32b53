"""The rest of a stock 1.32 API server's resources: stored, validated, served with their tables.

One row per resource, as kube-apiserver's pkg/registry/*/rest/storage_*.go installs them (names,
short names and categories from each storage's ``ShortNames()``/``Categories()``). The strategies
live in the group modules named below; which kinds have no controller yet is said there.

Rows whose verbs are not the usual eight are not stored at all: ``componentstatuses`` (get, list;
answered from live component health), ``bindings`` (create; pods/binding by another path) and the
review APIs (create; answered from the request's user) are served by apiserver/virtual.py.
"""

from __future__ import annotations

from pilothouse.machinery.kinds import (
    autoscaling,
    certificates,
    cluster_kinds,
    flowcontrol,
    networking,
    volumes,
    webhooks,
)
from pilothouse.machinery.kinds.types import ResourceType, Strategy

__all__ = ["RESOURCES"]

_CREATE_ONLY = ("create",)
_API_EXTENSIONS = ("api-extensions",)
_NOT_STORED = Strategy()

_CORE: tuple[ResourceType, ...] = (
    ResourceType("", "v1", "PersistentVolume", "persistentvolumes", False, volumes.PV, ("pv",),
                 status_strategy=volumes.PV_STATUS),
    ResourceType("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", True, volumes.PVC, ("pvc",),
                 status_strategy=volumes.PVC_STATUS),
    ResourceType("", "v1", "PodTemplate", "podtemplates", True, volumes.PODTEMPLATE),
    ResourceType("", "v1", "ComponentStatus", "componentstatuses", False, _NOT_STORED, ("cs",),
                 verbs=("get", "list")),
    ResourceType("", "v1", "Binding", "bindings", True, _NOT_STORED, verbs=_CREATE_ONLY),
)

_REVIEWS: tuple[ResourceType, ...] = (
    ResourceType("authentication.k8s.io", "v1", "TokenReview", "tokenreviews", False, _NOT_STORED,
                 verbs=_CREATE_ONLY),
    ResourceType("authentication.k8s.io", "v1", "SelfSubjectReview", "selfsubjectreviews", False, _NOT_STORED,
                 verbs=_CREATE_ONLY),
    ResourceType("authorization.k8s.io", "v1", "SubjectAccessReview", "subjectaccessreviews", False, _NOT_STORED,
                 verbs=_CREATE_ONLY),
    ResourceType("authorization.k8s.io", "v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews", False,
                 _NOT_STORED, verbs=_CREATE_ONLY),
    ResourceType("authorization.k8s.io", "v1", "LocalSubjectAccessReview", "localsubjectaccessreviews", True,
                 _NOT_STORED, verbs=_CREATE_ONLY),
    ResourceType("authorization.k8s.io", "v1", "SelfSubjectRulesReview", "selfsubjectrulesreviews", False,
                 _NOT_STORED, verbs=_CREATE_ONLY),
)

_GROUPS: tuple[ResourceType, ...] = (
    # autoscaling: v2 first, so that it is the group's preferred version (as in Kubernetes).
    ResourceType("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", True,
                 autoscaling.HPA_V2, ("hpa",), ("all",), status_strategy=autoscaling.HPA_V2_STATUS),
    ResourceType("autoscaling", "v1", "HorizontalPodAutoscaler", "horizontalpodautoscalers", True,
                 autoscaling.HPA_V1, ("hpa",), ("all",), status_strategy=autoscaling.HPA_V1_STATUS),
    ResourceType("networking.k8s.io", "v1", "Ingress", "ingresses", True, networking.INGRESS, ("ing",),
                 status_strategy=networking.INGRESS_STATUS),
    ResourceType("networking.k8s.io", "v1", "IngressClass", "ingressclasses", False, networking.INGRESSCLASS),
    ResourceType("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", True, networking.NETWORKPOLICY,
                 ("netpol",)),
    ResourceType("certificates.k8s.io", "v1", "CertificateSigningRequest", "certificatesigningrequests", False,
                 certificates.CSR, ("csr",), status_strategy=certificates.CSR_STATUS,
                 subresource_strategies=(("approval", certificates.CSR_APPROVAL),)),
    ResourceType("storage.k8s.io", "v1", "CSIDriver", "csidrivers", False, volumes.CSIDRIVER),
    ResourceType("storage.k8s.io", "v1", "CSINode", "csinodes", False, volumes.CSINODE),
    ResourceType("storage.k8s.io", "v1", "CSIStorageCapacity", "csistoragecapacities", True,
                 volumes.CSISTORAGECAPACITY),
    ResourceType("storage.k8s.io", "v1", "VolumeAttachment", "volumeattachments", False, volumes.VOLUMEATTACHMENT,
                 status_strategy=volumes.VOLUMEATTACHMENT_STATUS),
    ResourceType("node.k8s.io", "v1", "RuntimeClass", "runtimeclasses", False, cluster_kinds.RUNTIMECLASS),
    ResourceType("admissionregistration.k8s.io", "v1", "MutatingWebhookConfiguration",
                 "mutatingwebhookconfigurations", False, webhooks.MUTATING_WEBHOOKS, (), _API_EXTENSIONS),
    ResourceType("admissionregistration.k8s.io", "v1", "ValidatingWebhookConfiguration",
                 "validatingwebhookconfigurations", False, webhooks.VALIDATING_WEBHOOKS, (), _API_EXTENSIONS),
    ResourceType("admissionregistration.k8s.io", "v1", "ValidatingAdmissionPolicy", "validatingadmissionpolicies",
                 False, webhooks.VALIDATING_ADMISSION_POLICY, (), _API_EXTENSIONS,
                 status_strategy=webhooks.VALIDATING_ADMISSION_POLICY_STATUS),
    ResourceType("admissionregistration.k8s.io", "v1", "ValidatingAdmissionPolicyBinding",
                 "validatingadmissionpolicybindings", False, webhooks.VALIDATING_ADMISSION_POLICY_BINDING, (),
                 _API_EXTENSIONS),
    ResourceType("flowcontrol.apiserver.k8s.io", "v1", "FlowSchema", "flowschemas", False, flowcontrol.FLOWSCHEMA,
                 status_strategy=flowcontrol.FLOWSCHEMA_STATUS),
    ResourceType("flowcontrol.apiserver.k8s.io", "v1", "PriorityLevelConfiguration", "prioritylevelconfigurations",
                 False, flowcontrol.PRIORITYLEVEL, status_strategy=flowcontrol.PRIORITYLEVEL_STATUS),
    ResourceType("apiregistration.k8s.io", "v1", "APIService", "apiservices", False, cluster_kinds.APISERVICE, (),
                 _API_EXTENSIONS, status_strategy=cluster_kinds.APISERVICE_STATUS),
)

RESOURCES: tuple[ResourceType, ...] = _CORE + _REVIEWS + _GROUPS
