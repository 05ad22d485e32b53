"""Structural defaulting of custom resources (``apply_defaults``) and the CRD check of defaults.

``apply_defaults`` ports ``apiserver/schema/defaulting/algorithm.go`` (``Default``): a property
missing from an object, or null where the schema is not nullable, gets a deep copy of its
``default``; array items and ``additionalProperties`` values that are null get theirs; defaulting
then descends into the result, so defaults inside defaults apply. Before that,
``PruneNonNullableNullsWithoutDefaults`` drops a null in a non-nullable field that has no
default, as the decoder does.

``validate_defaults`` ports ``ValidateDefaults``: each ``default`` in a CRD schema must be
unchanged by pruning, valid against its node's schema, and pass its node's CEL rules.
"""

from __future__ import annotations

import copy
from typing import Any

from pilothouse.machinery.apiextensions.instance import validate_instance
from pilothouse.machinery.apiextensions.nodes import Schema, carries, node, properties
from pilothouse.machinery.apiextensions.paths import child, go_json_value, key
from pilothouse.machinery.apiextensions.pruning import prune
from pilothouse.machinery.apiextensions.rules import validate_rules
from pilothouse.machinery.errors import FieldError
from pilothouse.machinery.kinds.vcommon import invalid

__all__ = ["apply_defaults", "validate_defaults"]


def apply_defaults(schema: Schema | None, obj: Any) -> None:
    """Default ``obj`` in place from ``schema``'s ``default`` values."""
    _prune_nulls(obj, schema)
    _default(obj, schema)


def _non_nullable_null(x: Any, s: Schema | None) -> bool:
    return x is None and s is not None and not s.get("nullable") and s.get("default") is not None


def _default(x: Any, s: Schema | None) -> None:
    if s is None or not carries(s, "default"):
        return  # no default in this subtree: nothing to fill in
    if isinstance(x, dict):
        declared = properties(s)
        for name, prop in declared.items():
            if prop.get("default") is None:
                continue
            if name not in x or _non_nullable_null(x[name], prop):
                x[name] = copy.deepcopy(prop["default"])
        additional = node(s.get("additionalProperties"))
        for name in list(x):
            if name in declared:
                _default(x[name], declared[name])
            elif additional is not None:
                if _non_nullable_null(x[name], additional):
                    x[name] = copy.deepcopy(additional["default"])
                _default(x[name], additional)
    elif isinstance(x, list):
        items = node(s.get("items"))
        for i, item in enumerate(x):
            if _non_nullable_null(item, items):
                assert items is not None
                x[i] = copy.deepcopy(items["default"])
            _default(x[i], items)


def _prune_nulls(x: Any, s: Schema | None) -> None:
    if s is None:
        return
    if isinstance(x, dict):
        declared = properties(s)
        additional = node(s.get("additionalProperties"))
        for name in list(x):
            prop = declared.get(name, additional)
            if prop is None:
                continue
            if x[name] is None and not prop.get("nullable") and prop.get("default") is None:
                del x[name]
            else:
                _prune_nulls(x[name], prop)
    elif isinstance(x, list):
        items = node(s.get("items"))
        for item in x:
            _prune_nulls(item, items)


def validate_defaults(schema: Schema, path: str) -> list[FieldError]:
    """``ValidateDefaults``: every default validates against its node and survives pruning."""
    return _check(schema, path)


def _check(s: Schema, path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    default = s.get("default")
    if default is not None:
        at = child(path, "default")
        if prune(s, copy.deepcopy(default), is_resource_root=bool(s.get("x-kubernetes-embedded-resource"))):
            errors.append(invalid(at, go_json_value(default), "must not have unknown fields"))
        instance_errors = [FieldError(e.type, _under(at, e.field), e.detail, e.value)
                           for e in validate_instance(s, default)]
        # The rules of the node run on its default only once the schema accepts it.
        errors += instance_errors or validate_rules(s, default, path=at)
    declared = properties(s)
    for name in sorted(declared):
        errors += _check(declared[name], key(child(path, "properties"), name))
    items = node(s.get("items"))
    if items is not None:
        errors += _check(items, child(path, "items"))
    # Like upstream, not into additionalProperties.
    return errors


def _under(prefix: str, field_path: str) -> str:
    if field_path in ("", "<nil>"):
        return prefix
    return f"{prefix}.{field_path}" if not field_path.startswith("[") else prefix + field_path
