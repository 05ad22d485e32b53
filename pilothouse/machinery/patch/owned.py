"""Set operations performed directly on canonical FieldsV1 dicts.

Why it exists: an update used to decode every manager's FieldsV1 into a set of path tuples,
subtract the changed fields, and encode every set back (tree building, sorting, serialising) --
most of the bookkeeping cost of a write that changes a few fields. When an entry is already in
the canonical form :func:`fieldset.encode_fields_v1` writes (what this server stores), removing
or adding a few paths can be done on the dict itself, rebuilding only the nodes on those paths
and sharing every other subtree. :func:`is_canonical` guards that precondition; callers fall back
to the set-based path for anything else (client-written or foreign managedFields).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pilothouse.machinery.patch.fieldset import (
    Path,
    PathElement,
    deserialize_element,
    element_sort_key,
    serialize_element,
)

__all__ = ["Trie", "emit", "is_canonical", "is_canonical_root", "remove_paths", "trie", "union_paths"]

_MISSING_ELEMENT: Any = object()
# The parsed form of FieldsV1 keys; bounded because k:/v: keys carry object data.
_PARSED: dict[str, tuple[Any, Any]] = {}


class Trie:
    """A set of paths as a tree: ``member`` marks a path of the set."""

    __slots__ = ("children", "member")

    def __init__(self) -> None:
        self.member = False
        self.children: dict[PathElement, Trie] = {}


def trie(paths: Iterable[Path]) -> Trie:
    root = Trie()
    for path in paths:
        node = root
        for element in path:
            child = node.children.get(element)
            if child is None:
                child = node.children[element] = Trie()
            node = child
        node.member = True
    return root


def _parse(text: str) -> tuple[Any, Any]:
    """(element, its sort key) of a FieldsV1 key if the key is exactly how this element
    serialises, else (_MISSING_ELEMENT, None) (unknown or non-canonical spelling)."""
    known = _PARSED.get(text)
    if known is not None:
        return known
    try:
        parsed = deserialize_element(text)
    except (ValueError, TypeError):
        parsed = None
    if parsed is None or serialize_element(parsed) != text:
        known = (_MISSING_ELEMENT, None)
    else:
        known = (parsed, element_sort_key(parsed))
    if len(_PARSED) > 50_000:
        _PARSED.clear()
    _PARSED[text] = known
    return known


def is_canonical_root(node: Any) -> bool:
    """Whether a whole FieldsV1 value is canonical (the root itself is never a member)."""
    return isinstance(node, dict) and "." not in node and is_canonical(node)


def is_canonical(node: Any) -> bool:
    """Whether ``node`` is exactly what ``encode_fields_v1(decode_fields_v1(node))`` returns:
    object nodes, canonical keys in strictly increasing element order, ``"."`` first and only
    beside children."""
    if not isinstance(node, dict):
        return False
    previous: Any = None
    first = True
    for text, child in node.items():
        if text == ".":
            if not first or len(node) == 1 or child != {}:
                return False
            first = False
            continue
        first = False
        element, order = _parse(text)
        if element is _MISSING_ELEMENT:
            return False
        if previous is not None and not previous < order:
            return False
        previous = order
        if not isinstance(child, dict) or (child and not is_canonical(child)):
            return False
    return True


def _finish(member: bool, children: list[tuple[Any, str, dict[str, Any]]]) -> dict[str, Any] | None:
    # children: (sort key, key text, node), already in order.
    if not children:
        return {} if member else None
    out: dict[str, Any] = {".": {}} if member else {}
    for _, text, child in children:
        out[text] = child
    return out


def _emit(node: Trie) -> dict[str, Any]:
    # encode_fields_v1 of a trie's subtree, as the value of a member or of a node with children.
    children = sorted(((element_sort_key(e), serialize_element(e), _emit(c)) for e, c in node.children.items()),
                      key=lambda item: item[0])
    return _finish(node.member, children) or {}


def emit(paths: Trie) -> dict[str, Any]:
    """encode_fields_v1 of a trie."""
    children = sorted(((element_sort_key(e), serialize_element(e), _emit(c)) for e, c in paths.children.items()),
                      key=lambda item: item[0])
    return _finish(False, children) or {}


def remove_paths(node: dict[str, Any], paths: Trie) -> dict[str, Any]:
    """A canonical FieldsV1 root without the member paths in ``paths`` (ancestors that no longer
    hold anything disappear). Untouched subtrees are shared, not copied."""
    result = _remove(node, False, paths)
    return result or {}


def _remove(node: dict[str, Any], member: bool, paths: Trie) -> dict[str, Any] | None:
    if not node:
        return None if paths.member else {}
    member = member and not paths.member
    changed = paths.member
    kept: list[tuple[Any, str, dict[str, Any]]] = []
    for text, child in node.items():
        if text == ".":
            continue
        element = _parse(text)[0]
        sub = paths.children.get(element)
        if sub is None:
            kept.append((None, text, child))
            continue
        changed = True
        child_member = not child or "." in child
        result = _remove(child, child_member, sub)
        if result is not None:
            kept.append((None, text, result))
    if not changed:
        return node
    return _finish(member, kept)


def union_paths(node: dict[str, Any], paths: Trie) -> dict[str, Any]:
    """A canonical FieldsV1 root plus the member paths in ``paths``."""
    return _union(node, False, paths) or {}


def _union(node: dict[str, Any], member: bool, paths: Trie) -> dict[str, Any] | None:
    member = member or paths.member
    if not paths.children:
        if not node:
            return {} if member else None
        if member and "." not in node:
            return {".": {}, **node}
        return node
    entries: dict[Any, tuple[Any, str, dict[str, Any]]] = {}
    for text, child in node.items():
        if text == ".":
            continue
        element, order = _parse(text)
        entries[element] = (order, text, child)
    for element, sub in paths.children.items():
        existing = entries.get(element)
        if existing is None:
            entries[element] = (element_sort_key(element), serialize_element(element), _emit(sub))
        else:
            order, text, child = existing
            child_member = not child or "." in child
            entries[element] = (order, text, _union(child, child_member, sub) or {})
    return _finish(member, sorted(entries.values(), key=lambda item: item[0]))
