"""Schema-aware walks over objects, as structured-merge-diff's ``typed`` package does them.

Why it exists: managed-fields bookkeeping needs four operations on JSON objects that respect
list semantics (atomic / set / map-list keyed by ``x-kubernetes-list-map-keys``) and atomic
maps: the set of fields a value sets (``ToFieldSet``), the fields that differ between two values
(``Compare``), the apply merge of a configuration into a live object (``Merge``) and the removal
of a set of fields (``RemoveItems``). Untyped values (no schema) are "deduced": maps are granular,
lists atomic.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from pilothouse.machinery.patch import fieldset
from pilothouse.machinery.patch.fieldset import Path, PathElement
from pilothouse.machinery.patch.schemainfo import FieldMeta, field_meta, is_struct, item_meta, list_kind

__all__ = ["MISSING", "Comparison", "compare", "index_items", "merge", "remove_paths", "to_field_set"]


class _Missing:
    """An absent value, distinct from JSON null."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


@dataclass
class Comparison:
    added: set[Path] = field(default_factory=set)
    modified: set[Path] = field(default_factory=set)
    removed: set[Path] = field(default_factory=set)


def _shape(data: Any) -> str:
    if data is MISSING:
        return "missing"
    if data is None:
        return "null"
    if isinstance(data, dict):
        return "map"
    if isinstance(data, list):
        return "list"
    return "scalar"


def _item_element(item: Any, kind: str, keys: tuple[str, ...], position: int) -> PathElement:
    if kind == "map" and isinstance(item, dict):
        return fieldset.key({k: item[k] for k in keys if k in item})
    if kind == "set" and not isinstance(item, dict | list):
        return fieldset.value(item)
    return fieldset.index(position)


def _index_items(items: list[Any], kind: str, keys: tuple[str, ...]) -> dict[PathElement, Any]:
    # The first of duplicate items wins, as in structured-merge-diff's comparisons.
    out: dict[PathElement, Any] = {}
    for position, item in enumerate(items):
        out.setdefault(_item_element(item, kind, keys, position), item)
    return out


#: Public name: a list's items by path element, the first of duplicates winning.
index_items = _index_items


def to_field_set(data: Any, meta: FieldMeta, path: Path = ()) -> set[Path]:
    """The member paths a value sets (``TypedValue.ToFieldSet``)."""
    out: set[Path] = set()
    _to_field_set(data, meta, path, out)
    return out


def _to_field_set(data: Any, meta: FieldMeta, path: Path, out: set[Path]) -> None:
    if isinstance(data, dict):
        if meta.map_type == "atomic":
            out.add(path)
            return
        for name, child in data.items():
            child_path = (*path, fieldset.field(name))
            _to_field_set(child, field_meta(meta.schema, name), child_path, out)
            if child is None or child == {} or not is_struct(meta.schema, name):
                out.add(child_path)
    elif isinstance(data, list):
        kind, keys = list_kind(meta)
        if kind == "atomic":
            out.add(path)
            return
        element_meta = item_meta(meta.schema)
        for position, item in enumerate(data):
            child_path = (*path, _item_element(item, kind, keys, position))
            _to_field_set(item, element_meta, child_path, out)
            out.add(child_path)
    elif path:
        out.add(path)


def compare(lhs: Any, rhs: Any, meta: FieldMeta, path: Path = ()) -> Comparison:
    """Fields added, modified and removed going from ``lhs`` to ``rhs`` (``TypedValue.Compare``)."""
    result = Comparison()
    _compare(lhs, rhs, meta, path, result)
    result.added.discard(())
    result.modified.discard(())
    result.removed.discard(())
    return result


def _leaf(lhs: Any, rhs: Any, path: Path, result: Comparison) -> None:
    if lhs is MISSING and rhs is MISSING:
        return
    if lhs is MISSING:
        result.added.add(path)
    elif rhs is MISSING:
        result.removed.add(path)
    elif not _same(lhs, rhs):
        result.modified.add(path)


def _same(lhs: Any, rhs: Any) -> bool:
    # JSON equality: true is not 1.
    if isinstance(lhs, bool) != isinstance(rhs, bool):
        return False
    return bool(lhs == rhs)


def _compare(lhs: Any, rhs: Any, meta: FieldMeta, path: Path, result: Comparison) -> None:
    # Equal subtrees have nothing to report: most writes change a few fields of a large object, and
    # the C-level equality check skips the rest at once. (Python's == treats True as 1; the schema
    # types each field as one or the other, so that cannot hide a change.)
    if type(lhs) is type(rhs) and lhs == rhs:
        return
    left, right = _shape(lhs), _shape(rhs)
    shapes = {left, right} - {"missing", "null"}
    if len(shapes) > 1:
        # A value changed shape: whatever was under the old one is gone, the new one replaces it.
        if left in ("map", "list"):
            _compare_children(lhs, {} if left == "map" else [], meta, path, result)
        result.modified.add(path)
        return
    # null counts as an empty value of whatever shape the other side has.
    shape = shapes.pop() if shapes else "scalar"
    if shape == "scalar":
        _leaf(lhs, rhs, path, result)
        return
    empty_left = lhs is MISSING or lhs is None or len(lhs) == 0
    empty_right = rhs is MISSING or rhs is None or len(rhs) == 0
    atomic = (meta.map_type == "atomic") if shape == "map" else (list_kind(meta)[0] == "atomic")
    if atomic or (empty_left and empty_right):
        _leaf(lhs, rhs, path, result)
        return
    _compare_children(lhs, rhs, meta, path, result)
    if lhs is MISSING:
        result.added.add(path)
    elif rhs is MISSING:
        result.removed.add(path)


