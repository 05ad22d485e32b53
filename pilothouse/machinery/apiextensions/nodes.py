"""Typed access to the parts of a schema node (a CRD schema is plain, possibly malformed, JSON)."""

from __future__ import annotations

from typing import Any

from pilothouse.machinery.schema import Schema

__all__ = ["Schema", "node", "number", "properties"]


def node(value: Any) -> Schema | None:
    """``value`` if it is a schema object, else None (a missing or boolean sub-schema)."""
    return value if isinstance(value, dict) else None


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
