"""Printers for ``apps/v1``: deployments, replica sets, stateful sets, daemon sets, revisions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pilothouse.machinery.kinds.types import Object
from pilothouse.machinery.tables.columns import AGE, NAME, Column, Doc, age, printer
from pilothouse.machinery.tables.formatting import (
    format_label_selector,
    format_labels,
    layout_containers,
    owner_controller,
    selector_string,
)

__all__ = ["controller_name"]

_CONTAINERS = Column("Containers", priority=1, description="Names of each container in the template.")
_IMAGES = Column("Images", priority=1, description="Images referenced by each container in the template.")


def _parts(obj: Object) -> tuple[str, dict[str, Any], dict[str, Any], tuple[str, str]]:
    spec = obj.get("spec") or {}
    template = (spec.get("template") or {}).get("spec") or {}
    return (
        (obj.get("metadata") or {}).get("name", ""),
        spec,
        obj.get("status") or {},
        layout_containers(template.get("containers")),
    )


@printer(
    ("apps", "Deployment"),
    [
        NAME,
        Column("Ready", description="Number of the pod with ready state"),
        Column("Up-to-date", description=Doc("apps.v1.DeploymentStatus", "updatedReplicas")),
        Column("Available", description=Doc("apps.v1.DeploymentStatus", "availableReplicas")),
        AGE,
        _CONTAINERS,
        _IMAGES,
        Column("Selector", priority=1, description=Doc("apps.v1.DeploymentSpec", "selector")),
    ],
)
def deployment_cells(deploy: Object, now: datetime) -> list[Any]:
    name, spec, status, (names, images) = _parts(deploy)
    # printDeployment uses the raw selector string: "" (not "<none>") when empty.
    selector = selector_string(spec.get("selector"))
    return [
        name,
        f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 1)}",
        status.get("updatedReplicas", 0),
        status.get("availableReplicas", 0),
        age(deploy, now),
        names,
        images,
        "<invalid>" if selector is None else selector,
    ]


@printer(
    ("apps", "ReplicaSet"),
    [
        NAME,
        Column("Desired", type="integer", description=Doc("apps.v1.ReplicaSetSpec", "replicas")),
        Column("Current", type="integer", description=Doc("apps.v1.ReplicaSetStatus", "replicas")),
        Column("Ready", type="integer", description=Doc("apps.v1.ReplicaSetStatus", "readyReplicas")),
        AGE,
        _CONTAINERS,
        _IMAGES,
        Column("Selector", priority=1, description=Doc("apps.v1.ReplicaSetSpec", "selector")),
    ],
)
def replicaset_cells(rs: Object, now: datetime) -> list[Any]:
    name, spec, status, (names, images) = _parts(rs)
    return [
        name,
        spec.get("replicas", 1),
        status.get("replicas", 0),
        status.get("readyReplicas", 0),
        age(rs, now),
        names,
        images,
        format_label_selector(spec.get("selector")),
    ]


@printer(
    ("apps", "StatefulSet"),
    [NAME, Column("Ready", description="Number of the pod with ready state"), AGE, _CONTAINERS, _IMAGES],
)
def statefulset_cells(sts: Object, now: datetime) -> list[Any]:
    name, spec, status, (names, images) = _parts(sts)
    return [name, f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 1)}", age(sts, now), names, images]


@printer(
    ("apps", "DaemonSet"),
    [
        NAME,
        Column(
            "Desired", type="integer", description=Doc("apps.v1.DaemonSetStatus", "desiredNumberScheduled")
        ),
        Column(
            "Current", type="integer", description=Doc("apps.v1.DaemonSetStatus", "currentNumberScheduled")
        ),
        Column("Ready", type="integer", description=Doc("apps.v1.DaemonSetStatus", "numberReady")),
        Column(
            "Up-to-date", type="integer", description=Doc("apps.v1.DaemonSetStatus", "updatedNumberScheduled")
        ),
        Column("Available", type="integer", description=Doc("apps.v1.DaemonSetStatus", "numberAvailable")),
        Column("Node Selector", description=Doc("core.v1.PodSpec", "nodeSelector")),
        AGE,
        _CONTAINERS,
        _IMAGES,
        Column("Selector", priority=1, description=Doc("apps.v1.DaemonSetSpec", "selector")),
    ],
)
def daemonset_cells(ds: Object, now: datetime) -> list[Any]:
    name, spec, status, (names, images) = _parts(ds)
    pod_spec = (spec.get("template") or {}).get("spec") or {}
    return [
        name,
        status.get("desiredNumberScheduled", 0),
        status.get("currentNumberScheduled", 0),
        status.get("numberReady", 0),
        status.get("updatedNumberScheduled", 0),
        status.get("numberAvailable", 0),
        format_labels(pod_spec.get("nodeSelector")),
        age(ds, now),
        names,
        images,
        format_label_selector(spec.get("selector")),
    ]


def controller_name(metadata: dict[str, Any]) -> str:
    """``kind.group/name`` of the controlling owner (``formatResourceName`` with kind)."""
    ref = owner_controller(metadata)
    if ref is None:
        return "<none>"
    api_version = ref.get("apiVersion", "")
    group = api_version.split("/", 1)[0] if "/" in api_version else ""
    kind = ref.get("kind", "")
    if not kind and not group:
        return str(ref.get("name", ""))
    qualified = f"{kind}.{group}" if group else kind
    return f"{qualified.lower()}/{ref.get('name', '')}"


@printer(
    ("apps", "ControllerRevision"),
    [
        NAME,
        Column("Controller", description="Controller of the object"),
        Column("Revision", description=Doc("apps.v1.ControllerRevision", "revision")),
        AGE,
    ],
)
def controllerrevision_cells(rev: Object, now: datetime) -> list[Any]:
    meta = rev.get("metadata") or {}
    return [meta.get("name", ""), controller_name(meta), rev.get("revision", 0), age(rev, now)]
