"""Field paths and sets, and their ``FieldsV1`` encoding in ``metadata.managedFields``.

Why it exists: server-side apply records, per manager, the set of fields it owns. Kubernetes
(structured-merge-diff ``fieldpath``) names a field by a path of elements -- a struct/map field
``f:<name>``, a map-list item ``k:{"name":"x"}`` (its list-map key values), a set item
``v:"value"``, an atomic-list index ``i:3`` -- and serialises a set as nested JSON objects where
``{}`` marks a member leaf and ``".": {}`` marks a node that is a member *and* has children
(``fieldpath/serialize.go``). kubectl shows this verbatim with ``--show-managed-fields``.

A path is a tuple of path elements; a set is a Python ``frozenset``/``set`` of member paths.
Element values are frozen (``_freeze``) so that keys holding maps or lists stay hashable.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

__all__ = [
    "Path",
    "PathElement",
    "decode_fields_v1",
    "deserialize_element",
    "element_sort_key",
    "encode_fields_v1",
    "expand",
    "field",
    "freeze",
    "go_json",
    "index",
    "key",
    "path_sort_key",
    "path_string",
    "serialize_element",
    "thaw",
    "value",
]

# ("f", name) | ("k", ((name, frozen value), ...)) | ("v", frozen value) | ("i", int)
PathElement = tuple[str, Any]
Path = tuple[PathElement, ...]


class _FrozenMap(tuple):  # type: ignore[type-arg]
    """A map value frozen into a sorted tuple of (key, frozen value) pairs."""


class _FrozenList(tuple):  # type: ignore[type-arg]
    """A list value frozen into a tuple of frozen values."""


class _FrozenBool:
    """A boolean that neither hashes nor compares equal to 1/0 (``v:true`` is not ``v:1``)."""

    __slots__ = ("flag",)

    def __init__(self, flag: bool) -> None:
        self.flag = flag

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _FrozenBool) and other.flag == self.flag

    def __hash__(self) -> int:
        return hash(("bool", self.flag))

    def __repr__(self) -> str:
        return "true" if self.flag else "false"


def freeze(data: Any) -> Any:
    if isinstance(data, bool):
        return _FrozenBool(data)
    if isinstance(data, dict):
        return _FrozenMap(sorted((k, freeze(v)) for k, v in data.items()))
    if isinstance(data, list):
        return _FrozenList(freeze(v) for v in data)
    return data


def thaw(data: Any) -> Any:
    if isinstance(data, _FrozenBool):
        return data.flag
    if isinstance(data, _FrozenMap):
        return {k: thaw(v) for k, v in data}
    if isinstance(data, _FrozenList):
        return [thaw(v) for v in data]
    return data


def field(name: str) -> PathElement:
    return ("f", name)


def key(fields: dict[str, Any]) -> PathElement:
    return ("k", tuple(sorted((n, freeze(v)) for n, v in fields.items())))


def value(data: Any) -> PathElement:
    return ("v", freeze(data))


def index(position: int) -> PathElement:
    return ("i", position)


# --- ordering (fieldpath.PathElement.Compare and value.Compare) ------------------------------

_ELEMENT_RANK = {"f": 0, "k": 1, "v": 2, "i": 3}


def _value_sort_key(data: Any) -> tuple[Any, ...]:
    # value.Compare: numbers < strings < booleans < lists < maps < null.
    if isinstance(data, _FrozenBool):
        return (2, data.flag)
    if isinstance(data, int | float):
        return (0, data)
    if isinstance(data, str):
        return (1, data)
    if isinstance(data, _FrozenList):
        return (3, tuple(_value_sort_key(v) for v in data))
    if isinstance(data, _FrozenMap):
        return (4, tuple((k, _value_sort_key(v)) for k, v in data))
    return (5,)


def _element_sort_key(element: PathElement) -> tuple[Any, ...]:
    kind, content = element
    if kind == "f" or kind == "i":
        return (_ELEMENT_RANK[kind], content)
    if kind == "k":
        return (1, tuple((n, _value_sort_key(v)) for n, v in content))
    return (2, _value_sort_key(content))


#: Public name: the order FieldsV1 lists sibling elements in.
element_sort_key = _element_sort_key


def path_sort_key(path: Path) -> tuple[Any, ...]:
    return tuple(_element_sort_key(e) for e in path)


# --- string forms ------------------------------------------------------------------------------


def go_json(data: Any) -> str:
    """encoding/json's text of ``data`` (frozen or not): compact, HTML-escaped, keys sorted."""
    text = json.dumps(thaw(data), separators=(",", ":"), ensure_ascii=False, sort_keys=True)
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _to_string(data: Any) -> str:
    # value.ToString: strings quoted, everything else as JSON.
    return go_json(data)


