"""The CRD checks of a version's ``selectableFields`` (``ValidateCustomResourceSelectableFields``).

Custom resource field selectors (GA in 1.32) name up to eight fields of a version's schema by
JSONPath; each must exist (no list indexes), lie outside ``metadata``, be a string, boolean or
integer, and appear once.
"""

from __future__ import annotations

from typing import Any

from pilothouse.machinery.apiextensions.fieldpath import FieldPathError, resolve_field_path
from pilothouse.machinery.apiextensions.nodes import Schema
from pilothouse.machinery.apiextensions.paths import child, index
from pilothouse.machinery.errors import FieldError
from pilothouse.machinery.kinds.vcommon import duplicate, invalid, required

__all__ = ["MAX_SELECTABLE_FIELDS", "validate_selectable_fields"]

MAX_SELECTABLE_FIELDS = 8


def validate_selectable_fields(fields: list[dict[str, Any]] | None, schema: Schema | None,
                               path: str) -> list[FieldError]:
    """Errors of ``fields`` (a version's ``selectableFields``) found at ``path``."""
    if not fields:
        return []
    if schema is None:
        return [invalid(path, "", "selectableFields may only be set when version.schema.openAPIV3Schema is not "
                                  "included")]
    errors: list[FieldError] = []
    seen: set[str] = set()
    for i, entry in enumerate(fields):
        at = child(index(path, i), "jsonPath")
        json_path = str(entry.get("jsonPath") or "")
        if not json_path:
            errors.append(required(at))
            continue
        try:
            normalized, found = resolve_field_path(schema, json_path, allow_array_notation=False)
        except FieldPathError as exc:
            errors.append(invalid(at, json_path, f"is an invalid path: {exc}"))
            continue
        if normalized.split(".", 1)[0].split("[", 1)[0] == "metadata":
            errors.append(invalid(at, json_path, "must not point to fields in metadata"))
        if found is None or found.get("type") not in ("string", "boolean", "integer"):
            errors.append(invalid(at, json_path, "must point to a field of type string, boolean or integer. Enum "
                                                 "string fields and strings with formats are allowed."))
        if normalized in seen:
            errors.append(duplicate(at, json_path))
        seen.add(normalized)
    if len(seen) > MAX_SELECTABLE_FIELDS:
        errors.append(FieldError("FieldValueTooMany", path, f"must have at most {MAX_SELECTABLE_FIELDS} items",
                                 len(seen)))
    return errors
