"""Pairing each part of an updated object with its old value (``common.CorrelatedObject``).

Transition rules (``oldSelf``) and validation ratcheting both ask "what was this value before?".
Kubernetes answers only where identity is unambiguous: object properties and granular map
entries by key, ``x-kubernetes-list-type: map`` items by their keys; items of other lists and
entries of atomic maps have no old value.
"""

from __future__ import annotations

import json
from typing import Any, Final

from pilothouse.machinery.apiextensions.nodes import Schema

__all__ = ["ABSENT", "canonical", "entry", "items", "same"]


class _Absent:
    def __repr__(self) -> str:
        return "ABSENT"


#: No correlated old value (not the same as an old value of null).
ABSENT: Final = _Absent()


def same(old: Any, new: Any) -> bool:
    """``reflect.DeepEqual`` of decoded JSON: 1 and 1.0 differ, and so do true and 1."""
    if old is ABSENT or old != new:  # Python's == is looser than Go's, never stricter
        return False
    return canonical(old) == canonical(new)


def canonical(value: Any) -> str:
    """Decoded JSON as a string that is equal exactly when Go's DeepEqual would be."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def entry(s: Schema, old: Any, name: str, declared: bool) -> Any:
    """The old value of property or map entry ``name`` of an object whose old value is ``old``."""
    if not isinstance(old, dict) or name not in old:
        return ABSENT
    if not declared and s.get("x-kubernetes-map-type") == "atomic":
        return ABSENT
    return old[name]


def items(s: Schema, new: list[Any], old: Any) -> list[Any]:
    """The old counterpart of each item of ``new`` (only list-type map items have one)."""
    if s.get("x-kubernetes-list-type") != "map" or not isinstance(old, list):
        return [ABSENT] * len(new)
    keys = [k for k in s.get("x-kubernetes-list-map-keys") or [] if isinstance(k, str)]

    def identity(item: Any) -> str | None:
        return canonical([item.get(k) for k in keys]) if isinstance(item, dict) else None

    by_key = {identity(item): item for item in old if identity(item) is not None}
    return [by_key.get(identity(item), ABSENT) for item in new]