def _compare_children(lhs: Any, rhs: Any, meta: FieldMeta, path: Path, result: Comparison) -> None:
    if isinstance(lhs, dict) or isinstance(rhs, dict):
        left = lhs if isinstance(lhs, dict) else {}
        right = rhs if isinstance(rhs, dict) else {}
        for name in {**left, **right}:
            _compare(left.get(name, MISSING), right.get(name, MISSING), field_meta(meta.schema, name),
                     (*path, fieldset.field(name)), result)
        return
    kind, keys = list_kind(meta)
    left_items = _index_items(lhs if isinstance(lhs, list) else [], kind, keys)
    right_items = _index_items(rhs if isinstance(rhs, list) else [], kind, keys)
    element_meta = item_meta(meta.schema)
    for element, item in right_items.items():
        _compare(left_items.get(element, MISSING), item, element_meta, (*path, element), result)
    for element, item in left_items.items():
        if element not in right_items:
            _compare(item, MISSING, element_meta, (*path, element), result)


def merge(lhs: Any, rhs: Any, meta: FieldMeta) -> Any:
    """Apply-merge ``rhs`` (a configuration) into ``lhs`` (the live value) (``TypedValue.Merge``)."""
    if rhs is MISSING:
        return copy.deepcopy(lhs)
    if lhs is MISSING or _shape(lhs) != _shape(rhs):
        return _without_nulls(copy.deepcopy(rhs))
    if isinstance(rhs, dict) and isinstance(lhs, dict) and meta.map_type != "atomic":
        out = copy.deepcopy(lhs)
        for name, child in rhs.items():
            if child is None:
                # An explicit null in the configuration: owned, and absent from the object.
                out.pop(name, None)
                continue
            out[name] = merge(lhs.get(name, MISSING), child, field_meta(meta.schema, name))
        return out
    if isinstance(rhs, list) and isinstance(lhs, list):
        kind, keys = list_kind(meta)
        if kind != "atomic":
            return _merge_list(lhs, rhs, meta, kind, keys)
    return _without_nulls(copy.deepcopy(rhs))


def _without_nulls(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _without_nulls(v) for k, v in data.items() if v is not None}
    if isinstance(data, list):
        return [_without_nulls(v) for v in data]
    return data


def _merge_list(lhs: list[Any], rhs: list[Any], meta: FieldMeta, kind: str,
                keys: tuple[str, ...]) -> list[Any]:
    # structured-merge-diff mergingWalker.visitListItems: keep the live order for live-only
    # items, the configuration's order for shared ones, and put new items after the shared item
    # that precedes them in the configuration.
    element_meta = item_meta(meta.schema)
    left_pes = [_item_element(item, kind, keys, i) for i, item in enumerate(lhs)]
    right_pes = [_item_element(item, kind, keys, i) for i, item in enumerate(rhs)]
    observed_left = _index_items(lhs, kind, keys)
    observed_right = _index_items(rhs, kind, keys)
    shared = [pe for pe in right_pes if pe in observed_left]
    next_shared = shared.pop(0) if shared else None
    merged_right: set[PathElement] = set()
    out: list[Any] = []
    li = ri = 0
    while li < len(left_pes) or ri < len(right_pes):
        if li < len(left_pes) and ri < len(right_pes):
            pe = left_pes[li]
            if pe == right_pes[ri]:
                merged_right.add(pe)
                out.append(merge(observed_left.get(pe, MISSING), observed_right[pe], element_meta))
                li += 1
                ri += 1
                next_shared = shared.pop(0) if shared else None
                continue
            if pe in observed_right and next_shared is not None and next_shared != pe:
                li += 1
                continue
        if li < len(left_pes):
            pe = left_pes[li]
            if pe not in observed_right:
                out.append(copy.deepcopy(lhs[li]))
                li += 1
                continue
            if pe in merged_right:
                li += 1
                continue
        if ri < len(right_pes):
            pe = right_pes[ri]
            merged_right.add(pe)
            out.append(merge(observed_left.get(pe, MISSING), observed_right[pe], element_meta))
            ri += 1
            if next_shared is not None and next_shared == pe:
                next_shared = shared.pop(0) if shared else None
    return out


def remove_paths(data: Any, paths: set[Path], meta: FieldMeta) -> Any:
    """A copy of ``data`` without the given member paths (and everything under them)."""
    if not paths:
        return data
    prefixes = {p[:end] for p in paths for end in range(len(p))}
    return _remove(data, paths, prefixes, meta, ())


def _remove(data: Any, paths: set[Path], prefixes: set[Path], meta: FieldMeta, path: Path) -> Any:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for name, child in data.items():
            child_path = (*path, fieldset.field(name))
            if child_path in paths:
                continue
            if child_path in prefixes:
                child = _remove(child, paths, prefixes, field_meta(meta.schema, name), child_path)
            out[name] = child
        return out
    if isinstance(data, list):
        kind, keys = list_kind(meta)
        element_meta = item_meta(meta.schema)
        kept: list[Any] = []
        for position, item in enumerate(data):
            child_path = (*path, _item_element(item, kind, keys, position))
            if child_path in paths:
                continue
            if child_path in prefixes:
                item = _remove(item, paths, prefixes, element_meta, child_path)
            kept.append(item)
        return kept
    return data
