"""The FieldsV1 a create gives its writer, emitted in one walk of the new object.

Why it exists: on create, :func:`managed.track_update` used to compare the object against its
creation skeleton (``typed.compare``), collect every changed field as a path tuple, strip and
filter those sets and build a tree to encode them -- about half of the server's CPU per create.
Since there is no live object and no other manager, the writer simply takes every field that
differs from the skeleton, so this module walks the object once alongside the skeleton and
writes the nested FieldsV1 dict directly. Its rules mirror ``typed._compare`` case by case for a
left-hand side that can only be "missing", ``null`` or a skeleton map; the equivalence with the
general path is checked by ``tests/machinery/test_patch_created.py``.
"""

from __future__ import annotations

from typing import Any

import orjson

from pilothouse.machinery.patch.fieldset import element_sort_key, serialize_element
from pilothouse.machinery.patch.schemainfo import FieldMeta, field_meta, item_meta, list_kind
from pilothouse.machinery.patch.typed import MISSING, index_items
from pilothouse.machinery.recent import Recent

__all__ = ["created_fields_v1"]

# What a create never records, as a tree of exact paths (managed._STRIPPED, stripMetaManager) and
# subtrees (the main resource's reset field ``status``). A spec entry is (strip the node's own
# membership, spec for its children); _SKIP drops the whole subtree.
_Spec = dict[str, Any]
_SKIP: Any = object()
_METADATA_SPEC: _Spec = {name: (True, None) for name in (
    "name", "namespace", "creationTimestamp", "selfLink", "uid", "clusterName", "generation",
    "managedFields", "resourceVersion")}
_ROOT_SPEC: _Spec = {"apiVersion": (True, None), "kind": (True, None),
                     "metadata": (True, _METADATA_SPEC), "status": _SKIP}


#: Top-level subtrees (``spec``, ``data``...) seen recently, by schema and serialized value, with
#: the FieldsV1 their walk produced (serialized, so every hit hands out a fresh copy). Objects are
#: mostly created by controllers from one template, so the same spec comes again and again and the
#: walk -- the bulk of a create's field-manager cost -- is done once per distinct spec.
_SUBTREE_MEMO: Recent[tuple[int, bytes, bytes], tuple[Any, bytes | None]] = Recent(512)
#: Larger subtrees are walked every time (their key alone would cost what the memo saves).
_SUBTREE_MEMO_MAX_BYTES = 16_384


def created_fields_v1(skeleton: Any, new: Any, root: FieldMeta) -> dict[str, Any]:
    """FieldsV1 of ``compare(skeleton, new)``'s added and modified fields, minus the stripped
    metadata paths and everything under ``status``: what a main-resource create records.

    ``skeleton`` is :func:`managed.creation_skeleton` of ``new`` and ``new`` carries no
    managedFields (the caller passes ``without_managed_fields``).
    """
    entry = _node(skeleton, new, root, False, _ROOT_SPEC)
    if not entry:
        return {}
    entry.pop(".", None)  # the root path is never a member
    return entry


def _node(lhs: Any, rhs: Any, meta: FieldMeta, strip_self: bool, spec: _Spec | None) -> dict[str, Any] | None:
    """The FieldsV1 entry of one position, or None when neither it nor anything under it is
    taken. ``lhs`` is MISSING, None or a skeleton map (only where ``rhs`` is a map)."""
    # typed._compare: an equal subtree reports nothing (None == None, {} == {}, skeleton == value).
    if type(lhs) is type(rhs) and lhs == rhs:
        return None
    if isinstance(rhs, dict):
        if meta.map_type == "atomic" or not rhs:
            # _leaf: added from missing, modified from null or from a differing skeleton.
            return None if strip_self else {}
        out: dict[str, Any] = {} if strip_self or lhs is not MISSING else {".": {}}
        skeleton = lhs if isinstance(lhs, dict) else None
        schema = meta.schema
        for name in sorted(rhs):
            child_strip = False
            child_spec = None
            if spec is not None and name in spec:
                rule = spec[name]
                if rule is _SKIP:
                    continue
                child_strip, child_spec = rule
            child_lhs = MISSING if skeleton is None else skeleton.get(name, MISSING)
            if spec is _ROOT_SPEC and child_spec is None and not child_strip and isinstance(rhs[name], dict):
                child = _memoized_node(child_lhs, rhs[name], field_meta(schema, name))
            else:
                child = _node(child_lhs, rhs[name], field_meta(schema, name), child_strip, child_spec)
            if child is not None:
                out["f:" + name] = child
        return _finish(out)
    if isinstance(rhs, list):
        kind, keys = list_kind(meta)
        if kind == "atomic" or not rhs:
            return None if strip_self else {}
        out = {} if strip_self or lhs is not MISSING else {".": {}}
        element_meta = item_meta(meta.schema)
        items = index_items(rhs, kind, keys)
        for element in sorted(items, key=element_sort_key):
            child = _node(MISSING, items[element], element_meta, False, None)
            if child is not None:
                out[serialize_element(element)] = child
        return _finish(out)
    # A scalar or null: added from missing, modified from null (equal nulls returned above).
    return None if strip_self else {}


def _memoized_node(lhs: Any, rhs: dict[str, Any], meta: FieldMeta) -> dict[str, Any] | None:
    """:func:`_node` of a top-level map without strip rules, through :data:`_SUBTREE_MEMO`.

    The key is the schema's identity, the value's JSON and the skeleton's: the skeleton is not a
    function of the schema and value alone (a field the parent requires gets an empty map in it,
    the same field elsewhere is missing: an ObjectReference ``{}`` as a core Event's
    ``involvedObject`` or an events.k8s.io Event's ``regarding``), and equal JSON means an equal
    value, so the same FieldsV1.
    """
    try:
        text = orjson.dumps(rhs)
    except TypeError:  # not JSON (cannot come from a request body): just walk it
        return _node(lhs, rhs, meta, False, None)
    if len(text) > _SUBTREE_MEMO_MAX_BYTES:
        return _node(lhs, rhs, meta, False, None)
    key = (id(meta.schema), text, b"" if lhs is MISSING else orjson.dumps(lhs))
    remembered = _SUBTREE_MEMO.get(key)
    if remembered is not None and remembered[0] is meta.schema:
        hit = remembered[1]
        return None if hit is None else orjson.loads(hit)
    result = _node(lhs, rhs, meta, False, None)
    # the schema is held with the entry, so that its id cannot be another schema's meanwhile
    _SUBTREE_MEMO.put(key, (meta.schema, None if result is None else orjson.dumps(result)))
    return result


def _finish(out: dict[str, Any]) -> dict[str, Any] | None:
    # A member without children is a bare {} (fieldset._emit adds "." only beside children).
    if len(out) == 1 and "." in out:
        return {}
    return out or None
