"""Patch metadata read from the official OpenAPI-derived JSON schemas.

Why this module exists: strategic merge patch and server-side apply both need the same facts
about a field -- how a list merges (``x-kubernetes-patch-strategy`` / ``-patch-merge-key`` for
SMP, ``x-kubernetes-list-type`` / ``-list-map-keys`` for apply), whether a map is atomic, and
the schema of a child value. In the JSON schemas those extensions sit either on the property
(beside its ``$ref``) or on the referenced definition, so every lookup merges both places.

A ``None`` schema means "unknown" (no type information): SMP then merges maps and replaces
lists, apply treats lists as atomic and maps as granular -- what Kubernetes does for
untyped/deduced values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pilothouse.machinery.schema import Schema, resolve

__all__ = [
    "FieldMeta",
    "field_meta",
    "is_struct",
    "item_meta",
    "list_kind",
    "node_meta",
]

_PREFIXES = ("x-kubernetes-",)


@dataclass(frozen=True)
class FieldMeta:
    """What the schema says about one value position (a map field or a list item)."""

    schema: Schema | None  # the resolved schema of the value; None when unknown
    strategies: tuple[str, ...] = ()  # x-kubernetes-patch-strategy split on ","
    merge_key: str = ""  # x-kubernetes-patch-merge-key
    list_type: str = ""  # x-kubernetes-list-type: atomic | set | map | ""
    list_keys: tuple[str, ...] = ()  # x-kubernetes-list-map-keys
    map_type: str = ""  # x-kubernetes-map-type: atomic | granular | ""


_UNKNOWN = FieldMeta(schema=None)


def _ext(raw: Schema, resolved: Schema, name: str) -> Any:
    # Extensions on the property win over those on the referenced definition.
    value = raw.get(name)
    return resolved.get(name) if value is None else value


# node_meta runs for every field of every write (managedFields tracking): memoise it. Keyed by the
# schema dict's identity, with the dict kept alive in the entry so an id is never reused.
_NODE_META_CACHE: dict[int, tuple[Schema, FieldMeta]] = {}


def node_meta(raw: Schema | None) -> FieldMeta:
    """Metadata of a value whose (unresolved) schema is ``raw``."""
    if not raw:
        return _UNKNOWN
    cached = _NODE_META_CACHE.get(id(raw))
    if cached is not None and cached[0] is raw:
        return cached[1]
    meta = _node_meta(raw)
    if len(_NODE_META_CACHE) > 100_000:
        _NODE_META_CACHE.clear()
    _NODE_META_CACHE[id(raw)] = (raw, meta)
    return meta


def _node_meta(raw: Schema) -> FieldMeta:
    resolved = resolve(raw)
    strategy = _ext(raw, resolved, "x-kubernetes-patch-strategy") or ""
    keys = _ext(raw, resolved, "x-kubernetes-list-map-keys") or ()
    return FieldMeta(
        schema=resolved,
        strategies=tuple(s for s in str(strategy).split(",") if s),
        merge_key=str(_ext(raw, resolved, "x-kubernetes-patch-merge-key") or ""),
        list_type=str(_ext(raw, resolved, "x-kubernetes-list-type") or ""),
        list_keys=tuple(str(k) for k in keys),
        map_type=str(_ext(raw, resolved, "x-kubernetes-map-type") or ""),
    )


# field_meta runs for every field of every write too: memoise its answers per parent schema
# (identity-keyed like _NODE_META_CACHE, the parent kept alive in the entry).
_FIELD_META_CACHE: dict[int, tuple[Schema, dict[str, FieldMeta]]] = {}


def field_meta(parent: Schema | None, key: str) -> FieldMeta:
    """Metadata of ``parent[key]``: a declared property or an ``additionalProperties`` value."""
    if not parent:
        return _UNKNOWN
    cached = _FIELD_META_CACHE.get(id(parent))
    if cached is not None and cached[0] is parent:
        known = cached[1]
    else:
        if len(_FIELD_META_CACHE) > 100_000:
            _FIELD_META_CACHE.clear()
        known = {}
        _FIELD_META_CACHE[id(parent)] = (parent, known)
    meta = known.get(key)
    if meta is None:
        meta = _field_meta(parent, key)
        if len(known) < 10_000:  # map keys (labels, data) are unbounded; schema fields are not
            known[key] = meta
    return meta


def _field_meta(parent: Schema, key: str) -> FieldMeta:
    props = parent.get("properties")
    if isinstance(props, dict) and key in props:
        return node_meta(props[key])
    extra = parent.get("additionalProperties")
    if isinstance(extra, dict):
        return node_meta(extra)
    return _UNKNOWN


def item_meta(list_schema: Schema | None) -> FieldMeta:
    """Metadata of the items of a list whose resolved schema is ``list_schema``."""
    if not list_schema:
        return _UNKNOWN
    items = list_schema.get("items")
    return node_meta(items) if isinstance(items, dict) else _UNKNOWN


def is_struct(schema: Schema | None, key: str) -> bool:
    """Whether ``key`` is a declared field (a struct field) rather than a map entry."""
    if not schema:
        return False
    props = schema.get("properties")
    return isinstance(props, dict) and key in props


def list_kind(meta: FieldMeta) -> tuple[str, tuple[str, ...]]:
    """How server-side apply treats a list: ("atomic"|"set"|"map", keys).

    Mirrors structured-merge-diff's OpenAPI conversion: ``x-kubernetes-list-type`` wins; a
    list without it but with ``patchStrategy: merge`` is associative (keyed by the merge key)
    or a set of primitives; anything else is atomic.
    """
    if meta.list_type == "map":
        return "map", meta.list_keys or ((meta.merge_key,) if meta.merge_key else ())
    if meta.list_type in ("set", "atomic"):
        return meta.list_type, ()
    if "merge" in meta.strategies:
        if meta.merge_key:
            return "map", (meta.merge_key,)
        return "set", ()
    return "atomic", ()
