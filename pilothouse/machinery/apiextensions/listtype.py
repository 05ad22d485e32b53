"""``x-kubernetes-list-type`` set and map uniqueness in custom resources (``schema/listtype``).

A ``set`` may not repeat an item, a ``map`` may not repeat the values of its
``x-kubernetes-list-map-keys``; each repeated value is reported once, at its second appearance,
as ``Duplicate value`` (Go prints a map key as ``map[string]interface {}{"name":"a"}``).
"""

from __future__ import annotations

from typing import Any

from pilothouse.machinery.apiextensions.correlation import canonical
from pilothouse.machinery.apiextensions.nodes import Schema, walk
from pilothouse.machinery.apiextensions.paths import go_json_value, index, json_type
from pilothouse.machinery.errors import FieldError
from pilothouse.machinery.kinds.vcommon import duplicate, invalid

__all__ = ["validate_list_sets_and_maps"]


def validate_list_sets_and_maps(schema: Schema, obj: Any) -> list[FieldError]:
    """Duplicate items of every set and map list in ``obj``."""
    def visit(s: Schema, data: Any, at: str) -> list[FieldError]:
        if not isinstance(data, list):
            return []
        list_type = s.get("x-kubernetes-list-type")
        if list_type == "set":
            return _set_duplicates(data, at)
        if list_type == "map":
            keys = [k for k in s.get("x-kubernetes-list-map-keys") or [] if isinstance(k, str)]
            return _map_duplicates(data, at, keys)
        return []
    return walk(schema, obj, "", visit, "x-kubernetes-list-type")


def _second_occurrences(identities: list[str]) -> list[int]:
    """``validateListSet``: the index of each value's second appearance (later ones are not reported)."""
    counts: dict[str, int] = {}
    found: list[int] = []
    for i, identity in enumerate(identities):
        counts[identity] = counts.get(identity, 0) + 1
        if counts[identity] == 2:
            found.append(i)
    return found


def _set_duplicates(data: list[Any], path: str) -> list[FieldError]:
    # Go keys scalars by their dynamic type (1 and 1.0 differ) and compounds by their JSON.
    identities = [f"{json_type(item)}:{canonical(item)}" for item in data]
    return [duplicate(index(path, i), go_json_value(data[i])) for i in _second_occurrences(identities)]


def _map_duplicates(data: list[Any], path: str, keys: list[str]) -> list[FieldError]:
    for i, item in enumerate(data):
        if item is not None and not isinstance(item, dict):
            return [invalid(index(path, i), go_json_value(item), "must be an object for an array of list-type map")]
    identities: list[dict[str, Any]] = []
    for item in data:
        present = item or {}
        identities.append({name: present[name] for name in keys if name in present})
    texts = [canonical(identity) for identity in identities]
    return [duplicate(index(path, i), go_json_value(identities[i])) for i in _second_occurrences(texts)]
