"""Typed access to the parts of a schema node (a CRD schema is plain, possibly malformed, JSON)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pilothouse.machinery.apiextensions.paths import child, index, key
from pilothouse.machinery.errors import FieldError
from pilothouse.machinery.schema import Schema

__all__ = ["Schema", "carries", "node", "node_list", "number", "or_empty", "properties", "walk"]


def node(value: Any) -> Schema | None:
    """``value`` if it is a schema object, else None (a missing or boolean sub-schema)."""
    return value if isinstance(value, dict) else None


def or_empty(value: Any) -> Schema:
    """``value`` if it is a schema object, else an empty one."""
    return value if isinstance(value, dict) else {}


def node_list(value: Any) -> list[Schema]:
    """The schema objects of a list keyword (``allOf``, ``anyOf``, ``oneOf``); [] when absent."""
    return [or_empty(v) for v in value] if isinstance(value, list) else []


#: ``properties`` answers by identity of the ``properties`` dict (kept alive in the value, with its
#: size as a cheap guard): every request walks the same schema of its CRD version.
_PROPERTIES: dict[int, tuple[dict[str, Any], int, dict[str, Schema]]] = {}
_MEMO_LIMIT = 65536


def properties(s: Schema | None) -> dict[str, Schema]:
    """A node's ``properties`` that are schema objects (shared: callers must not modify it)."""
    found = s.get("properties") if s is not None else None
    if not isinstance(found, dict):
        return {}
    memo = _PROPERTIES.get(id(found))
    if memo is not None and memo[0] is found and memo[1] == len(found):
        return memo[2]
    declared = {name: value for name, value in found.items() if isinstance(value, dict)}
    if len(_PROPERTIES) >= _MEMO_LIMIT:
        _PROPERTIES.clear()
    _PROPERTIES[id(found)] = (found, len(found), declared)
    return declared


def number(value: Any) -> int | float | None:
    """A numeric keyword's value (``maximum``, ``multipleOf``...), None when absent or not a number."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    return None


#: ``carries`` answers by schema node identity. The node itself is kept in the value so its id
#: cannot be reused by another dict while the answer is cached; bounded since CRDs come and go.
_CARRIES: dict[tuple[int, str], tuple[Schema, bool]] = {}


def carries(s: Schema, keyword: str) -> bool:
    """Whether ``s`` or a node below it (structural part: properties, additionalProperties,
    items) sets ``keyword``.

    Why: validation passes that only act where a keyword is set (CEL rules, embedded resources,
    list types, defaults) skip every subtree that cannot have one, instead of walking the whole
    object per request. A CRD version's schema is built once and never mutated, so the answer
    is memoised by identity.
    """
    memo = _CARRIES.get((id(s), keyword))
    if memo is not None and memo[0] is s:
        return memo[1]
    found = keyword in s
    for sub in _structural_children(s):
        found = carries(sub, keyword) or found
    if len(_CARRIES) >= _MEMO_LIMIT:
        _CARRIES.clear()
    _CARRIES[(id(s), keyword)] = (s, found)
    return found


def _structural_children(s: Schema) -> list[Schema]:
    children = list(properties(s).values())
    for name in ("additionalProperties", "items"):
        sub = node(s.get(name))
        if sub is not None:
            children.append(sub)
    return children


def walk(s: Schema, data: Any, path: str,
         visit: Callable[[Schema, Any, str], list[FieldError]], keyword: str | None = None) -> list[FieldError]:
    """Apply ``visit`` to every (schema node, value) pair, structural part only, top-down.

    With ``keyword``, subtrees whose schema never sets it are skipped (``visit`` must then do
    nothing at a node without the keyword).
    """
    if keyword is not None and not carries(s, keyword):
        return []
    errors = visit(s, data, path)
    if isinstance(data, dict):
        declared = properties(s)
        additional = node(s.get("additionalProperties"))
        for name in sorted(data):
            if name in declared:
                errors += walk(declared[name], data[name], child(path, name), visit, keyword)
            elif additional is not None:
                errors += walk(additional, data[name], key(path, name), visit, keyword)
    elif isinstance(data, list):
        items = node(s.get("items"))
        if items is not None:
            for i, item in enumerate(data):
                errors += walk(items, item, index(path, i), visit, keyword)
    return errors