def element_string(element: PathElement) -> str:
    kind, content = element
    if kind == "f":
        return "." + str(content)
    if kind == "k":
        return "[" + ",".join(f"{n}={_to_string(v)}" for n, v in content) + "]"
    if kind == "v":
        return f"[={_to_string(content)}]"
    return f"[{content}]"


def path_string(path: Path) -> str:
    """fieldpath.Path.String(): ``.spec.template.spec.containers[name="nginx"].image``."""
    return "".join(element_string(e) for e in path)


#: ``k:`` keys already written, for keys of plain strings and integers (a condition's type, a
#: container's name, a port and protocol): every write re-encodes its managedFields' keys, and
#: encoding JSON in Python was 1% of the API server's CPU in the density run. Only those types:
#: ``True == 1`` and ``1.0 == 1`` in Python, so other values could share an entry and not a text.
_KEY_TEXTS: dict[tuple[tuple[str, Any], ...], str] = {}
_KEY_TEXTS_MAX = 4096
_PLAIN = (str, int)


def _serialize_element(element: PathElement) -> str:
    kind, content = element
    if kind == "f":
        return "f:" + str(content)
    if kind == "k":
        if not all(type(v) in _PLAIN for _, v in content):
            return "k:" + go_json(_FrozenMap(content))
        text = _KEY_TEXTS.get(content)
        if text is None:
            text = "k:" + go_json(_FrozenMap(content))
            if len(_KEY_TEXTS) >= _KEY_TEXTS_MAX:
                _KEY_TEXTS.clear()  # keys seen once (a pod's own volume name) must not crowd out the rest
            _KEY_TEXTS[content] = text
        return text
    if kind == "v":
        return "v:" + go_json(content)
    return f"i:{content}"


#: Public name: an element's FieldsV1 key (``f:name``, ``k:{...}``, ``v:...``, ``i:3``).
serialize_element = _serialize_element


def _deserialize_element(text: str) -> PathElement | None:
    """Parse a FieldsV1 key; None for an unknown element type (ignored, like Kubernetes)."""
    if len(text) < 2 or text[1] != ":":
        raise ValueError(f"missing colon: {text}")
    kind, content = text[0], text[2:]
    if kind == "f":
        return ("f", content)
    if kind == "v":
        return ("v", freeze(json.loads(content)))
    if kind == "k":
        fields = json.loads(content)
        if not isinstance(fields, dict):
            raise ValueError(f"invalid key element: {text}")
        return key(fields)
    if kind == "i":
        return ("i", int(content))
    return None


#: Public name: the element a FieldsV1 key names (None for an unknown element type).
deserialize_element = _deserialize_element


# --- FieldsV1 -------------------------------------------------------------------------------------


class _Node:
    __slots__ = ("children", "member")

    def __init__(self) -> None:
        self.member = False
        self.children: dict[PathElement, _Node] = {}


def _tree(paths: Iterable[Path]) -> _Node:
    root = _Node()
    for path in paths:
        node = root
        for element in path:
            node = node.children.setdefault(element, _Node())
        node.member = True
    return root


def _emit(node: _Node, include_self: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if include_self and node.children:
        # Kubernetes writes "." after the children; JSON key order carries no meaning and kubectl
        # (YAML) shows it first, so we put it first too.
        out["."] = {}
    for element in sorted(node.children, key=_element_sort_key):
        child = node.children[element]
        out[_serialize_element(element)] = _emit(child, child.member) if child.children else {}
    return out


def encode_fields_v1(paths: Iterable[Path]) -> dict[str, Any]:
    """A set of member paths as the FieldsV1 JSON object."""
    return _emit(_tree(paths), False)


def decode_fields_v1(data: Any) -> set[Path]:
    """The set of member paths a FieldsV1 object describes (``readIterV1``)."""
    out: set[Path] = set()

    def read(obj: Any, prefix: Path) -> bool:
        # Returns whether ``prefix`` itself is a member.
        has_children = False
        is_member = False
        if not isinstance(obj, dict):
            raise ValueError("FieldsV1 nodes must be objects")
        for text, child in obj.items():
            if text == ".":
                is_member = True
                continue
            element = _deserialize_element(text)
            if element is None:
                continue
            has_children = True
            path = (*prefix, element)
            if read(child, path):
                out.add(path)
        return is_member or not has_children

    read(data, ())
    out.discard(())
    return out


def expand(paths: Iterable[Path]) -> set[Path]:
    """Every member plus all of its ancestors (``EnsureNamedFieldsAreMembers``, generalised)."""
    out: set[Path] = set()
    for path in paths:
        for end in range(1, len(path) + 1):
            out.add(path[:end])
    return out
