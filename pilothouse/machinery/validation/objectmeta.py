"""``metadata`` checks every kind shares, as apimachinery ``ValidateObjectMeta(Update)`` does.

Why a separate module: the generic registry runs these for every create and update, before the
kind's own strategy validation, and their messages (``metadata.name: Required value: name or
generateName is required``) are what users see. Field paths and wording follow
k8s.io/apimachinery ``pkg/api/validation/objectmeta.go`` and, for finalizers, the extra rule of
kubernetes ``pkg/apis/core/validation`` (a finalizer without ``/`` must be a standard one).
Nothing raises: problems are collected into a list of :class:`FieldError`.
"""

from __future__ import annotations

from typing import Any

from pilothouse.machinery.errors import FieldError
from pilothouse.machinery.validation.names import (
    NameValidator,
    is_qualified_name,
    is_valid_label_value,
    name_is_dns_label,
)

__all__ = [
    "FIELD_IMMUTABLE",
    "STANDARD_FINALIZERS",
    "TOTAL_ANNOTATION_SIZE_LIMIT",
    "validate_annotations",
    "validate_finalizers",
    "validate_labels",
    "validate_object_meta",
    "validate_object_meta_update",
    "validate_owner_references",
]

FIELD_IMMUTABLE = "field is immutable"
#: 256 KiB over all annotation keys and values together.
TOTAL_ANNOTATION_SIZE_LIMIT = 256 * (1 << 10)
#: Finalizer names allowed without a domain prefix (core ``IsStandardFinalizerName``).
#: Plus the CRD's cleanup finalizer: CRDs are validated by apimachinery's generic ObjectMeta rules,
#: which do not ask for a domain prefix.
STANDARD_FINALIZERS = frozenset({"kubernetes", "orphan", "foregroundDeletion",
                                 "customresourcecleanup.apiextensions.k8s.io"})
_ORPHAN = "orphan"
_FOREGROUND = "foregroundDeletion"
#: Kinds that may never own anything (apimachinery ``BannedOwners``).
_BANNED_OWNERS = {("", "v1", "Event")}


def _go_string_slice(values: list[str]) -> str:
    # Go's %#v of a []string, as in "found new finalizers []string{\"a\"}".
    return "[]string{" + ", ".join('"' + v + '"' for v in values) + "}"


