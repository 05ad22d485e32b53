"""Every resource pilothouse serves, declared once: names for URLs and discovery, plus strategies.

Discovery (``/api``, ``/apis``), the REST routes, OpenAPI documents and ``kubectl api-resources`` are
all generated from this table. Adding a built-in kind is one entry here (or in the group module's
``RESOURCES``, for the groups that keep their rows beside their strategies) and its strategy.
"""

from __future__ import annotations

from pilothouse.machinery.kinds import (
    apiextensions,
    apps,
    batch,
    core,
    metrics_api,
    other,
    policy_kinds,
    rbac,
    replication,
    surface,
)
from pilothouse.machinery.kinds.types import ResourceType, ScaleSpec

__all__ = ["BUILTIN_RESOURCES"]

_POD_SUBRESOURCES = ("binding", "eviction", "log", "exec", "attach", "portforward")

_WORKLOADS: tuple[ResourceType, ...] = (
    # core/v1
    ResourceType("", "v1", "Namespace", "namespaces", False, core.NAMESPACE, ("ns",),
                 status_strategy=core.NAMESPACE_STATUS,
                 subresource_strategies=(("finalize", core.NAMESPACE_FINALIZE),),
                 # As in Kubernetes: no deletecollection, one namespace is deleted at a time.
                 verbs=("create", "delete", "get", "list", "patch", "update", "watch")),
    ResourceType("", "v1", "Pod", "pods", True, core.POD, ("po",), ("all",),
                 status_strategy=core.POD_STATUS, extra_subresources=_POD_SUBRESOURCES),
    ResourceType("", "v1", "Node", "nodes", False, core.NODE, ("no",), status_strategy=core.NODE_STATUS),
    ResourceType("", "v1", "Service", "services", True, core.SERVICE, ("svc",), ("all",),
                 status_strategy=core.SERVICE_STATUS),
    ResourceType("", "v1", "Endpoints", "endpoints", True, core.ENDPOINTS, ("ep",)),
    ResourceType("", "v1", "ConfigMap", "configmaps", True, core.CONFIGMAP, ("cm",)),
    ResourceType("", "v1", "Secret", "secrets", True, core.SECRET),
    ResourceType("", "v1", "ServiceAccount", "serviceaccounts", True, core.SERVICEACCOUNT, ("sa",),
                 extra_subresources=("token",)),
    ResourceType("", "v1", "Event", "events", True, core.EVENT, ("ev",)),
    ResourceType("", "v1", "ResourceQuota", "resourcequotas", True, core.RESOURCEQUOTA, ("quota",),
                 status_strategy=core.RESOURCEQUOTA_STATUS),
    ResourceType("", "v1", "LimitRange", "limitranges", True, core.LIMITRANGE, ("limits",)),
    # apps/v1
    ResourceType("apps", "v1", "Deployment", "deployments", True, apps.DEPLOYMENT, ("deploy",), ("all",),
                 status_strategy=apps.DEPLOYMENT_STATUS, scale=ScaleSpec()),
    ResourceType("apps", "v1", "ReplicaSet", "replicasets", True, apps.REPLICASET, ("rs",), ("all",),
                 status_strategy=apps.REPLICASET_STATUS, scale=ScaleSpec()),
    ResourceType("apps", "v1", "StatefulSet", "statefulsets", True, apps.STATEFULSET, ("sts",), ("all",),
                 status_strategy=apps.STATEFULSET_STATUS, scale=ScaleSpec()),
    ResourceType("apps", "v1", "DaemonSet", "daemonsets", True, apps.DAEMONSET, ("ds",), ("all",),
                 status_strategy=apps.DAEMONSET_STATUS),
    ResourceType("apps", "v1", "ControllerRevision", "controllerrevisions", True, apps.CONTROLLERREVISION),
    # batch/v1
    ResourceType("batch", "v1", "Job", "jobs", True, batch.JOB, (), ("all",),
                 status_strategy=batch.JOB_STATUS),
    ResourceType("batch", "v1", "CronJob", "cronjobs", True, batch.CRONJOB, ("cj",), ("all",),
                 status_strategy=batch.CRONJOB_STATUS),
    # coordination.k8s.io/v1
    ResourceType("coordination.k8s.io", "v1", "Lease", "leases", True, other.LEASE),
    # events.k8s.io/v1
    ResourceType("events.k8s.io", "v1", "Event", "events", True, other.EVENT_V1, ("ev",), storage_group=""),
    # discovery.k8s.io/v1
    ResourceType("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", True, other.ENDPOINTSLICE),
    # policy/v1
    ResourceType("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", True, other.PDB, ("pdb",),
                 status_strategy=other.PDB_STATUS),
)

BUILTIN_RESOURCES: tuple[ResourceType, ...] = (
    _WORKLOADS
    + replication.RESOURCES
    + rbac.RESOURCES
    + policy_kinds.RESOURCES
    + surface.RESOURCES
    + metrics_api.RESOURCES
    + apiextensions.RESOURCES
)
