"""What create and update may set, per kind: Kubernetes' PrepareForCreate / PrepareForUpdate.

A create never carries status (it starts from the kind's zero status, serialized as Kubernetes
does: a ReplicaSet starts with ``status: {replicas: 0}``), kinds with ``metadata.generation``
start at 1 and bump it on spec change, and updates of the main resource keep the stored status.
The exceptions are what this module is for: a Pod starts Pending with its QoS class, a Node is
created with the status its kubelet registers, a Namespace starts Active with the ``kubernetes``
finalizer, Services keep their allocated IPs and node ports when an update omits them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pilothouse.machinery.kinds.quantity import parse_quantity
from pilothouse.machinery.kinds.types import Object, keep_all_but_status
from pilothouse.machinery.meta import clone as _clone

__all__ = [
    "ZERO_STATUS",
    "compute_qos_class",
    "create_with_zero_status",
    "mark_namespace_terminating",
    "namespace_has_finalizers",
    "pod_grace_period",
    "prepare_daemonset_update",
    "prepare_deployment_update",
    "prepare_namespace_create",
    "prepare_namespace_finalize",
    "prepare_namespace_update",
    "prepare_node_create",
    "prepare_node_status_update",
    "prepare_node_update",
    "prepare_pod_create",
    "prepare_pod_status_update",
    "prepare_pod_update",
    "prepare_service_create",
    "prepare_service_update",
    "update_keeping_status",
]

#: The status a create starts from, per kind: Go's zero value as Kubernetes serializes it.
ZERO_STATUS: dict[str, dict[str, Any]] = {
    "Deployment": {},
    "ReplicaSet": {"replicas": 0},
    "ReplicationController": {"replicas": 0},
    "StatefulSet": {"replicas": 0, "availableReplicas": 0},
    "DaemonSet": {"currentNumberScheduled": 0, "numberMisscheduled": 0, "desiredNumberScheduled": 0,
                  "numberReady": 0},
    "Job": {},
    "CronJob": {},
    "ResourceQuota": {},
    "PodDisruptionBudget": {"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0,
                            "expectedPods": 0},
    "Service": {"loadBalancer": {}},
}

_DS_TEMPLATE_GENERATION = "deprecated.daemonset.template.generation"


def create_with_zero_status(kind: str, generation: bool = True) -> Callable[[Object], None]:
    """PrepareForCreate of a spec+status kind: zero status, generation 1 (for kinds that have it)."""
    zero = ZERO_STATUS.get(kind, {})

    def prepare(obj: Object) -> None:
        obj["status"] = _clone(zero)
        if generation:
            obj.setdefault("metadata", {})["generation"] = 1
    return prepare


def update_keeping_status(generation: bool = True, with_annotations: bool = False,
                          ) -> Callable[[Object, Object], None]:
    """PrepareForUpdate of the main resource: status from the stored object; spec changes (and,
    for Deployments, annotation changes) bump generation."""

    def prepare(new: Object, old: Object) -> None:
        if "status" in old:
            new["status"] = _clone(old["status"])
        else:
            new.pop("status", None)
        if not generation:
            return
        new_meta = new.setdefault("metadata", {})
        old_meta = old.get("metadata") or {}
        old_generation = old_meta.get("generation", 1)
        changed = new.get("spec") != old.get("spec")
        if with_annotations and (new_meta.get("annotations") or {}) != (old_meta.get("annotations") or {}):
            changed = True
        new_meta["generation"] = old_generation + 1 if changed else old_generation
    return prepare


prepare_deployment_update = update_keeping_status(with_annotations=True)
_prepare_workload_update = update_keeping_status()


def prepare_daemonset_update(new: Object, old: Object) -> None:
    """Also keeps the template generation annotation apps/v1 DaemonSets carry, bumped on template change."""
    _prepare_workload_update(new, old)
    old_annotations = (old.get("metadata") or {}).get("annotations") or {}
    old_value = old_annotations.get(_DS_TEMPLATE_GENERATION, "1")
    if (new.get("spec") or {}).get("template") != (old.get("spec") or {}).get("template"):
        try:
            value = str(int(old_value) + 1)
        except ValueError:
            value = "1"
    else:
        value = old_value
    annotations = new["metadata"].get("annotations")
    if annotations is None:
        annotations = new["metadata"]["annotations"] = {}
    annotations[_DS_TEMPLATE_GENERATION] = value


# -- Pod ---------------------------------------------------------------------------------------

def compute_qos_class(spec: dict[str, Any]) -> str:
    """qos.ComputePodQOS: Guaranteed, Burstable or BestEffort, from cpu and memory only."""
    requests: dict[str, Any] = {}
    limits: dict[str, Any] = {}
    guaranteed = True
    containers = list(spec.get("initContainers") or ()) + list(spec.get("containers") or ())
    for container in containers:
        resources = container.get("resources") or {}
        for name, value in (resources.get("requests") or {}).items():
            amount = parse_quantity(value)
            if name in ("cpu", "memory") and amount is not None and amount > 0:
                requests[name] = requests.get(name, 0) + amount
        found = set()
        for name, value in (resources.get("limits") or {}).items():
            amount = parse_quantity(value)
            if name in ("cpu", "memory") and amount is not None and amount > 0:
                found.add(name)
                limits[name] = limits.get(name, 0) + amount
        if found != {"cpu", "memory"}:
            guaranteed = False
    if not requests and not limits:
        return "BestEffort"
    if guaranteed and all(limits.get(name) == amount for name, amount in requests.items()) \
            and len(requests) == len(limits):
        return "Guaranteed"
    return "Burstable"


def prepare_pod_create(pod: Object) -> None:
    """Pods start Pending with their QoS class; gated pods say why they are not scheduled.

    Pods have no metadata.generation in Kubernetes 1.32.
    """
    spec = pod.get("spec") or {}
    status: dict[str, Any] = {"phase": "Pending", "qosClass": compute_qos_class(spec)}
    if spec.get("schedulingGates"):
        status["conditions"] = [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated",
                                 "message": "Scheduling is blocked due to non-empty scheduling gates",
                                 "lastProbeTime": None, "lastTransitionTime": None}]
    pod["status"] = status


prepare_pod_update = update_keeping_status(generation=False)


def _keep_all_but_status_and_meta_labels(new: Object, old: Object) -> None:
    """Status writers of pods and nodes may also change labels and annotations (Kubernetes copies
    back only spec, owner references and deletion fields)."""
    meta = new.get("metadata") or {}
    labels, annotations = meta.get("labels"), meta.get("annotations")
    keep_all_but_status(new, old)
    new_meta = new.setdefault("metadata", {})
    for key, value in (("labels", labels), ("annotations", annotations)):
        if value is None:
            new_meta.pop(key, None)
        else:
            new_meta[key] = value


def prepare_pod_status_update(new: Object, old: Object) -> None:
    _keep_all_but_status_and_meta_labels(new, old)
    old_qos = (old.get("status") or {}).get("qosClass")
    status = new.get("status")
    # The QoS class is immutable; old kubelets dropped it, so it is backfilled.
    if status is not None and not status.get("qosClass") and old_qos:
        status["qosClass"] = old_qos


def pod_grace_period(pod: Object, requested: int | None) -> int:
    """``podStrategy.CheckGracefulDelete``: a pod never bound to a node, or already finished, goes
    at once; otherwise its agent gets the requested (or the pod's own) grace period to stop it."""
    spec = pod.get("spec") or {}
    if not spec.get("nodeName") or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return 0
    if requested is not None:
        return max(requested, 0)
    grace = spec.get("terminationGracePeriodSeconds")
    return int(grace) if isinstance(grace, int) else 30


# -- Node --------------------------------------------------------------------------------------

def prepare_node_create(node: Object) -> None:
    """Kubelets register nodes with their status: a node create keeps it (no generation)."""


prepare_node_update = update_keeping_status(generation=False)
prepare_node_status_update = _keep_all_but_status_and_meta_labels


# -- Namespace ---------------------------------------------------------------------------------

def prepare_namespace_create(namespace: Object) -> None:
    namespace["status"] = {"phase": "Active"}
    spec = namespace.get("spec")
    if spec is None:
        spec = namespace["spec"] = {}
    finalizers = spec.get("finalizers") or []
    if "kubernetes" not in finalizers:
        spec["finalizers"] = [*finalizers, "kubernetes"]
    # The metadata.name label, once the name is known (generateName is resolved after defaulting).
    meta = namespace.setdefault("metadata", {})
    if meta.get("name"):
        labels = meta.get("labels")
        if labels is None:
            labels = meta["labels"] = {}
        labels["kubernetes.io/metadata.name"] = meta["name"]


def prepare_namespace_update(new: Object, old: Object) -> None:
    """Finalizers change only through /finalize, status only through /status."""
    spec = new.get("spec")
    if spec is None:
        spec = new["spec"] = {}
    old_finalizers = (old.get("spec") or {}).get("finalizers")
    if old_finalizers is None:
        spec.pop("finalizers", None)
    else:
        spec["finalizers"] = list(old_finalizers)
    if "status" in old:
        new["status"] = _clone(old["status"])


def mark_namespace_terminating(namespace: Object) -> None:
    namespace.setdefault("status", {})["phase"] = "Terminating"


def namespace_has_finalizers(namespace: Object) -> bool:
    return bool((namespace.get("spec") or {}).get("finalizers"))


def prepare_namespace_finalize(new: Object, old: Object) -> None:
    """The /finalize subresource changes spec.finalizers only."""
    finalizers = (new.get("spec") or {}).get("finalizers")
    new.clear()
    new.update(_clone(old))
    spec = new.setdefault("spec", {})
    if finalizers is None:
        spec.pop("finalizers", None)
    else:
        spec["finalizers"] = finalizers


# -- Service -----------------------------------------------------------------------------------

def prepare_service_create(service: Object) -> None:
    service["status"] = {"loadBalancer": {}}


def _needs_cluster_ip(spec: dict[str, Any]) -> bool:
    return spec.get("type") != "ExternalName"


def _needs_node_port(spec: dict[str, Any]) -> bool:
    return spec.get("type") in ("NodePort", "LoadBalancer") and (
        spec.get("type") == "NodePort" or spec.get("allocateLoadBalancerNodePorts", True))


def _externally_accessible(spec: dict[str, Any]) -> bool:
    return spec.get("type") in ("NodePort", "LoadBalancer") or (
        spec.get("type", "ClusterIP") == "ClusterIP" and bool(spec.get("externalIPs")))


def _node_ports(spec: dict[str, Any]) -> set[int]:
    return {p["nodePort"] for p in spec.get("ports") or () if p.get("nodePort")}


def _drop_type_dependent_fields(new: Object, spec: dict[str, Any], old_spec: dict[str, Any]) -> None:
    """kube-apiserver's ``dropTypeDependentFields``: when the type changes, values the new type
    cannot have are wiped if the user left them as they were (changed ones fail validation). Node
    ports and cluster IPs are among them, so ``type: ClusterIP`` on a NodePort Service works, and
    the allocator frees what the Service no longer holds."""
    if _needs_cluster_ip(old_spec) and not _needs_cluster_ip(spec):
        if spec.get("clusterIP") == old_spec.get("clusterIP") and spec.get("clusterIPs") == old_spec.get("clusterIPs"):
            spec.pop("clusterIP", None)
            spec.pop("clusterIPs", None)
        for key in ("ipFamilies", "ipFamilyPolicy"):
            if spec.get(key) == old_spec.get(key):
                spec.pop(key, None)
    if _needs_node_port(old_spec) and not _needs_node_port(spec) and _node_ports(spec) <= _node_ports(old_spec):
        for port in spec.get("ports") or ():
            port.pop("nodePort", None)
    was_lb, is_lb = old_spec.get("type") == "LoadBalancer", spec.get("type") == "LoadBalancer"
    if was_lb and old_spec.get("externalTrafficPolicy") == "Local" and not (
            is_lb and spec.get("externalTrafficPolicy") == "Local") and \
            spec.get("healthCheckNodePort") == old_spec.get("healthCheckNodePort"):
        spec.pop("healthCheckNodePort", None)
    if was_lb and not is_lb:
        for key in ("allocateLoadBalancerNodePorts", "loadBalancerClass"):
            if spec.get(key) == old_spec.get(key):
                spec.pop(key, None)
    if _externally_accessible(old_spec) and not _externally_accessible(spec) and \
            spec.get("externalTrafficPolicy") == old_spec.get("externalTrafficPolicy"):
        spec.pop("externalTrafficPolicy", None)
    if not is_lb:
        new.setdefault("status", {})["loadBalancer"] = {}


def prepare_service_update(new: Object, old: Object) -> None:
    """Status kept; patchAllocatedValues: an update that omits allocated values keeps them;
    dropTypeDependentFields: a type change drops what the new type cannot have."""
    if "status" in old:
        new["status"] = _clone(old["status"])
    spec = new.get("spec")
    old_spec = old.get("spec") or {}
    if spec is None:
        return
    _drop_type_dependent_fields(new, spec, old_spec)
    if _needs_cluster_ip(old_spec) and _needs_cluster_ip(spec):
        if not spec.get("clusterIP") and old_spec.get("clusterIP"):
            spec["clusterIP"] = old_spec["clusterIP"]
        if not spec.get("clusterIPs") and old_spec.get("clusterIPs") and \
                spec.get("clusterIP") == old_spec.get("clusterIP"):
            spec["clusterIPs"] = list(old_spec["clusterIPs"])
        for key in ("ipFamilies", "ipFamilyPolicy"):
            if spec.get(key) is None and old_spec.get(key) is not None:
                spec[key] = _clone(old_spec[key])
    if _needs_node_port(old_spec) and _needs_node_port(spec):
        old_ports = {(p.get("port"), p.get("protocol", "TCP")): p.get("nodePort")
                     for p in old_spec.get("ports") or ()}
        for port in spec.get("ports") or ():
            if not port.get("nodePort"):
                node_port = old_ports.get((port.get("port"), port.get("protocol", "TCP")))
                if node_port:
                    port["nodePort"] = node_port
    if spec.get("externalTrafficPolicy") == "Local" and old_spec.get("externalTrafficPolicy") == "Local" \
            and not spec.get("healthCheckNodePort") and old_spec.get("healthCheckNodePort"):
        spec["healthCheckNodePort"] = old_spec["healthCheckNodePort"]