def validate_labels(labels: Any, path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    if not isinstance(labels, dict):
        return errors
    # Go iterates maps randomly; sorted keys make the messages stable.
    for key in sorted(labels):
        errors += [FieldError("FieldValueInvalid", path, msg, key) for msg in is_qualified_name(key)]
        value = labels[key]
        if isinstance(value, str):
            errors += [FieldError("FieldValueInvalid", path, msg, value)
                       for msg in is_valid_label_value(value)]
    return errors


def validate_annotations(annotations: Any, path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    if not isinstance(annotations, dict):
        return errors
    total = 0
    for key in sorted(annotations):
        # Annotation keys are qualified names except that case does not matter.
        errors += [FieldError("FieldValueInvalid", path, msg, key)
                   for msg in is_qualified_name(key.lower())]
        value = annotations[key]
        total += len(key.encode()) + (len(value.encode()) if isinstance(value, str) else 0)
    if total > TOTAL_ANNOTATION_SIZE_LIMIT:
        errors.append(FieldError("FieldValueTooLong", path,
                                 f"may not be more than {TOTAL_ANNOTATION_SIZE_LIMIT} bytes"))
    return errors


def _split_api_version(api_version: str) -> tuple[str, str]:
    if "/" in api_version:
        group, _, version = api_version.partition("/")
        return group, version
    return "", api_version


def validate_owner_references(refs: Any, path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    if not isinstance(refs, list):
        return errors
    first_controller = ""
    for ref in refs:
        if not isinstance(ref, dict):
            continue
        api_version = ref.get("apiVersion") or ""
        kind = ref.get("kind") or ""
        group, version = _split_api_version(api_version)
        if not version:
            errors.append(FieldError("FieldValueInvalid", f"{path}.apiVersion", "version must not be empty",
                                     api_version))
        if not kind:
            errors.append(FieldError("FieldValueInvalid", f"{path}.kind", "must not be empty", kind))
        if not ref.get("name"):
            errors.append(FieldError("FieldValueInvalid", f"{path}.name", "must not be empty",
                                     ref.get("name") or ""))
        if not ref.get("uid"):
            errors.append(FieldError("FieldValueInvalid", f"{path}.uid", "must not be empty",
                                     ref.get("uid") or ""))
        if (group, version, kind) in _BANNED_OWNERS:
            errors.append(FieldError("FieldValueInvalid", path,
                                     f"{group}/{version}, Kind={kind} is disallowed from being an owner",
                                     ref))
        if ref.get("controller") is True:
            current = f"{kind}/{ref.get('name') or ''}"
            if first_controller:
                errors.append(FieldError(
                    "FieldValueInvalid", path,
                    f'Only one reference can have Controller set to true. Found "true" in references for '
                    f"{first_controller} and {current}", refs))
            else:
                first_controller = current
    return errors


def validate_finalizers(finalizers: Any, path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    if not isinstance(finalizers, list):
        return errors
    names = [f for f in finalizers if isinstance(f, str)]
    for name in names:
        errors += [FieldError("FieldValueInvalid", path, msg, name) for msg in is_qualified_name(name)]
    if _ORPHAN in names and _FOREGROUND in names:
        errors.append(FieldError("FieldValueInvalid", path,
                                 f"finalizer {_ORPHAN} and {_FOREGROUND} cannot be both set", names))
    # Built-in kinds also require a domain prefix unless the name is a standard finalizer.
    for index, name in enumerate(finalizers):
        if isinstance(name, str) and "/" not in name and name not in STANDARD_FINALIZERS:
            errors.append(FieldError("FieldValueInvalid", f"{path}[{index}]",
                                     "name is neither a standard finalizer name nor is it fully qualified",
                                     name))
    return errors


def _validate_managed_fields(entries: Any, path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    if not isinstance(entries, list):
        return errors
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            continue
        here = f"{path}[{index}]"
        operation = entry.get("operation", "")
        if operation not in ("Apply", "Update"):
            errors.append(FieldError("FieldValueInvalid", f"{here}.operation", "must be `Apply` or `Update`",
                                     operation))
        fields_type = entry.get("fieldsType") or ""
        if fields_type and fields_type != "FieldsV1":
            errors.append(FieldError("FieldValueInvalid", f"{here}.fieldsType", "must be `FieldsV1`",
                                     fields_type))
    return errors


def _validate_common(meta: dict[str, Any], path: str) -> list[FieldError]:
    errors = validate_labels(meta.get("labels"), f"{path}.labels")
    errors += validate_annotations(meta.get("annotations"), f"{path}.annotations")
    errors += validate_owner_references(meta.get("ownerReferences"), f"{path}.ownerReferences")
    return errors


def validate_object_meta(meta: dict[str, Any], namespaced: bool, name_validator: NameValidator,
                         path: str = "metadata") -> list[FieldError]:
    """Checks for a new object's metadata (``ValidateObjectMetaAccessor``).

    ``name_validator`` is e.g. :func:`~pilothouse.machinery.validation.names.name_is_dns_subdomain`.
    Run it after generateName has been turned into a name, as the registry does.
    """
    errors: list[FieldError] = []
    generate_name = meta.get("generateName") or ""
    if generate_name:
        errors += [FieldError("FieldValueInvalid", f"{path}.generateName", msg, generate_name)
                   for msg in name_validator(generate_name, True)]
    name = meta.get("name") or ""
    if not name:
        errors.append(FieldError("FieldValueRequired", f"{path}.name", "name or generateName is required"))
    else:
        errors += [FieldError("FieldValueInvalid", f"{path}.name", msg, name)
                   for msg in name_validator(name, False)]
    namespace = meta.get("namespace") or ""
    if namespaced:
        if not namespace:
            errors.append(FieldError("FieldValueRequired", f"{path}.namespace"))
        else:
            errors += [FieldError("FieldValueInvalid", f"{path}.namespace", msg, namespace)
                       for msg in name_is_dns_label(namespace, False)]
    elif namespace:
        errors.append(FieldError("FieldValueForbidden", f"{path}.namespace", "not allowed on this type"))
    generation = meta.get("generation")
    if isinstance(generation, int) and generation < 0:
        errors.append(FieldError("FieldValueInvalid", f"{path}.generation",
                                 "must be greater than or equal to 0", generation))
    errors += _validate_common(meta, path)
    errors += validate_finalizers(meta.get("finalizers"), f"{path}.finalizers")
    errors += _validate_managed_fields(meta.get("managedFields"), f"{path}.managedFields")
    return errors


def validate_object_meta_update(new: dict[str, Any], old: dict[str, Any], path: str = "metadata",
                                require_resource_version: bool = True) -> list[FieldError]:
    """Checks for an update (``ValidateObjectMetaAccessorUpdate``): identity and timestamps are
    immutable, generation never goes down, no finalizer may be added once deletion has started.

    ``require_resource_version``: Kubernetes fills an unconditional update's resourceVersion from
    the stored object before this runs; pass False if the caller has not.
    """
    errors: list[FieldError] = []
    if old.get("deletionTimestamp"):
        old_finalizers = set(old.get("finalizers") or [])
        extra = sorted({f for f in new.get("finalizers") or [] if f not in old_finalizers})
        if extra:
            errors.append(FieldError(
                "FieldValueForbidden", f"{path}.finalizers",
                f"no new finalizers can be added if the object is being deleted, found new finalizers "
                f"{_go_string_slice(extra)}"))
    if require_resource_version and not new.get("resourceVersion"):
        errors.append(FieldError("FieldValueInvalid", f"{path}.resourceVersion",
                                 "must be specified for an update", new.get("resourceVersion") or ""))
    new_generation = new.get("generation") or 0
    if isinstance(new_generation, int) and new_generation < (old.get("generation") or 0):
        errors.append(FieldError("FieldValueInvalid", f"{path}.generation", "must not be decremented",
                                 new_generation))
    for name in ("name", "namespace", "uid", "creationTimestamp", "deletionTimestamp",
                 "deletionGracePeriodSeconds"):
        # Go compares zero values: an absent string equals an empty one (pointers stay distinct).
        pointer = name.startswith("deletion")
        new_value = new.get(name) if pointer else (new.get(name) or None)
        old_value = old.get(name) if pointer else (old.get(name) or None)
        if new_value != old_value:
            errors.append(FieldError("FieldValueInvalid", f"{path}.{name}", FIELD_IMMUTABLE,
                                     new.get(name) if new.get(name) is not None else ""))
    errors += _validate_common(new, path)
    errors += _validate_managed_fields(new.get("managedFields"), f"{path}.managedFields")
    return errors
