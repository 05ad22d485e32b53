"""Typed access to the parts of a schema node (a CRD schema is plain, possibly malformed, JSON)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pilothouse.machinery.apiextensions.paths import child, index, key
from pilothouse.machinery.errors import FieldError
from pilothouse.machinery.schema import Schema

__all__ = ["Schema", "node", "node_list", "number", "or_empty", "properties", "walk"]


def node(value: Any) -> Schema | None:
    """``value`` if it is a schema object, else None (a missing or boolean sub-schema)."""
    return value if isinstance(value, dict) else None


def or_empty(value: Any) -> Schema:
    """``value`` if it is a schema object, else an empty one."""
    return value if isinstance(value, dict) else {}


def node_list(value: Any) -> list[Schema]:
    """The schema objects of a list keyword (``allOf``, ``anyOf``, ``oneOf``); [] when absent."""
    return [or_empty(v) for v in value] if isinstance(value, list) else []


def properties(s: Schema | None) -> dict[str, Schema]:
    """A node's ``properties`` that are schema objects."""
    found = s.get("properties") if s is not None else None
    if not isinstance(found, dict):
        return {}
    return {name: value for name, value in found.items() if isinstance(value, dict)}


def number(value: Any) -> int | float | None:
    """A numeric keyword's value (``maximum``, ``multipleOf``...), None when absent or not a number."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    return None


def walk(s: Schema, data: Any, path: str,
         visit: Callable[[Schema, Any, str], list[FieldError]]) -> list[FieldError]:
    """Apply ``visit`` to every (schema node, value) pair, structural part only, top-down."""
    errors = visit(s, data, path)
    if isinstance(data, dict):
        declared = properties(s)
        additional = node(s.get("additionalProperties"))
        for name in sorted(data):
            if name in declared:
                errors += walk(declared[name], data[name], child(path, name), visit)
            elif additional is not None:
                errors += walk(additional, data[name], key(path, name), visit)
    elif isinstance(data, list):
        items = node(s.get("items"))
        if items is not None:
            for i, item in enumerate(data):
                errors += walk(items, item, index(path, i), visit)
    return errors
