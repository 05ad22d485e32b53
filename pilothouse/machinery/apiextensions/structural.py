"""The structural-schema invariants of a CRD version's ``openAPIV3Schema`` (``validate_structural``).

A port of ``apiserver/schema/validation.go`` (``ValidateStructural``) over the schema as plain
JSON: every node typed, no metadata constraints beyond name/generateName, value validations in
``allOf``/``anyOf``/``oneOf``/``not`` free of structure and restating only fields the structure
names; plus ``convertible``, the schemas ``NewStructural`` refuses outright. Go walks
``properties`` maps in random order; we walk them sorted so the output is stable.
"""

from __future__ import annotations

import re
from typing import Any

from pilothouse.machinery.apiextensions.nodes import Schema, node_list, or_empty, properties
from pilothouse.machinery.apiextensions.paths import child, go_json_value, index, key
from pilothouse.machinery.errors import FieldError
from pilothouse.machinery.kinds.vcommon import forbidden, invalid, required

__all__ = ["convertible", "set_in_go", "sorted_properties", "validate_structural"]

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



def sorted_properties(s: Schema) -> dict[str, Schema]:
    """The node's properties in name order (Go's map order is random; ours is stable)."""
    return dict(sorted(properties(s).items()))


def set_in_go(s: Schema, name: str) -> bool:
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
    for name, prop in sorted_properties(s).items():
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
    skip_any_of = node_list(s.get("anyOf")) == _INT_OR_STRING_ANY_OF
    all_of = node_list(s.get("allOf"))
    skip_first_all_of = bool(all_of) and node_list(all_of[0].get("anyOf")) == _INT_OR_STRING_ANY_OF
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
    props = sorted_properties(s)
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


def _go_bool(value: bool) -> Any:
    return go_json_value(value)



def _metadata_invariants(s: Schema, check_metadata: bool, level: str, path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    if check_metadata and s.get("type", "") != "object":
        errors.append(invalid(child(path, "type"), s.get("type", ""), "must be object"))
    if level == _ROOT:
        # Only name and generateName may be constrained; type and default are checked elsewhere.
        rest = {k: v for k, v in s.items() if k not in ("type", "default") and v not in (None, False, "", [], {})}
        names = set(or_empty(rest.get("properties")))
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
        for i, sub in enumerate(node_list(s.get("anyOf"))):
            errors += _nested(sub, False, index(child(path, "anyOf"), i))
    for i, sub in enumerate(node_list(s.get("allOf"))):
        errors += _nested(sub, skip_first_all_of_any_of and i == 0, index(child(path, "allOf"), i))
    for i, sub in enumerate(node_list(s.get("oneOf"))):
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
    for name, prop in sorted_properties(v).items():
        errors += _nested(prop, False, key(child(path, "properties"), name))
    for keyword, message in _NESTED_FORBIDDEN:
        if set_in_go(v, keyword):
            errors.append(forbidden(child(path, keyword), message))
    if "metadata" in or_empty(v.get("properties")):
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
        for i, sub in enumerate(node_list(v.get(junctor))):
            errors += _nested_completeness(sub, s, s_path, index(child(v_path, junctor), i))
    return errors


def _nested_completeness(v: Schema, s: Schema | None, s_path: str, v_path: str) -> list[FieldError]:
    if s is None:
        return [required(s_path, f"because it is defined in {v_path}")]
    errors = _junctor_completeness(v, s, s_path, v_path)
    if isinstance(v.get("items"), dict):
        items = s.get("items") if isinstance(s.get("items"), dict) else None
        errors += _nested_completeness(v["items"], items, child(s_path, "items"), child(v_path, "items"))
    s_props = or_empty(s.get("properties"))
    for name, prop in sorted_properties(v).items():
        s_prop = s_props.get(name)
        prop_s_path = key(child(s_path, "properties"), name)
        prop_v_path = key(child(v_path, "properties"), name)
        if not isinstance(s_prop, dict):
            errors.append(required(prop_s_path, f"because it is defined in {prop_v_path}"))
        else:
            errors += _nested_completeness(prop, s_prop, prop_s_path, prop_v_path)
    return errors


def convertible(s: Any) -> bool:
    """Whether ``NewStructural`` accepts the schema (convert.go's refusals, at every level)."""
    if not isinstance(s, dict):
        return True
    if isinstance(s.get("items"), list) or s.get("x-kubernetes-preserve-unknown-fields") is False:
        return False
    if any(set_in_go(s, name) for name in ("id", "$schema", "$ref", "patternProperties", "definitions")):
        return False
    if s.get("dependencies") is not None or s.get("additionalItems") is not None:
        return False
    subs = [*sorted_properties(s).values(), s.get("items"), s.get("additionalProperties"), s.get("not"),
            *node_list(s.get("allOf")), *node_list(s.get("anyOf")), *node_list(s.get("oneOf"))]
    return all(convertible(sub) for sub in subs)
