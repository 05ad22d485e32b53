"""The fixed steps of every write, shared by create, update, patch and delete.

Kept apart from :mod:`registry` so that each step is a small function that says what Kubernetes
does at that point (``rest.BeforeCreate``, ``rest.BeforeUpdate``, ``rest.BeforeDelete``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pilothouse.machinery import meta, validation
from pilothouse.machinery.errors import FieldError, StatusError, bad_request, conflict, invalid
from pilothouse.machinery.kinds import ResourceType, Strategy
from pilothouse.machinery.kinds.naming import name_rule
from pilothouse.machinery.meta import Object
from pilothouse.machinery.patch import track_update
from pilothouse.machinery.pruning import prune_unknown_fields

__all__ = [
    "MODIFIED_MESSAGE",
    "carry_system_metadata",
    "check_delete_preconditions",
    "check_name",
    "check_namespace",
    "check_resource_version",
    "check_schema",
    "check_type_meta",
    "finalized",
    "init_system_metadata",
    "invalid_missing_rv",
    "prepare_delete",
    "track_managed_fields",
    "validate_create",
    "validate_update",
]


MODIFIED_MESSAGE = "the object has been modified; please apply your changes to the latest version and try again"

# Metadata only the server sets; what a client sends for these is ignored on create.
_SYSTEM_FIELDS = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
                  "resourceVersion", "selfLink", "generation")


def check_type_meta(obj: Any, resource: ResourceType) -> None:
    if not isinstance(obj, dict):
        raise bad_request("Object 'Kind' is missing in the request body (expected a JSON object)")
    api_version = obj.get("apiVersion")
    kind = obj.get("kind")
    if api_version and api_version != resource.api_version:
        raise bad_request(f"the API version in the data ({api_version}) does not match the expected "
                          f"API version ({resource.api_version})")
    if kind and kind != resource.kind:
        raise bad_request(f"the kind in the data ({kind}) does not match the expected kind ({resource.kind})")
    obj["apiVersion"] = resource.api_version
    obj["kind"] = resource.kind
    metadata = obj.get("metadata")
    if metadata is None:
        obj["metadata"] = {}
    elif not isinstance(metadata, dict):
        raise bad_request("metadata must be an object")


def check_namespace(obj: Object, resource: ResourceType, namespace: str | None) -> dict[str, Any]:
    metadata: dict[str, Any] = obj["metadata"]
    if resource.namespaced:
        given = metadata.get("namespace")
        if given and namespace and given != namespace:
            raise bad_request("the namespace of the provided object does not match the namespace sent on "
                              "the request")
        if namespace:
            metadata["namespace"] = namespace
    else:
        metadata.pop("namespace", None)
    return metadata


def check_name(obj: Object, name: str) -> None:
    given = obj["metadata"].get("name")
    if given and given != name:
        raise bad_request(f"the name of the object ({given}) does not match the name on the URL ({name})")
    obj["metadata"]["name"] = name


def check_schema(obj: Object, resource: ResourceType, ctx: Any) -> None:
    """Report fields the kind does not have (per fieldValidation), refuse wrong types, then prune."""
    if resource.prune is not None:
        # A custom resource: pruning finds the unknown fields; its validation reports wrong types.
        _report_unknown(obj, resource, ctx, resource.prune(obj))
        return
    schema = resource.object_schema()
    if schema is None:
        return
    report = validation.check_against_schema(obj, schema)
    if report.decode_errors:
        # Kubernetes reports the first decoding error only, wrapped the way its codec does.
        raise bad_request(validation.decode_error_message(resource.kind, resource.version,
                                                          report.decode_errors[0]))
    if report.unknown_fields:
        if ctx.field_validation == "Strict":
            raise bad_request(validation.decode_error_message(resource.kind, resource.version,
                                                              report.strict_error()))
        if ctx.field_validation == "Warn":
            ctx.warnings.extend(report.warnings())
        prune_unknown_fields(obj, schema)
    if report.errors:
        metadata = obj.get("metadata") or {}
        raise invalid(resource.kind, resource.group, metadata.get("name", ""), report.errors)


def _report_unknown(obj: Object, resource: ResourceType, ctx: Any, unknown: list[str]) -> None:
    if not unknown:
        return
    if ctx.field_validation == "Strict":
        text = "strict decoding error: " + ", ".join(f'unknown field "{path}"' for path in unknown)
        raise bad_request(validation.decode_error_message(resource.kind, resource.version, text))
    if ctx.field_validation == "Warn":
        ctx.warnings.extend(f'unknown field "{path}"' for path in unknown)


def init_system_metadata(metadata: dict[str, Any]) -> None:
    for name in _SYSTEM_FIELDS:
        metadata.pop(name, None)
    metadata["uid"] = meta.new_uid()
    metadata["creationTimestamp"] = meta.format_time()


def carry_system_metadata(new: Object, current: Object) -> None:
    """An update never changes what only the server sets."""
    new_meta = new["metadata"]
    old_meta = current["metadata"]
    # BeforeUpdate fills only a missing uid: another one stays, for validation to refuse as immutable.
    if not new_meta.get("uid") and "uid" in old_meta:
        new_meta["uid"] = old_meta["uid"]
    for name in ("creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"):
        if name in old_meta:
            new_meta[name] = old_meta[name]
        else:
            new_meta.pop(name, None)
    if "managedFields" not in new_meta and "managedFields" in old_meta:
        new_meta["managedFields"] = old_meta["managedFields"]
    new_meta.pop("selfLink", None)


def _errors_to_invalid(obj: Object, resource: ResourceType, errors: list[FieldError]) -> None:
    if errors:
        raise invalid(resource.kind, resource.group, obj["metadata"].get("name", ""), errors)


def validate_create(obj: Object, resource: ResourceType) -> None:
    errors = validation.validate_object_meta(obj["metadata"], resource.namespaced,
                                             name_rule(resource.group, resource.kind))
    errors.extend(resource.strategy.validate(obj))
    _errors_to_invalid(obj, resource, errors)


def validate_update(new: Object, current: Object, resource: ResourceType, strategy: Strategy) -> None:
    errors = validation.validate_object_meta(new["metadata"], resource.namespaced,
                                             name_rule(resource.group, resource.kind))
    errors.extend(validation.validate_object_meta_update(new["metadata"], current["metadata"],
                                                            require_resource_version=False))
    if not strategy.validate_update_alone:
        errors.extend(strategy.validate(new))
    errors.extend(strategy.validate_update(new, current))
    _errors_to_invalid(new, resource, errors)


def invalid_missing_rv(resource: ResourceType, name: str) -> StatusError:
    return invalid(resource.kind, resource.group, name, [
        FieldError("FieldValueInvalid", "metadata.resourceVersion", "must be specified for an update", "0")])


def check_resource_version(new: Object, current: Object, resource: ResourceType, strategy: Strategy,
                           name: str) -> None:
    """The resourceVersion in the object a write produced is a precondition, whether a PUT body
    carried it or a patch (of any type, apply included) put it there: the generic store's
    ``Update`` compares it with the stored one after ``UpdatedObject``. Empty means unconditional,
    where the strategy allows it."""
    wanted = (new.get("metadata") or {}).get("resourceVersion") or ""
    if not wanted:
        if not strategy.allow_unconditional_update:
            raise invalid_missing_rv(resource, name)
    elif wanted != current["metadata"]["resourceVersion"]:
        raise conflict(resource.plural, resource.group, name, MODIFIED_MESSAGE)


def track_managed_fields(old: Object | None, new: Object, ctx: Any, resource: ResourceType,
                         subresource: str) -> None:
    if ctx.operation == "Apply":
        return
    schema = resource.object_schema()
    track_update(old, new, ctx.manager(), "Update", resource.api_version, meta.format_time(), schema,
                 subresource or ctx.managed_subresource)


def finalized(obj: Object, strategy: Strategy) -> bool:
    """An object marked for deletion whose last finalizer is gone and whose grace has ended."""
    metadata = obj["metadata"]
    return bool(metadata.get("deletionTimestamp")) and not metadata.get("finalizers") \
        and not metadata.get("deletionGracePeriodSeconds") and not strategy.deletion_blocked(obj)


def check_delete_preconditions(current: Object, options: Any, resource: ResourceType, name: str) -> None:
    check_preconditions(current, options.precondition_uid, options.precondition_resource_version, resource, name)


def check_preconditions(current: Object, uid: str | None, resource_version: str | None, resource: ResourceType,
                        name: str) -> None:
    """``storage.Preconditions.Check``, answered as a 409 Conflict (a delete's, a binding's)."""
    metadata = current["metadata"]
    if uid and uid != metadata.get("uid"):
        raise conflict(resource.plural, resource.group, name,
                       f"Precondition failed: UID in precondition: {uid}, UID in object meta: {metadata.get('uid')}")
    if resource_version and resource_version != metadata.get("resourceVersion"):
        raise conflict(resource.plural, resource.group, name,
                       f"Precondition failed: ResourceVersion in precondition: "
                       f"{resource_version}, ResourceVersion in object meta: "
                       f"{metadata.get('resourceVersion')}")


def _propagation_finalizer(options: Any, finalizers: list[str], default: str | None) -> str | None:
    policy = options.propagation_policy
    if policy is None and options.orphan_dependents is not None:
        policy = "Orphan" if options.orphan_dependents else "Background"
    if policy is None and not {"orphan", "foregroundDeletion"} & set(finalizers):
        # shouldOrphanDependents: a finalizer already on the object overrides the kind's default.
        policy = default
    if policy == "Foreground":
        return "foregroundDeletion"
    if policy == "Orphan":
        return "orphan"
    return None


def prepare_delete(current: Object, options: Any, resource: ResourceType) -> Object | None:
    """What a delete request changes when the object must stay for now (finalizers, graceful
    deletion); None when it can be removed at once."""
    strategy = resource.strategy
    obj: Object = meta.clone(current)
    metadata = obj["metadata"]
    finalizers = list(metadata.get("finalizers") or [])
    propagation = _propagation_finalizer(options, finalizers, strategy.default_propagation_policy)
    if propagation and propagation not in finalizers and not metadata.get("deletionTimestamp"):
        finalizers.append(propagation)
    grace = 0
    if strategy.grace_period is not None:
        grace = strategy.grace_period(current, options.grace_period_seconds)
    already = metadata.get("deletionTimestamp")
    if already:
        old_grace = metadata.get("deletionGracePeriodSeconds") or 0
        if grace >= old_grace and (finalizers or old_grace > 0 or strategy.deletion_blocked(obj)):
            return current  # deletion already pending, a longer grace never extends it
        if grace < old_grace:
            metadata["deletionGracePeriodSeconds"] = grace
            metadata["deletionTimestamp"] = meta.format_time(meta.now() + timedelta(seconds=grace))
    if not finalizers and grace == 0 and not strategy.deletion_blocked(obj):
        return None
    if not already:
        metadata["deletionTimestamp"] = meta.format_time(meta.now() + timedelta(seconds=grace))
        metadata["deletionGracePeriodSeconds"] = grace
        strategy.on_delete_requested(obj)
    if finalizers:
        metadata["finalizers"] = finalizers
    if not finalizers and grace == 0 and not strategy.deletion_blocked(obj):
        return None
    if metadata.get("generation") is not None and not already:
        # Kubernetes bumps generation when deletion starts, so controllers notice.
        metadata["generation"] = metadata["generation"] + 1
    return obj
