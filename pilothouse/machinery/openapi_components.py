"""Turn the official JSON schemas into OpenAPI 3.0 ``components.schemas``, shaped as upstream's.

Why: ``kubectl explain`` walks ``components.schemas`` (following ``$ref`` and ``allOf``) and
``kubectl apply``/``edit`` compute strategic merge patches from the same schemas. The source
(``pilothouse.machinery.schema``) is JSON Schema with ``#/$defs/`` references and nullable type
arrays; OpenAPI 3.0 has neither, so each definition is rewritten the way kube-openapi emits it:
a reference with siblings becomes ``allOf: [{$ref}]`` plus the siblings, ``["string", "null"]``
becomes ``"string"``, and every ``x-kubernetes-*`` extension is kept.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

from pilothouse.machinery.schema import Schema, definitions

__all__ = ["COMPONENT_PREFIX", "component_schema", "reachable_definitions"]

COMPONENT_PREFIX = "#/components/schemas/"
_SOURCE_PREFIX = "#/$defs/"

# The source describes these two as oneOf; upstream publishes them as strings with a description.
_REPLACEMENTS: dict[str, Schema] = {
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {
        "description": "IntOrString is a type that can hold an int32 or a string.  When used in JSON or "
                       "YAML marshalling and unmarshalling, it produces or consumes the inner type.  This "
                       "allows you to have, for example, a JSON field that can accept a name or number.",
        "format": "int-or-string",
        "type": "string",
    },
    "io.k8s.apimachinery.pkg.api.resource.Quantity": {
        "description": "Quantity is a fixed-point representation of a number. It provides convenient "
                       "marshaling/unmarshaling in JSON and YAML, in addition to String() and AsInt64() "
                       "accessors.\n\nThe serialization format is:\n\n``` <quantity>        ::= "
                       "<signedNumber><suffix>\n```\n\nExamples: 128974848, 129e6, 129M, 123Mi, 0.1, 100m.",
        "type": "string",
    },
}
# Struct-valued fields that Go declares as values (not pointers): upstream gives them `default: {}`.
_VALUE_STRUCT_FIELDS = frozenset({"metadata", "spec", "status", "template"})


def _ref_target(ref: str) -> str:
    return ref[len(_SOURCE_PREFIX):] if ref.startswith(_SOURCE_PREFIX) else ref.rsplit("/", 1)[-1]


def _is_struct(name: str) -> bool:
    schema = definitions().get(name) or {}
    declared = schema.get("type")
    types = {declared} if isinstance(declared, str) else set(declared or ())
    return "object" in types and "properties" in schema


def _single_type(declared: Any) -> str | None:
    if isinstance(declared, list):
        real = [t for t in declared if t != "null"]
        return real[0] if real else None
    return declared if isinstance(declared, str) else None


def _convert(schema: Any, *, property_name: str = "", is_item: bool = False) -> Any:
    if not isinstance(schema, dict):
        return schema
    ref = schema.get("$ref")
    if ref is not None:
        target = _ref_target(ref)
        new_ref = {"$ref": COMPONENT_PREFIX + target}
        siblings = {k: _convert(v) for k, v in schema.items() if k != "$ref"}
        wants_default = _is_struct(target) and (is_item or property_name in _VALUE_STRUCT_FIELDS)
        if not siblings and not wants_default:
            return new_ref
        out: dict[str, Any] = {"allOf": [new_ref]}
        if wants_default:
            out["default"] = {}
        out.update(siblings)
        return dict(sorted(out.items()))
    out = {}
    for key, value in schema.items():
        if key == "type":
            single = _single_type(value)
            if single is not None:
                out["type"] = single
        elif key == "properties":
            out["properties"] = {name: _convert(sub, property_name=name) for name, sub in value.items()}
        elif key == "items":
            out["items"] = _convert(value, is_item=True)
        elif key in ("additionalProperties", "not"):
            out[key] = _convert(value)
        elif key in ("allOf", "oneOf", "anyOf"):
            out[key] = [_convert(branch) for branch in value]
        else:
            out[key] = value
    return dict(sorted(out.items()))


@functools.cache
def component_schema(name: str) -> Schema:
    """One definition in OpenAPI 3.0 form (cached; treat as read-only)."""
    if name in _REPLACEMENTS:
        return _REPLACEMENTS[name]
    converted: Schema = _convert(definitions()[name])
    if "x-kubernetes-group-version-kind" in converted:
        # The source pins apiVersion/kind with enums; upstream does not, and explain would print them.
        props = converted.get("properties") or {}
        for key in ("apiVersion", "kind"):
            if isinstance(props.get(key), dict) and "enum" in props[key]:
                props[key] = {k: v for k, v in props[key].items() if k != "enum"}
    return converted


def _refs_in(schema: Any, found: set[str]) -> None:
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str):
            found.add(_ref_target(ref))
        for value in schema.values():
            _refs_in(value, found)
    elif isinstance(schema, list):
        for value in schema:
            _refs_in(value, found)


@functools.cache
def _direct_refs(name: str) -> frozenset[str]:
    found: set[str] = set()
    _refs_in(definitions().get(name), found)
    return frozenset(found)


def reachable_definitions(roots: Iterable[str]) -> list[str]:
    """Every definition the roots refer to, transitively, sorted (roots included)."""
    seen: set[str] = set()
    stack = [r for r in roots if r in definitions()]
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        stack.extend(ref for ref in _direct_refs(name) if ref not in seen and ref in definitions())
    return sorted(seen)
