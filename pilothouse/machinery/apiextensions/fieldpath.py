"""A rule's ``fieldPath`` (``ValidFieldPath`` of apiextensions' CEL validation).

``fieldPath`` moves a failing rule's error from its node to a field below it: ``.spec.ports`` or
``['ports']``, field names where the node has ``properties``, map keys where it has
``additionalProperties``; no list indexes.
"""

from __future__ import annotations

import re

from pilothouse.machinery.apiextensions.nodes import Schema, node, properties
from pilothouse.machinery.apiextensions.paths import child, key

__all__ = ["FieldPathError", "field_path_valid", "normalize_field_path", "resolve_field_path"]

_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "'": "'", "\\": "\\"}


class FieldPathError(ValueError):
    """Why a path is not valid, in ``ValidFieldPath``'s words."""


def _tokens(text: str) -> list[str]:
    """The scanner of ValidFieldPath: ``.``, ``[``, ``]``, single-quoted strings, and the text between."""
    tokens: list[str] = []
    position = 0
    while position < len(text):
        if text[position] == "'":
            end = position + 1
            while end < len(text) and not (text[end] == "'" and text[end - 1] != "\\"):
                end += 1
            tokens.append(text[position:end + 1])
            position = end + 1
        elif text[position] in ".[]":
            tokens.append(text[position])
            position += 1
        else:
            end = position
            while end < len(text) and text[end] not in ".[]":
                end += 1
            tokens.append(text[position:end])
            position = end
    return tokens


def _unescape(quoted: str) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group(1) not in _ESCAPES:
            raise FieldPathError(f"invalid string literal: invalid escape char {match.group(0)}")
        return _ESCAPES[match.group(1)]
    return re.sub(r"\\(.)", replace, quoted)


def resolve_field_path(s: Schema, text: str, allow_array_notation: bool = True) -> tuple[str, Schema | None]:
    """``ValidFieldPath``: the path relative to ``s`` (``spec.ports[http]``) and the schema it
    names; :class:`FieldPathError` when it is not a path into ``s``.

    Only field names (``.name``) and quoted names (``['name']``) are allowed; a name is a
    property where the node has ``properties``, a map key where it has ``additionalProperties``.
    """
    path = ""
    current: Schema | None = s
    tokens = _tokens(text)
    position = 0
    while position < len(tokens):
        token = tokens[position]
        if token == "[":
            if not allow_array_notation:
                raise FieldPathError("array notation is not allowed")
            if position + 1 >= len(tokens):
                raise FieldPathError("unexpected end of JSON path")
            quoted = tokens[position + 1]
            if len(quoted) < 2 or quoted[0] != "'" or quoted[-1] != "'":
                raise FieldPathError(f"expected single quoted string but got {quoted}")
            name = _unescape(quoted[1:-1])
            if position + 2 >= len(tokens):
                raise FieldPathError("unexpected end of JSON path")
            if tokens[position + 2] != "]":
                raise FieldPathError(f"expected ] but got {tokens[position + 2]}")
            position += 3
        elif token == ".":
            if position + 1 >= len(tokens):
                raise FieldPathError("unexpected end of JSON path")
            name = tokens[position + 1]
            position += 2
        else:
            raise FieldPathError(f"expected [ or . but got: {token}")
        if current is None:
            raise FieldPathError("does not refer to a valid field")
        if current.get("properties") is not None:
            declared = properties(current)
            if name not in declared:
                raise FieldPathError("does not refer to a valid field")
            path, current = child(path, name), declared[name]
        elif current.get("additionalProperties") is not None:
            path, current = key(path, name), node(current.get("additionalProperties"))
        else:
            raise FieldPathError("does not refer to a valid field")
    return path, current


def normalize_field_path(s: Schema, text: str) -> str | None:
    """A rule's ``fieldPath`` as a field path relative to the rule's node, None if invalid."""
    try:
        path, _ = resolve_field_path(s, text)
    except FieldPathError:
        return None
    return path or None


def field_path_valid(s: Schema, text: str) -> bool:
    return normalize_field_path(s, text) is not None
