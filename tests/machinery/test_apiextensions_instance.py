"""OpenAPI validation of custom resources: Kubernetes' error texts for each schema keyword.

Each case is (schema of one field ``spec.f``, value, the messages kube-apiserver prints). The
texts are those of kube-openapi's validators as apiextensions' ``kubeOpenAPIResultToFieldErrors``
wraps them (see e.g. test/integration/validation_test.go in apiextensions-apiserver).
"""

from __future__ import annotations

from typing import Any

import pytest

from pilothouse.machinery.apiextensions import validate_instance


def _spec(field: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "object", "properties": {"spec": {"type": "object", "properties": {"f": field}, **extra}}}


def _messages(schema: dict[str, Any], obj: Any) -> list[str]:
    return [e.message() for e in validate_instance(schema, obj)]


CASES: list[tuple[str, dict[str, Any], Any, list[str]]] = [
    ("integer ok", {"type": "integer"}, 3, []),
    ("float with no fraction is an integer", {"type": "integer"}, 3.0, []),
    ("string for integer", {"type": "integer"}, "string",
     ['spec.f: Invalid value: "string": spec.f in body must be of type integer: "string"']),
    ("fraction for integer", {"type": "integer"}, 1.5,
     ['spec.f: Invalid value: "number": spec.f in body must be of type integer: "number"']),
    ("integer for number", {"type": "number"}, 2, []),
    ("boolean for string", {"type": "string"}, True,
     ['spec.f: Invalid value: "boolean": spec.f in body must be of type string: "boolean"']),
    ("object for array", {"type": "array", "items": {"type": "string"}}, {"a": 1},
     ['spec.f: Invalid value: "object": spec.f in body must be of type array: "object"']),
    ("null not nullable", {"type": "string"}, None,
     ['spec.f: Invalid value: "null": spec.f in body must be of type string: "null"']),
    ("null nullable", {"type": "string", "nullable": True}, None, []),
    ("int-or-string int", {"x-kubernetes-int-or-string": True}, 80, []),
    ("int-or-string string", {"x-kubernetes-int-or-string": True}, "http", []),
    ("int-or-string bool", {"x-kubernetes-int-or-string": True}, False,
     ['spec.f: Invalid value: "boolean": spec.f in body must be of type integer,string: "boolean"']),
    ("enum", {"type": "string", "enum": ["Always", "Never"]}, "Sometimes",
     ['spec.f: Unsupported value: "Sometimes": supported values: "Always", "Never"']),
    ("enum of numbers", {"type": "integer", "enum": [1, 2]}, 3,
     ['spec.f: Unsupported value: 3: supported values: "1", "2"']),
    ("enum match", {"type": "integer", "enum": [1, 2]}, 2, []),
    ("enum match after Go's float to int conversion", {"type": "number", "enum": [1, 2]}, 1.5, []),
    ("null never matches an enum", {"type": "string", "nullable": True, "enum": ["a", None]}, None,
     ['spec.f: Unsupported value: "null": supported values: "a", "null"']),
    ("enum printed as Go marshals it", {"type": "number", "enum": [1.0, 2.5, {"a": 1}]}, 3,
     ['spec.f: Unsupported value: 3: supported values: "1", "2.5", "{\\"a\\":1}"']),
    ("maxLength", {"type": "string", "maxLength": 3}, "abcd", ["spec.f: Too long: may not be more than 3 bytes"]),
    ("minLength", {"type": "string", "minLength": 3}, "ab",
     ['spec.f: Invalid value: "ab": spec.f in body should be at least 3 chars long']),
    ("pattern", {"type": "string", "pattern": "^[a-z]+$"}, "ABC",
     ['spec.f: Invalid value: "ABC": spec.f in body should match \'^[a-z]+$\'']),
    ("maximum", {"type": "integer", "maximum": 10}, 11,
     ["spec.f: Invalid value: 11: spec.f in body should be less than or equal to 10"]),
    ("exclusiveMaximum", {"type": "integer", "maximum": 10, "exclusiveMaximum": True}, 10,
     ["spec.f: Invalid value: 10: spec.f in body should be less than 10"]),
    ("minimum", {"type": "number", "minimum": 0.5}, 0.25,
     ["spec.f: Invalid value: 0.25: spec.f in body should be greater than or equal to 0.5"]),
    ("exclusiveMinimum", {"type": "integer", "minimum": 0, "exclusiveMinimum": True}, 0,
     ["spec.f: Invalid value: 0: spec.f in body should be greater than 0"]),
    ("multipleOf", {"type": "integer", "multipleOf": 3}, 7,
     ["spec.f: Invalid value: 7: spec.f in body should be a multiple of 3"]),
    ("multipleOf a fraction", {"type": "number", "multipleOf": 0.1}, 0.3, []),
    ("not a multipleOf a fraction", {"type": "number", "multipleOf": 0.1}, 0.35,
     ["spec.f: Invalid value: 0.35: spec.f in body should be a multiple of 0.1"]),
    ("minItems", {"type": "array", "items": {"type": "string"}, "minItems": 2}, ["a"],
     ["spec.f: Invalid value: 1: spec.f in body should have at least 2 items"]),
    ("maxItems", {"type": "array", "items": {"type": "string"}, "maxItems": 1}, ["a", "b"],
     ["spec.f: Too many: 2: must have at most 1 items"]),
    ("items are validated", {"type": "array", "items": {"type": "integer"}}, [1, "x"],
     ['spec.f[1]: Invalid value: "string": spec.f[1] in body must be of type integer: "string"']),
    ("minProperties", {"type": "object", "additionalProperties": {"type": "string"}, "minProperties": 2}, {"a": "x"},
     ["spec.f: Invalid value: 1: spec.f in body should have at least 2 properties"]),
    ("maxProperties", {"type": "object", "additionalProperties": {"type": "string"}, "maxProperties": 1},
     {"a": "x", "b": "y"}, ["spec.f: Too many: 2: must have at most 1 items"]),
    ("additionalProperties schema", {"type": "object", "additionalProperties": {"type": "string"}}, {"a": 1},
     ['spec.f.a: Invalid value: "integer": spec.f.a in body must be of type string: "integer"']),
    ("required", {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}, {},
     ["spec.f.name: Required value"]),
    ("date", {"type": "string", "format": "date"}, "2024-02-30",
     ['spec.f: Invalid value: "2024-02-30": spec.f in body must be of type date: "2024-02-30"']),
    ("date-time", {"type": "string", "format": "date-time"}, "yesterday",
     ['spec.f: Invalid value: "yesterday": spec.f in body must be of type date-time: "yesterday"']),
    ("date-time ok", {"type": "string", "format": "date-time"}, "2024-02-03T04:05:06Z", []),
    ("byte", {"type": "string", "format": "byte"}, "not base64!",
     ['spec.f: Invalid value: "not base64!": spec.f in body must be of type byte: "not base64!"']),
    ("uuid", {"type": "string", "format": "uuid"}, "1234",
     ['spec.f: Invalid value: "1234": spec.f in body must be of type uuid: "1234"']),
    ("ipv4", {"type": "string", "format": "ipv4"}, "::1",
     ['spec.f: Invalid value: "::1": spec.f in body must be of type ipv4: "::1"']),
    ("unknown formats are ignored", {"type": "string", "format": "int32"}, "anything", []),
    ("datetime is date-time", {"type": "string", "format": "datetime"}, "x",
     ['spec.f: Invalid value: "x": spec.f in body must be of type datetime: "x"']),
    ("bsonobjectid", {"type": "string", "format": "bsonobjectid"}, "507f1f77bcf86cd799439011", []),
    ("int32 is a format of integers, not a range check", {"type": "integer", "format": "int32"}, 2**40, []),
]


