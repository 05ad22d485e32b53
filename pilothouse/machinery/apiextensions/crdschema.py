"""The checks of a CRD version's ``openAPIV3Schema`` as a whole (``validate_crd_schema``).

Kubernetes checks a CRD schema in ``ValidateCustomResourceDefinitionValidation``: the root may not
be nullable; the structural invariants (``structural``) and, if they hold, the defaults
(``defaulting.validate_defaults``); then the keyword rules of
``ValidateCustomResourceDefinitionOpenAPISchema`` ported here: forbidden keywords, defaults where
they are not allowed, list and map extensions, the syntax of ``x-kubernetes-validations`` and,
where the schema is sound, the compilation of those rules (``rules.compile_errors``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from pilothouse.machinery.apiextensions.defaulting import validate_defaults
from pilothouse.machinery.apiextensions.fieldpath import field_path_valid
from pilothouse.machinery.apiextensions.nodes import Schema, node_list, or_empty
from pilothouse.machinery.apiextensions.paths import child, go_json_value, index, key
from pilothouse.machinery.apiextensions.rules import compile_errors
from pilothouse.machinery.apiextensions.structural import convertible, set_in_go, sorted_properties, validate_structural
from pilothouse.machinery.errors import FieldError
from pilothouse.machinery.kinds.vcommon import forbidden, go_string_list, invalid, not_supported, required

__all__ = ["validate_crd_schema"]

_JUNCTORS = ("allOf", "oneOf", "anyOf")
_OPENAPI_V3_TYPES = ("array", "boolean", "integer", "number", "object", "string")
_META_FIELDS = ("apiVersion", "kind", "metadata")
_REASONS = ("FieldValueDuplicate", "FieldValueForbidden", "FieldValueInvalid", "FieldValueRequired")




@dataclass(frozen=True)
class _Context:
    allow_defaults: bool = True
    disallow_defaults_reason: str = ""
    inside_resource_meta: bool = False
    uncorrelatable_path: str | None = None


def validate_crd_schema(schema: Schema, path: str) -> list[FieldError]:
    """All errors of one version's ``openAPIV3Schema`` found at ``path`` (e.g.
    ``spec.versions[0].schema.openAPIV3Schema``), in Kubernetes' order: root nullable, the
    structural invariants (sorted), then the keyword rules."""
    errors: list[FieldError] = []
    if schema.get("nullable"):
        errors.append(forbidden(child(path, "nullable"), "nullable cannot be true at the root"))
    # NewStructural refuses some schemas outright; then neither the structural invariants nor
    # the defaults are checked (the keyword rules below report the offending keywords).
    structural = validate_structural(schema, path) if convertible(schema) else None
    errors += structural or []
    if structural == []:
        errors += validate_defaults(schema, path)
    # Rules are compiled only for a structural schema with valid defaults (upstream's CEL context).
    found = _Found(with_cel=structural == [] and not errors)
    _openapi(schema, path, _Context(), True, found)
    return errors + found.schema + found.cel


def _standard(s: Schema, path: str, ctx: _Context) -> list[FieldError]:
    errors: list[FieldError] = []
    type_ = s.get("type")
    if isinstance(type_, str) and type_ and type_ not in _OPENAPI_V3_TYPES:
        errors.append(not_supported(child(path, "type"), type_, _OPENAPI_V3_TYPES))
    if "default" in s and s["default"] is not None and not ctx.allow_defaults:
        detail = "must not be set"
        if ctx.disallow_defaults_reason:
            detail += " " + ctx.disallow_defaults_reason
        errors.append(forbidden(child(path, "default"), detail))
    for keyword, message in (("id", "id is not supported"), ("additionalItems", "additionalItems is not supported"),
                             ("patternProperties", "patternProperties is not supported"),
                             ("definitions", "definitions is not supported"),
                             ("dependencies", "dependencies is not supported"), ("$ref", "$ref is not supported")):
        if set_in_go(s, keyword) or (keyword in ("additionalItems", "dependencies") and keyword in s
                                and s[keyword] is not None):
            errors.append(forbidden(child(path, keyword), message))
    if type_ == "null":
        errors.append(forbidden(child(path, "type"), "type cannot be set to null, use nullable as an alternative"))
    if isinstance(s.get("items"), list) and s["items"]:
        errors.append(forbidden(child(path, "items"), "items must be a schema object and not an array"))
    if ctx.inside_resource_meta and s.get("x-kubernetes-embedded-resource"):
        errors.append(forbidden(child(path, "x-kubernetes-embedded-resource"),
                                "must not be used inside of resource meta"))
    return errors


@dataclass
class _Found:
    """``OpenAPISchemaErrorList``: schema errors, and CEL errors reported after all of them."""

    with_cel: bool
    schema: list[FieldError] = field(default_factory=list)
    cel: list[FieldError] = field(default_factory=list)


def _openapi(s: Schema, path: str, ctx: _Context, is_root: bool, found: _Found, cel: bool = True) -> None:
    """``ValidateCustomResourceDefinitionOpenAPISchema`` of one node; ``cel`` is False inside
    ``not``/``allOf``/``anyOf``/``oneOf``, where upstream has no CEL context."""
    schema_errors_before = len(found.schema)
    errors = _standard(s, path, ctx)
    if s.get("uniqueItems") is True:
        errors.append(forbidden(child(path, "uniqueItems"),
                                "uniqueItems cannot be set to true since the runtime complexity becomes quadratic"))
    additional = s.get("additionalProperties")
    props = sorted_properties(s)
    if additional is not None and props and (additional is False or isinstance(additional, dict)):
        errors.append(forbidden(child(path, "additionalProperties"),
                                "additionalProperties and properties are mutual exclusive"))
    # This node's keyword errors come before its children's, the extension errors after them.
    found.schema += errors
    errors = []
    if additional is not None:
        sub = ctx
        if ctx.inside_resource_meta:
            sub = replace(ctx, allow_defaults=False,
                          disallow_defaults_reason="inside additionalProperties applying to object metadata")
        if isinstance(additional, dict):
            _openapi(additional, child(path, "additionalProperties"), sub, False, found, cel)
    map_type = s.get("x-kubernetes-map-type")
    for name, prop in props.items():
        sub = ctx
        if map_type not in (None, "granular") and sub.uncorrelatable_path is None:
            sub = replace(sub, uncorrelatable_path=path)
        if (is_root or s.get("x-kubernetes-embedded-resource")) and name in _META_FIELDS:
            sub = replace(sub, inside_resource_meta=True)
            if is_root:
                sub = replace(sub, allow_defaults=False, disallow_defaults_reason=f"in top-level {name}")
        _openapi(prop, key(child(path, "properties"), name), sub, False, found, cel)
    if isinstance(s.get("not"), dict):
        _openapi(s["not"], child(path, "not"), ctx, False, found, False)
    for junctor in _JUNCTORS:
        for i, sub_schema in enumerate(node_list(s.get(junctor))):
            _openapi(sub_schema, index(child(path, junctor), i), ctx, False, found, False)
    list_type = s.get("x-kubernetes-list-type")
    items = s.get("items")
    if isinstance(items, dict):
        sub = ctx
        if list_type != "map" and sub.uncorrelatable_path is None:
            sub = replace(sub, uncorrelatable_path=path)
        _openapi(items, child(path, "items"), sub, False, found, cel)
    if s.get("x-kubernetes-preserve-unknown-fields") is False:
        errors.append(invalid(child(path, "x-kubernetes-preserve-unknown-fields"), go_json_value(False),
                              "must be true or undefined"))
    type_ = s.get("type") or ""
    if map_type is not None and type_ != "object":
        message = "must be object if x-kubernetes-map-type is specified"
        errors.append(required(child(path, "type"), message) if not type_
                      else invalid(child(path, "type"), type_, message))
    if map_type is not None and map_type not in ("atomic", "granular"):
        errors.append(not_supported(child(path, "x-kubernetes-map-type"), map_type, ("atomic", "granular")))
    errors += _list_type_rules(s, path, list_type, type_)
    errors += _map_set_rules(s, path, list_type)
    errors += _rule_syntax(s, path)
    found.schema += errors
    if found.with_cel and cel and len(found.schema) == schema_errors_before:
        found.cel += compile_errors(s, path, ctx.uncorrelatable_path,
                                    is_resource=is_root or bool(s.get("x-kubernetes-embedded-resource")))


def _list_type_rules(s: Schema, path: str, list_type: Any, type_: str) -> list[FieldError]:
    errors: list[FieldError] = []
    items = s.get("items")
    if list_type is not None and type_ != "array":
        message = "must be array if x-kubernetes-list-type is specified"
        errors.append(required(child(path, "type"), message) if not type_
                      else invalid(child(path, "type"), type_, message))
    elif list_type == "set" and isinstance(items, dict):
        message = "must be atomic as item of a list with x-kubernetes-list-type=set"
        if items.get("type") == "array" and items.get("x-kubernetes-list-type", "atomic") != "atomic":
            errors.append(invalid(child(child(path, "items"), "x-kubernetes-list-type"),
                                  items["x-kubernetes-list-type"], message))
        elif items.get("type") == "object" and items.get("x-kubernetes-map-type") != "atomic":
            # Upstream reports the items' list type here (nil for an object, printed "null").
            errors.append(invalid(child(child(path, "items"), "x-kubernetes-map-type"),
                                  items.get("x-kubernetes-list-type", "null"), message))
    if list_type is not None and list_type not in ("atomic", "set", "map"):
        errors.append(not_supported(child(path, "x-kubernetes-list-type"), list_type, ("atomic", "set", "map")))
    map_keys = s.get("x-kubernetes-list-map-keys") or []
    if map_keys:
        message = "must be map if x-kubernetes-list-map-keys is non-empty"
        if list_type is None:
            errors.append(required(child(path, "x-kubernetes-list-type"), message))
        elif list_type != "map":
            errors.append(invalid(child(path, "x-kubernetes-list-type"), list_type, message))
    if list_type == "map":
        if not map_keys:
            errors.append(required(child(path, "x-kubernetes-list-map-keys"),
                                   "must not be empty if x-kubernetes-list-type is map"))
        if items is None:
            errors.append(required(child(path, "items"), "must have a schema if x-kubernetes-list-type is map"))
        elif not isinstance(items, dict):
            errors.append(invalid(child(path, "items"), "",
                                  "must only have a single schema if x-kubernetes-list-type is map"))
        elif items.get("type") != "object":
            errors.append(invalid(child(child(path, "items"), "type"), items.get("type", ""),
                                  "must be object if parent array's x-kubernetes-list-type is map"))
        else:
            errors += _map_keys_rules(items, map_keys, path)
    return errors


def _map_keys_rules(items: Schema, map_keys: list[str], path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    seen: set[str] = set()
    props = or_empty(items.get("properties"))
    for name in map_keys:
        if name in props:
            if or_empty(props[name]).get("type") in ("array", "object"):
                errors.append(invalid(child(key(child(child(path, "items"), "properties"), name), "type"),
                                      items.get("type", ""),
                                      "must be a scalar type if parent array's x-kubernetes-list-type is map"))
        else:
            errors.append(invalid(child(path, "x-kubernetes-list-map-keys"), go_string_list(map_keys),
                                  "entries must all be names of item properties"))
        if name in seen:
            errors.append(invalid(child(path, "x-kubernetes-list-map-keys"), go_string_list(map_keys),
                                  "must not contain duplicate entries"))
        seen.add(name)
    return errors


def _map_set_rules(s: Schema, path: str, list_type: Any) -> list[FieldError]:
    """``validateMapListKeysMapSet``: set/map items are not nullable, map keys required or defaulted."""
    items = s.get("items")
    if not isinstance(items, dict) or list_type not in ("set", "map"):
        return []
    errors: list[FieldError] = []
    if items.get("nullable"):
        errors.append(forbidden(child(child(path, "items"), "nullable"),
                                f"cannot be nullable when x-kubernetes-list-type is {list_type}"))
    if list_type == "map":
        required_keys = set(items.get("required") or [])
        props = or_empty(items.get("properties"))
        for name in s.get("x-kubernetes-list-map-keys") or []:
            prop = props.get(name)
            if not isinstance(prop, dict):
                continue
            prop_path = key(child(child(path, "items"), "properties"), name)
            if name not in required_keys and prop.get("default") is None:
                errors.append(required(child(prop_path, "default"),
                                       "this property is in x-kubernetes-list-map-keys, so it must have a default "
                                       "or be a required property"))
            if prop.get("nullable"):
                errors.append(forbidden(child(prop_path, "nullable"),
                                        "this property is in x-kubernetes-list-map-keys, so it cannot be nullable"))
    return errors


def _rule_syntax(s: Schema, path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    newline = re.compile(r"[\n\r]+")
    for i, rule in enumerate(s.get("x-kubernetes-validations") or []):
        rule = or_empty(rule)
        rule_path = index(child(path, "x-kubernetes-validations"), i)
        text = str(rule.get("rule") or "")
        message = str(rule.get("message") or "")
        if not text.strip():
            errors.append(required(child(rule_path, "rule"), "rule is not specified"))
        elif message and not message.strip():
            errors.append(invalid(child(rule_path, "message"), message, "message must be non-empty if specified"))
        elif newline.search(message.strip()):
            errors.append(invalid(child(rule_path, "message"), message, "message must not contain line breaks"))
        elif newline.search(text.strip()) and not message.strip():
            errors.append(required(child(rule_path, "message"),
                                   "message must be specified if rule contains line breaks"))
        expression = str(rule.get("messageExpression") or "")
        if expression and not expression.strip():
            errors.append(required(child(rule_path, "messageExpression"),
                                   "messageExpression must be non-empty if specified"))
        reason = rule.get("reason")
        if reason is not None and reason not in _REASONS:
            errors.append(not_supported(child(rule_path, "reason"), reason, _REASONS))
        field_path = str(rule.get("fieldPath") or "")
        if field_path and not field_path.strip():
            errors.append(invalid(child(rule_path, "fieldPath"), field_path,
                                  "fieldPath must be non-empty if specified"))
        if newline.search(field_path):
            errors.append(invalid(child(rule_path, "fieldPath"), field_path, "fieldPath must not contain line breaks"))
        if field_path.strip() and not field_path_valid(s, field_path):
            errors.append(invalid(child(rule_path, "fieldPath"), field_path, "fieldPath must be a valid path"))
    return errors
