"""Embedded resources in custom resources (``schema/objectmeta.Validate``).

An ``x-kubernetes-embedded-resource`` object is a Kubernetes object inside the custom resource:
it needs an ``apiVersion`` and a ``kind`` (a DNS-1035 label in any case), and its ``metadata``
is checked as ObjectMeta (any name is accepted where there is none, as upstream fakes one).
"""

from __future__ import annotations

from typing import Any

from pilothouse.machinery.apiextensions.nodes import Schema, walk
from pilothouse.machinery.apiextensions.paths import child, go_json_value
from pilothouse.machinery.errors import FieldError
from pilothouse.machinery.kinds.vcommon import invalid, is_dns1035_label, required
from pilothouse.machinery.validation.names import name_is_dns_subdomain
from pilothouse.machinery.validation.objectmeta import validate_object_meta

__all__ = ["validate_embedded_resources"]


def validate_embedded_resources(schema: Schema, obj: Any) -> list[FieldError]:
    """Errors of every embedded resource below the root of ``obj`` (the root has its own checks)."""
    def visit(s: Schema, data: Any, at: str) -> list[FieldError]:
        if isinstance(data, dict) and s.get("x-kubernetes-embedded-resource") and at:
            return _validate_embedded(data, at)
        return []
    return walk(schema, obj, "", visit, "x-kubernetes-embedded-resource")


def _validate_embedded(x: dict[str, Any], path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    if "apiVersion" not in x:
        errors.append(required(child(path, "apiVersion"), "must not be empty"))
    if "kind" not in x:
        errors.append(required(child(path, "kind"), "must not be empty"))
    for name in sorted(x):
        value = x[name]
        at = child(path, name)
        if name == "apiVersion":
            if not isinstance(value, str):
                errors.append(invalid(at, go_json_value(value), "must be a string"))
            elif not value:
                errors.append(invalid(at, value, "must not be empty"))
            elif value.count("/") > 1:
                errors.append(invalid(at, value, f"unexpected GroupVersion string: {value}"))
        elif name == "kind":
            if not isinstance(value, str):
                errors.append(invalid(at, go_json_value(value), "must be a string"))
            elif not value:
                errors.append(invalid(at, value, "must not be empty"))
            else:
                problems = is_dns1035_label(value.lower())
                if problems:
                    errors.append(invalid(at, value, "may have mixed case, but should otherwise match: "
                                                     + ",".join(problems)))
        elif name == "metadata":
            if not isinstance(value, dict):
                errors.append(invalid(at, go_json_value(value), "must be an object"))
                continue
            meta = dict(value)
            if not meta.get("name"):
                meta["name"] = "fakename"  # as upstream: an embedded object need not be named
            errors += validate_object_meta(meta, bool(meta.get("namespace")), name_is_dns_subdomain, at)
    return errors
