"""A rule's ``fieldPath`` (``ValidFieldPath`` of apiextensions' CEL validation).

``fieldPath`` moves a failing rule's error from its node to a field below it: ``.spec.ports`` or
``['ports']``, field names where the node has ``properties``, map keys where it has
``additionalProperties``; no list indexes.
"""

from __future__ import annotations

import re

from pilothouse.machinery.apiextensions.nodes import Schema, node, properties
from pilothouse.machinery.apiextensions.paths import child, key

__all__ = ["field_path_valid", "normalize_field_path"]

_FIELD_PATH_TOKEN = re.compile(r"\.([^.\[\]']+)|\[\s*'((?:[^'\\]|\\.)*)'\s*\]")


def normalize_field_path(s: Schema, text: str) -> str | None:
    """``ValidFieldPath``: a rule's ``fieldPath`` (``.spec.ports['http']``) as a field path relative
    to the rule's node (``spec.ports[http]``), or None if it does not name a field of the schema.

    Only field names and quoted map keys are allowed; a name is a property where the node has
    ``properties``, a map key where it has ``additionalProperties``.
    """
    path = ""
    node_: Schema | None = s
    position = 0
    text = text.strip()
    if not text:
        return None
    while position < len(text):
        match = _FIELD_PATH_TOKEN.match(text, position)
        if not match or node_ is None:
            return None
        name = match.group(1) if match.group(1) is not None else re.sub(r"\\(.)", r"\1", match.group(2))
        declared = properties(node_)
        if node_.get("properties") is not None:
            if name not in declared:
                return None
            path, node_ = child(path, name), declared[name]
        elif node_.get("additionalProperties") is not None:
            path, node_ = key(path, name), node(node_.get("additionalProperties"))
        else:
            return None
        position = match.end()
    return path


def field_path_valid(s: Schema, text: str) -> bool:
    return normalize_field_path(s, text) is not None
