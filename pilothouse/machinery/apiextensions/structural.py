"""Structural-schema rules for a CRD version's ``openAPIV3Schema`` (``validate_crd_schema``).

Kubernetes checks a CRD schema twice (``apiextensions/validation.ValidateCustomResourceDefinitionValidation``):
the structural invariants of ``apiserver/schema/validation.go`` (every node typed, no metadata
constraints beyond name/generateName, value validations in ``allOf``/``anyOf``/``oneOf``/``not``
free of structure and restating only fields the structure names), then the keyword rules of
``ValidateCustomResourceDefinitionOpenAPISchema`` (forbidden keywords, list/map extensions, rule
syntax). Both are ported here over the schema as plain JSON, with the same paths and messages.
Go walks ``properties`` maps in random order; we walk them sorted so the output is stable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from pilothouse.machinery.apiextensions.defaulting import validate_defaults
from pilothouse.machinery.apiextensions.nodes import Schema, node, properties
from pilothouse.machinery.apiextensions.paths import child, go_json_value, index, key
from pilothouse.machinery.apiextensions.rules import compile_errors, field_path_valid
from pilothouse.machinery.errors import FieldError
from pilothouse.machinery.kinds.vcommon import forbidden, go_string_list, invalid, not_supported, required

__all__ = ["validate_crd_schema", "validate_structural"]

_ROOT, _ITEM, _FIELD = "root", "item", "field"
_EMPTY_TYPE = {
    _ROOT: "must not be empty at the root",
    _ITEM: "must not be empty for specified array items",
    _FIELD: "must not be empty for specified object fields",
}
_JUNCTORS = ("allOf", "oneOf", "anyOf")
_INT_OR_STRING_ANY_OF = [{"type": "integer"}, {"type": "string"}]
_OPENAPI_V3_TYPES = ("array", "boolean", "integer", "number", "object", "string")
_META_FIELDS = ("apiVersion", "kind", "metadata")
_REASONS = ("FieldValueDuplicate", "FieldValueForbidden", "FieldValueInvalid", "FieldValueRequired")
# Keywords a nested value validation must leave to the structural part, with Kubernetes' wording.
_NESTED_FORBIDDEN = (
    ("type", "must be empty to be structural"),
    ("additionalProperties", "must be undefined to be structural"),
    ("default", "must be undefined to be structural"),
    ("title", "must be empty to be structural"),
    ("description", "must be empty to be structural"),
    ("nullable", "must be false to be structural"),
    ("externalDocs", "must be undefined to be structural"),
    ("x-kubernetes-preserve-unknown-fields", "must be false to be structural"),
    ("x-kubernetes-embedded-resource", "must be false to be structural"),
    ("x-kubernetes-int-or-string", "must be false to be structural"),
    ("x-kubernetes-list-map-keys", "must be empty to be structural"),
    ("x-kubernetes-list-type", "must be undefined to be structural"),
    ("x-kubernetes-map-type", "must be undefined to be structural"),
    ("x-kubernetes-validations", "must be empty to be structural"),
)


def _dict(value: Any) -> Schema:
    return node(value) or {}


def _props(s: Schema) -> dict[str, Schema]:
    """The node's properties in name order (Go's map order is random; ours is stable)."""
    return dict(sorted(properties(s).items()))


def _set(s: Schema, name: str) -> bool:
    """Whether Go would see the keyword as non-zero (false, "", [] and {} are zero values)."""
    value = s.get(name)
    return value is not None and value is not False and value != "" and value != [] and value != {}


# -- structural invariants (apiserver/schema/validation.go) -----------------------------------

def validate_structural(schema: Schema, path: str) -> list[FieldError]:
    """``ValidateStructural``: invariants and completeness, sorted by message as upstream sorts."""
    errors = _invariants(schema, _ROOT, path) + _completeness(schema, path)
    return sorted(errors, key=lambda e: e.message())


def _invariants(s: Schema, level: str, path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    type_ = s.get("type") or ""
    if type_ == "array" and not isinstance(s.get("items"), dict):
        errors.append(required(child(path, "items"), "must be specified"))
    if isinstance(s.get("items"), dict):
        errors += _invariants(s["items"], _ITEM, child(path, "items"))
    for name, prop in _props(s).items():
        errors += _invariants(prop, _FIELD, key(child(path, "properties"), name))
    additional = s.get("additionalProperties")
    if additional is not None:
        if level == _ROOT:
            errors.append(forbidden(child(path, "additionalProperties"), "must not be used at the root"))
        if isinstance(additional, dict):
            errors += _invariants(additional, _FIELD, child(path, "additionalProperties"))
    int_or_string = bool(s.get("x-kubernetes-int-or-string"))
    preserve = bool(s.get("x-kubernetes-preserve-unknown-fields"))
    embedded = bool(s.get("x-kubernetes-embedded-resource"))
    if int_or_string and preserve:
        errors.append(invalid(child(path, "x-kubernetes-preserve-unknown-fields"), _go_bool(True),
                              "must be false if x-kubernetes-int-or-string is true"))
    if int_or_string and embedded:
        errors.append(invalid(child(path, "x-kubernetes-embedded-resource"), _go_bool(True),
                              "must be false if x-kubernetes-int-or-string is true"))
    skip_any_of = _dict_list(s.get("anyOf")) == _INT_OR_STRING_ANY_OF
    all_of = _dict_list(s.get("allOf"))
    skip_first_all_of = bool(all_of) and _dict_list(all_of[0].get("anyOf")) == _INT_OR_STRING_ANY_OF
    errors += _value_validation(s, skip_any_of, skip_first_all_of, path)
    check_metadata = level == _ROOT or embedded
    if embedded and type_ != "object":
        message = "must be object if x-kubernetes-embedded-resource is true"
        errors.append(required(child(path, "type"), message) if not type_
                      else invalid(child(path, "type"), type_, message))
    elif not type_ and not int_or_string and not preserve:
        errors.append(required(child(path, "type"), _EMPTY_TYPE[level]))
    if embedded and additional is not None:
        errors.append(forbidden(child(path, "additionalProperties"),
                                "must not be used if x-kubernetes-embedded-resource is set"))
    if level == _ROOT and type_ and type_ != "object":
        errors.append(invalid(child(path, "type"), type_, "must be object at the root"))
    props = _props(s)
    for name in ("kind", "apiVersion"):
        if name in props and check_metadata and props[name].get("type", "") != "string":
            errors.append(invalid(child(key(child(path, "properties"), name), "type"),
                                  props[name].get("type", ""), "must be string"))
    if "metadata" in props:
        errors += _metadata_invariants(props["metadata"], check_metadata, level,
                                       key(child(path, "properties"), "metadata"))
    if embedded and not preserve and not props:
        errors.append(required(child(path, "properties"), "must not be empty if x-kubernetes-embedded-resource "
                                                          "is true without x-kubernetes-preserve-unknown-fields"))
    return errors


def _convertible(s: Any) -> bool:
    """Whether ``NewStructural`` accepts the schema (convert.go's refusals, at every level)."""
    if not isinstance(s, dict):
        return True
    if isinstance(s.get("items"), list) or s.get("x-kubernetes-preserve-unknown-fields") is False:
        return False
    if any(_set(s, name) for name in ("id", "$schema", "$ref", "patternProperties", "definitions")):
        return False
    if s.get("dependencies") is not None or s.get("additionalItems") is not None:
        return False
    subs = [*_props(s).values(), s.get("items"), s.get("additionalProperties"), s.get("not"),
            *_dict_list(s.get("allOf")), *_dict_list(s.get("anyOf")), *_dict_list(s.get("oneOf"))]
    return all(_convertible(sub) for sub in subs)


def _go_bool(value: bool) -> Any:
    return go_json_value(value)


def _dict_list(value: Any) -> list[Schema]:
    return [_dict(v) for v in value] if isinstance(value, list) else []


def _metadata_invariants(s: Schema, check_metadata: bool, level: str, path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    if check_metadata and s.get("type", "") != "object":
        errors.append(invalid(child(path, "type"), s.get("type", ""), "must be object"))
    if level == _ROOT:
        # Only name and generateName may be constrained; type and default are checked elsewhere.
        rest = {k: v for k, v in s.items() if k not in ("type", "default") and v not in (None, False, "", [], {})}
        names = set(_dict(rest.get("properties")))
        if names and names <= {"name", "generateName"}:
            rest.pop("properties")
        if rest:
            errors.append(forbidden(path, "must not specify anything other than name and generateName, but "
                                          "metadata is implicitly specified"))
    return errors


def _value_validation(s: Schema, skip_any_of: bool, skip_first_all_of_any_of: bool,
                      path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    if not skip_any_of:
        for i, sub in enumerate(_dict_list(s.get("anyOf"))):
            errors += _nested(sub, False, index(child(path, "anyOf"), i))
    for i, sub in enumerate(_dict_list(s.get("allOf"))):
        errors += _nested(sub, skip_first_all_of_any_of and i == 0, index(child(path, "allOf"), i))
    for i, sub in enumerate(_dict_list(s.get("oneOf"))):
        errors += _nested(sub, False, index(child(path, "oneOf"), i))
    if isinstance(s.get("not"), dict):
        errors += _nested(s["not"], False, child(path, "not"))
    pattern = s.get("pattern")
    if isinstance(pattern, str) and pattern:
        try:
            re.compile(pattern)
        except re.error as exc:
            errors.append(invalid(child(path, "pattern"), pattern,
                                  f"must be a valid regular expression, but isn't: error parsing regexp: {exc}"))
    return errors


def _nested(v: Schema, skip_any_of: bool, path: str) -> list[FieldError]:
    errors = _value_validation(v, skip_any_of, False, path)
    if isinstance(v.get("items"), dict):
        errors += _nested(v["items"], False, child(path, "items"))
    for name, prop in _props(v).items():
        errors += _nested(prop, False, key(child(path, "properties"), name))
    for keyword, message in _NESTED_FORBIDDEN:
        if _set(v, keyword):
            errors.append(forbidden(child(path, keyword), message))
    if "metadata" in _dict(v.get("properties")):
        errors.append(forbidden(key(child(path, "properties"), "metadata"),
                                "must not be specified in a nested context"))
    return errors


def _completeness(s: Schema, path: str) -> list[FieldError]:
    # As in 1.32, only the root's value validations are checked against the structure.
    return _junctor_completeness(s, s, path, path)


def _junctor_completeness(v: Schema, s: Schema | None, s_path: str, v_path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    if isinstance(v.get("not"), dict):
        errors += _nested_completeness(v["not"], s, s_path, child(v_path, "not"))
    for junctor in ("allOf", "anyOf", "oneOf"):
        for i, sub in enumerate(_dict_list(v.get(junctor))):
            errors += _nested_completeness(sub, s, s_path, index(child(v_path, junctor), i))
    return errors


def _nested_completeness(v: Schema, s: Schema | None, s_path: str, v_path: str) -> list[FieldError]:
    if s is None:
        return [required(s_path, f"because it is defined in {v_path}")]
    errors = _junctor_completeness(v, s, s_path, v_path)
    if isinstance(v.get("items"), dict):
        items = s.get("items") if isinstance(s.get("items"), dict) else None
        errors += _nested_completeness(v["items"], items, child(s_path, "items"), child(v_path, "items"))
    s_props = _dict(s.get("properties"))
    for name, prop in _props(v).items():
        s_prop = s_props.get(name)
        prop_s_path = key(child(s_path, "properties"), name)
        prop_v_path = key(child(v_path, "properties"), name)
        if not isinstance(s_prop, dict):
            errors.append(required(prop_s_path, f"because it is defined in {prop_v_path}"))
        else:
            errors += _nested_completeness(prop, s_prop, prop_s_path, prop_v_path)
    return errors


# -- keyword rules (ValidateCustomResourceDefinitionOpenAPISchema) ----------------------------

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
    structural = validate_structural(schema, path) if _convertible(schema) else None
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
        if _set(s, keyword) or (keyword in ("additionalItems", "dependencies") and keyword in s
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
    props = _props(s)
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
        for i, sub_schema in enumerate(_dict_list(s.get(junctor))):
            _openapi(sub_schema, index(child(path, junctor), i), ctx, False, found, False)
    list_type = s.get("x-kubernetes-list-type")
    items = s.get("items")
    if isinstance(items, dict):
        sub = ctx
        if list_type != "map" and sub.uncorrelatable_path is None:
            sub = replace(sub, uncorrelatable_path=path)
        _openapi(items, child(path, "items"), sub, False, found, cel)
    if s.get("x-kubernetes-preserve-unknown-fields") is False:
        errors.append(invalid(child(path, "x-kubernetes-preserve-unknown-fields"), _go_bool(False),
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
    props = _dict(items.get("properties"))
    for name in map_keys:
        if name in props:
            if _dict(props[name]).get("type") in ("array", "object"):
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
        props = _dict(items.get("properties"))
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
        rule = _dict(rule)
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