@pytest.mark.parametrize(("field", "value", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_keyword(field: dict[str, Any], value: Any, expected: list[str]) -> None:
    assert _messages(_spec(field), {"spec": {"f": value}}) == expected


def test_required_at_root_and_nested() -> None:
    schema = {"type": "object", "required": ["spec"], "properties": {"spec": {"type": "object"}}}
    assert _messages(schema, {}) == ["spec: Required value"]


def test_list_type_set_duplicates() -> None:
    field = {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"}
    assert _messages(_spec(field), {"spec": {"f": ["a", "b", "a"]}}) == ['spec.f[2]: Duplicate value: "a"']


def test_list_type_map_duplicates() -> None:
    field = {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
             "items": {"type": "object", "properties": {"name": {"type": "string"}, "port": {"type": "integer"}}}}
    assert _messages(_spec(field), {"spec": {"f": [{"name": "a", "port": 1}, {"name": "a", "port": 2}]}}) == [
        'spec.f[1]: Duplicate value: map[string]interface {}{"name":"a"}']


def test_embedded_resource_needs_api_version_and_kind() -> None:
    field = {"type": "object", "x-kubernetes-embedded-resource": True, "x-kubernetes-preserve-unknown-fields": True}
    assert _messages(_spec(field), {"spec": {"f": {"metadata": {"name": "x"}}}}) == [
        "spec.f.apiVersion: Required value: must not be empty",
        "spec.f.kind: Required value: must not be empty",
    ]
    assert _messages(_spec(field), {"spec": {"f": {"apiVersion": "v1", "kind": "Pod"}}}) == []


def test_anyof_failure_is_reported_at_nil_path() -> None:
    field = {"type": "string", "anyOf": [{"pattern": "^a"}, {"pattern": "^b"}]}
    messages = _messages(_spec(field), {"spec": {"f": "c"}})
    assert messages[0] == '<nil>: Invalid value: "": "spec.f" must validate at least one schema (anyOf)'
    assert messages[1] == 'spec.f: Invalid value: "c": spec.f in body should match \'^a\''
