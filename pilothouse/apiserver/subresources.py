"""Subresources whose request or response shape differs from the resource's own.

``/scale`` (autoscaling/v1 Scale over any kind with a :class:`ScaleSpec`), ``pods/binding``,
``pods/eviction``, and ``pods/log`` until node agents serve it. ``/status`` needs nothing here: it is
the generic handler with the kind's status strategy.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from pilothouse.apiserver import codec, options
from pilothouse.apiserver.admission_plugins import Attributes
from pilothouse.apiserver.registry import DeleteOptions, ResourceStorage, WriteContext
from pilothouse.apiserver.requestinfo import RequestInfo
from pilothouse.machinery import meta
from pilothouse.machinery.errors import (
    StatusError,
    bad_request,
    conflict,
    method_not_allowed,
    status_success,
    too_many_requests,
)
from pilothouse.machinery.meta import Object
from pilothouse.machinery.patch import json_patch, merge_patch, server_side_apply, strategic_merge_patch
from pilothouse.machinery.schema import schema_for_kind
from pilothouse.machinery.selectors import selector_from_object

__all__ = ["SUBRESOURCE_HANDLERS", "bind_pod"]


_SCALE_API_VERSION = "autoscaling/v1"


def _scale_of(storage: ResourceStorage, obj: Object) -> Object:
    spec = storage.resource.scale
    assert spec is not None
    selector = meta.get_path(obj, spec.selector_path) if spec.selector_path else None
    # A built-in holds a LabelSelector (or an RC's label map); a custom resource's labelSelectorPath
    # names a string.
    selector_text = str(spec.parse_selector(selector)) if isinstance(selector, dict) else \
        selector if isinstance(selector, str) else ""
    metadata = obj["metadata"]
    return {
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {"name": metadata["name"], "namespace": metadata.get("namespace"), "uid": metadata["uid"],
                     "resourceVersion": metadata["resourceVersion"],
                     "creationTimestamp": metadata.get("creationTimestamp")},
        "spec": {"replicas": meta.get_path(obj, spec.replicas_path, 0)},
        "status": {"replicas": meta.get_path(obj, spec.status_replicas_path, 0), "selector": selector_text},
    }


async def scale(handler: Any, request: web.Request, info: RequestInfo,
             storage: ResourceStorage) -> web.StreamResponse:
    namespace, name = info.namespace, info.name
    spec = storage.resource.scale
    assert spec is not None
    if info.verb == "get":
        return codec.json_response(_scale_of(storage, await storage.get(namespace, name)))
    if info.verb not in ("update", "patch"):
        raise method_not_allowed()
    body, media_type = await codec.read_body(request)
    ctx = options.write_context(request.query, request.headers)

    applying = info.verb == "patch" and media_type == options.APPLY_PATCH

    async def mutate(current: Object) -> Object:
        current_scale = _scale_of(storage, current)
        updated: Object = meta.clone(current)
        if info.verb == "update":
            new_scale = body
        elif applying:
            updated = _apply_to_scale(storage, current, body, ctx)
            new_scale = {**body, "spec": {"replicas": meta.get_path(updated, spec.replicas_path)}}
        elif media_type == "application/json-patch+json":
            new_scale = json_patch(current_scale, body)
        elif media_type == "application/merge-patch+json":
            new_scale = merge_patch(current_scale, body)
        elif media_type == "application/strategic-merge-patch+json":
            new_scale = strategic_merge_patch(current_scale, body,
                                              schema_for_kind("autoscaling", "v1", "Scale"))
        else:
            raise StatusError(415, "UnsupportedMediaType", f"unsupported patch type for scale: {media_type}")
        wanted_uid = meta.get_path(new_scale, ("metadata", "uid"))
        if wanted_uid and wanted_uid != current["metadata"].get("uid"):
            raise conflict(f"{storage.resource.plural}/scale", storage.resource.group, name,
                           f"Precondition failed: UID in precondition: {wanted_uid}, "
                           f"UID in object meta: {current['metadata'].get('uid')}")
        replicas = meta.get_path(new_scale, ("spec", "replicas"))
        # An apply that gave up replicas (pruned) leaves them to the parent's defaulting.
        if replicas is not None or not applying:
            if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
                raise StatusError(422, "Invalid", f'Scale.autoscaling "{name}" is invalid: spec.replicas: '
                                  f"Invalid value: {replicas}: must be greater than or equal to 0")
            meta.set_path(updated, spec.replicas_path, replicas)
        # The Scale's resourceVersion is the object's, a precondition the storage checks
        # (scaleUpdatedObjectInfo copies it over when set).
        wanted_rv = meta.get_path(new_scale, ("metadata", "resourceVersion"))
        if wanted_rv:
            updated["metadata"]["resourceVersion"] = wanted_rv
        return updated

    # The scale handler's managedFields entry is the parent's (apps/v1 for a Deployment) marked
    # subresource "scale", as managedfields' ScaleHandler.ToParent leaves it.
    ctx.managed_subresource = "scale"
    obj, _ = await storage.guaranteed_update(namespace, name, mutate, ctx)
    return codec.json_response(_scale_of(storage, obj))


def _apply_to_scale(storage: ResourceStorage, current: Object, applied: Any, ctx: WriteContext) -> Object:
    """Server-side apply of a Scale: the parent's apply of its replicas, as subresource "scale".
    Upstream applies to the Scale with the parent's managedFields mapped over and back
    (ScaleHandler.ToSubresource / ToParent); since replicas is the only field that maps, applying
    it to the parent directly gives the same owners and conflicts."""
    resource = storage.resource
    spec = resource.scale
    assert spec is not None
    if not isinstance(applied, dict):
        raise bad_request("error decoding YAML: the applied configuration is not an object")
    given = applied.get("apiVersion")
    if given is not None and given != _SCALE_API_VERSION:
        raise bad_request(f"Incorrect version specified in apply patch. Specified patch version: {given}, "
                          f"expected: {_SCALE_API_VERSION}")
    config: Object = {"apiVersion": resource.api_version, "kind": resource.kind,
                      "metadata": {"name": current["metadata"]["name"]}}
    replicas = meta.get_path(applied, ("spec", "replicas"))
    if replicas is not None:
        meta.set_path(config, spec.replicas_path, replicas)
    return server_side_apply(current, config, ctx.field_manager, ctx.force, resource.api_version,
                             meta.format_time(), schema_for_kind(resource.group, resource.version, resource.kind),
                             "scale")


async def binding(handler: Any, request: web.Request, info: RequestInfo,
             storage: ResourceStorage) -> web.StreamResponse:
    if info.verb != "create":
        raise method_not_allowed()
    body, _ = await codec.read_body(request)
    options.check_body(body, "", "v1", "Binding")
    await bind_pod(storage, info.namespace, info.name, body, options.write_context(request.query, request.headers))
    return codec.json_response(status_success(), status=201)


async def bind_pod(storage: ResourceStorage, namespace: str | None, name: str, body: Any,
                   ctx: WriteContext) -> None:
    """Assign the pod to the Binding's target node (pods/binding, and the core ``bindings`` resource),
    as kube-apiserver's ``BindingREST.Create``: admission sees the Binding (a CREATE of
    ``pods/binding``), then the pod is changed through the storage alone
    (``setPodNodeAndMetadata``), under the Binding's UID and resourceVersion as preconditions. No pod
    strategy, pod admission, validation or managedFields run on it, so the binding leaves no
    managedFields entry on the pod, as in Kubernetes."""
    binding = body if isinstance(body, dict) else {}
    metadata = binding.get("metadata") or {}
    attributes = Attributes("CREATE", storage.resource, namespace or "", binding, subresource="binding",
                            dry_run=ctx.dry_run, warnings=ctx.warnings)
    if storage.resource.namespaced:
        await storage.namespaces.admit_create(namespace or "")
    await storage.admission.admit(attributes)
    if metadata.get("name", "") != name:
        raise bad_request("name in URL does not match name in Binding object")
    _validate_binding(name, binding.get("target") or {})
    await storage.admission.validate(attributes)
    node = binding["target"]["name"]
    annotations = metadata.get("annotations") or {}

    def assign(pod: Object) -> None:
        # Upstream's refusals are plain errors, which assignPod turns into a Conflict on pods/binding.
        if pod["metadata"].get("deletionTimestamp"):
            raise conflict("pods/binding", "", name, f"pod {name} is being deleted, cannot be assigned to a host")
        spec = pod["spec"]
        current_node = spec.get("nodeName")
        if current_node:
            raise conflict("pods/binding", "", name, f'pod {name} is already assigned to node "{current_node}"')
        if spec.get("schedulingGates"):
            raise conflict("pods/binding", "", name, f"pod {name} has non-empty .spec.schedulingGates")
        spec["nodeName"] = node
        if annotations:
            pod["metadata"]["annotations"] = {**(pod["metadata"].get("annotations") or {}), **annotations}
        _update_pod_condition(pod.setdefault("status", {}), {"type": "PodScheduled", "status": "True"})

    await storage.update_in_storage(namespace, name, assign, uid=metadata.get("uid") or "",
                                    resource_version=metadata.get("resourceVersion") or "", dry_run=ctx.dry_run)


def _validate_binding(name: str, target: Any) -> None:
    """``ValidatePodBinding``; upstream returns its aggregate as a plain error (a 500), here a 422."""
    if not isinstance(target, dict):
        target = {}
    causes = []
    kind = target.get("kind")
    if kind and kind != "Node":
        causes.append(f'target.kind: Unsupported value: "{kind}": supported values: "Node", "<empty>"')
    if not target.get("name"):
        causes.append("target.name: Required value")
    if causes:
        message = causes[0] if len(causes) == 1 else "[" + ", ".join(causes) + "]"
        raise StatusError(422, "Invalid", f'Binding "{name}" is invalid: {message}')


def _update_pod_condition(status: Object, condition: Object) -> None:
    """``podutil.UpdatePodCondition``: the condition replaces one of its type where it stood (keeping
    its lastTransitionTime when the status did not change), or is appended."""
    condition = {**condition, "lastProbeTime": None, "lastTransitionTime": meta.format_time()}
    conditions = status.get("conditions") or []
    for index, old in enumerate(conditions):
        if old.get("type") == condition["type"]:
            if old.get("status") == condition["status"]:
                condition["lastTransitionTime"] = old.get("lastTransitionTime")
            conditions[index] = condition
            return
    status["conditions"] = [*conditions, condition]


async def eviction(handler: Any, request: web.Request, info: RequestInfo,
             storage: ResourceStorage) -> web.StreamResponse:
    if info.verb != "create":
        raise method_not_allowed()
    body, _ = await codec.read_body(request)
    options.check_body(body, "policy", "v1", "Eviction")
    if not isinstance(body, dict):
        raise bad_request("expected an Eviction object")
    pod = await storage.get(info.namespace, info.name)
    pdbs_storage = handler.storage_for("policy", "v1", "poddisruptionbudgets")
    budgets, _, _ = await pdbs_storage.list(info.namespace, options.list_options({}))  # type: ignore[arg-type]
    phase = (pod.get("status") or {}).get("phase")
    if phase not in ("Succeeded", "Failed", "Pending"):
        for budget in budgets:
            selector = selector_from_object((budget.get("spec") or {}).get("selector"))
            if selector.matches(pod["metadata"].get("labels")):
                allowed = (budget.get("status") or {}).get("disruptionsAllowed", 0)
                if allowed <= 0:
                    raise too_many_requests(
                        "Cannot evict pod as it would violate the pod's disruption budget.", retry_after=5)
    delete_body = body.get("deleteOptions") or {}
    delete_options = options.delete_options({}, delete_body)  # type: ignore[arg-type]
    ctx = options.write_context(request.query, request.headers)
    await storage.delete(info.namespace, info.name, delete_options or DeleteOptions(), ctx)
    return codec.json_response(status_success(), status=201)


SUBRESOURCE_HANDLERS = {
    ("*", "scale"): scale,
    ("pods", "binding"): binding,
    ("pods", "eviction"): eviction,
}
