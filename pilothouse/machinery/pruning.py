"""Dropping fields a kind's schema does not know.

Kubernetes decodes into Go structs, so a field the type lacks can never be stored: it is reported
(``fieldValidation=Strict`` refuses, ``Warn`` warns) and then silently dropped. We store JSON, so we
drop such fields explicitly after reporting them.
"""

from __future__ import annotations

from typing import Any

from pilothouse.machinery.schema import Schema, resolve

__all__ = ["prune_unknown_fields"]


def prune_unknown_fields(value: Any, schema: Schema | None) -> None:
    """Remove, in place, every object key that ``schema`` does not declare."""
    if schema is None:
        return
    schema = resolve(schema)
    if not schema or schema.get("x-kubernetes-preserve-unknown-fields"):
        return
    if isinstance(value, dict):
        properties = schema.get("properties")
        if properties is not None:
            for key in list(value):
                if key not in properties:
                    del value[key]
                else:
                    prune_unknown_fields(value[key], properties[key])
            return
        additional = schema.get("additionalProperties")
        if isinstance(additional, dict):
            for item in value.values():
                prune_unknown_fields(item, additional)
    elif isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            for item in value:
                prune_unknown_fields(item, items)
