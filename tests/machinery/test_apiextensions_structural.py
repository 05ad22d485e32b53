"""CRD schema validation (structural schemas and keyword rules) with Kubernetes' paths and texts.

Cases follow apiextensions-apiserver's ``pkg/apis/apiextensions/validation/validation_test.go``
(TestValidateCustomResourceDefinitionValidation) and ``pkg/apiserver/schema/validation_test.go``;
the texts are the ones those packages write.
"""

from __future__ import annotations

from typing import Any

import pytest

from pilothouse.machinery.apiextensions import validate_crd_schema

P = "spec.versions[0].schema.openAPIV3Schema"
F = f"{P}.properties[f]"


def _field(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": {"f": schema}}


def _messages(schema: dict[str, Any]) -> list[str]:
    return [e.message() for e in validate_crd_schema(schema, P)]


VALID: list[tuple[str, dict[str, Any]]] = [
    ("object root", {"type": "object"}),
    ("nullable field without type", _field({"nullable": True, "x-kubernetes-preserve-unknown-fields": True})),
    ("int-or-string", _field({"x-kubernetes-int-or-string": True})),
    ("int-or-string anyOf pattern", _field({"x-kubernetes-int-or-string": True,
                                            "anyOf": [{"type": "integer"}, {"type": "string"}]})),
    ("preserve-unknown-fields without type", _field({"x-kubernetes-preserve-unknown-fields": True})),
    ("metadata name constraints", {"type": "object", "properties": {"metadata": {
        "type": "object", "properties": {"name": {"type": "string", "maxLength": 10}}}}}),
    ("embedded resource", _field({"type": "object", "x-kubernetes-embedded-resource": True,
                                  "x-kubernetes-preserve-unknown-fields": True})),
    ("list-map", _field({"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                         "items": {"type": "object", "required": ["name"],
                                   "properties": {"name": {"type": "string"}}}})),
    ("value validation restating fields", {"type": "object", "properties": {"a": {"type": "string"}},
                                           "anyOf": [{"required": ["a"]}, {"properties": {"a": {"pattern": "x"}}}]}),
    ("defaults", _field({"type": "object", "properties": {"n": {"type": "integer", "default": 3}}})),
]


@pytest.mark.parametrize("schema", [c[1] for c in VALID], ids=[c[0] for c in VALID])
def test_valid(schema: dict[str, Any]) -> None:
    assert _messages(schema) == []


INVALID: list[tuple[str, dict[str, Any], list[str]]] = [
    ("root type missing", {"properties": {"f": {"type": "string"}}},
     [f"{P}.type: Required value: must not be empty at the root"]),
    ("root not object", {"type": "string"}, [f'{P}.type: Invalid value: "string": must be object at the root']),
    ("root nullable", {"type": "object", "nullable": True},
     [f"{P}.nullable: Forbidden: nullable cannot be true at the root"]),
    ("field type missing", _field({"properties": {"x": {"type": "string"}}}),
     [f"{F}.type: Required value: must not be empty for specified object fields"]),
    ("items type missing", _field({"type": "array", "items": {"description": "x"}}),
     [f"{F}.items.type: Required value: must not be empty for specified array items"]),
    ("array without items", _field({"type": "array"}), [f"{F}.items: Required value: must be specified"]),
    ("bogus type", _field({"type": "bogus"}),
     [f'{F}.type: Unsupported value: "bogus": supported values: "array", "boolean", "integer", "number", '
      '"object", "string"']),
    ("null type", _field({"type": "null"}),
     [f'{F}.type: Unsupported value: "null": supported values: "array", "boolean", "integer", "number", '
      '"object", "string"',
      f"{F}.type: Forbidden: type cannot be set to null, use nullable as an alternative"]),
    ("additionalProperties at the root", {"type": "object", "additionalProperties": {"type": "string"}},
     [f"{P}.additionalProperties: Forbidden: must not be used at the root"]),
    ("properties and additionalProperties", _field({"type": "object", "properties": {"a": {"type": "string"}},
                                                     "additionalProperties": {"type": "string"}}),
     [f"{F}.additionalProperties: Forbidden: additionalProperties and properties are mutual exclusive"]),
    ("uniqueItems", _field({"type": "array", "items": {"type": "string"}, "uniqueItems": True}),
     [f"{F}.uniqueItems: Forbidden: uniqueItems cannot be set to true since the runtime complexity becomes "
      "quadratic"]),
    ("forbidden keywords", _field({"type": "object", "$ref": "#/x", "patternProperties": {"a": {"type": "string"}},
                                   "definitions": {"d": {"type": "string"}}, "id": "x"}),
     [f"{F}.id: Forbidden: id is not supported",
      f"{F}.patternProperties: Forbidden: patternProperties is not supported",
      f"{F}.definitions: Forbidden: definitions is not supported",
      f"{F}.$ref: Forbidden: $ref is not supported"]),
    ("items as an array (not convertible: no structural errors)", _field({"type": "array",
                                                                      "items": [{"type": "string"}]}),
     [f"{F}.items: Forbidden: items must be a schema object and not an array"]),
    ("preserve-unknown-fields false", _field({"type": "object", "x-kubernetes-preserve-unknown-fields": False}),
     [f"{F}.x-kubernetes-preserve-unknown-fields: Invalid value: false: must be true or undefined"]),
    ("int-or-string with preserve", _field({"x-kubernetes-int-or-string": True,
                                            "x-kubernetes-preserve-unknown-fields": True}),
     [f"{F}.x-kubernetes-preserve-unknown-fields: Invalid value: true: must be false if "
      "x-kubernetes-int-or-string is true"]),
    ("embedded not object", _field({"type": "string", "x-kubernetes-embedded-resource": True}),
     [f"{F}.properties: Required value: must not be empty if x-kubernetes-embedded-resource is true without "
      "x-kubernetes-preserve-unknown-fields",
      f'{F}.type: Invalid value: "string": must be object if x-kubernetes-embedded-resource is true']),
    ("embedded without properties", _field({"type": "object", "x-kubernetes-embedded-resource": True}),
     [f"{F}.properties: Required value: must not be empty if x-kubernetes-embedded-resource is true without "
      "x-kubernetes-preserve-unknown-fields"]),
    ("metadata beyond name", {"type": "object", "properties": {"metadata": {
        "type": "object", "properties": {"labels": {"type": "object"}}}}},
     [f"{P}.properties[metadata]: Forbidden: must not specify anything other than name and generateName, but "
      "metadata is implicitly specified"]),
    ("metadata default", {"type": "object", "properties": {"metadata": {"type": "object", "default": {}}}},
     [f"{P}.properties[metadata].default: Forbidden: must not be set in top-level metadata"]),
    ("kind must be a string", {"type": "object", "properties": {"kind": {"type": "integer"}}},
     [f'{P}.properties[kind].type: Invalid value: "integer": must be string']),
    ("type in value validation", _field({"type": "string", "anyOf": [{"type": "string"}]}),
     [f"{F}.anyOf[0].type: Forbidden: must be empty to be structural"]),
    ("nested structure in value validation", _field({"type": "object", "allOf": [
        {"properties": {"x": {"type": "string", "description": "d"}}}]}),
     [f"{F}.allOf[0].properties[x].description: Forbidden: must be empty to be structural",
      f"{F}.allOf[0].properties[x].type: Forbidden: must be empty to be structural"]),
    ("value validation names unknown field", {"type": "object", "properties": {"a": {"type": "string"}},
                                              "oneOf": [{"properties": {"b": {"pattern": "x"}}}]},
     [f"{P}.properties[b]: Required value: because it is defined in {P}.oneOf[0].properties[b]"]),
    ("metadata in value validation", {"type": "object", "not": {"properties": {"metadata": {}}}},
     [f"{P}.not.properties[metadata]: Forbidden: must not be specified in a nested context",
      f"{P}.properties[metadata]: Required value: because it is defined in {P}.not.properties[metadata]"]),
    ("list type on object", _field({"type": "object", "x-kubernetes-list-type": "set"}),
     [f'{F}.type: Invalid value: "object": must be array if x-kubernetes-list-type is specified']),
    ("unknown list type", _field({"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "bag"}),
     [f'{F}.x-kubernetes-list-type: Unsupported value: "bag": supported values: "atomic", "set", "map"']),
    ("map keys without list type", _field({"type": "array", "items": {"type": "string"},
                                           "x-kubernetes-list-map-keys": ["k"]}),
     [f"{F}.x-kubernetes-list-type: Required value: must be map if x-kubernetes-list-map-keys is non-empty"]),
    ("list map without keys", _field({"type": "array", "x-kubernetes-list-type": "map",
                                      "items": {"type": "object"}}),
     [f"{F}.x-kubernetes-list-map-keys: Required value: must not be empty if x-kubernetes-list-type is map"]),
    ("list map of strings", _field({"type": "array", "x-kubernetes-list-type": "map",
                                    "x-kubernetes-list-map-keys": ["k"], "items": {"type": "string"}}),
     [f'{F}.items.type: Invalid value: "string": must be object if parent array\'s x-kubernetes-list-type is map']),
    ("list map key not a property", _field({"type": "array", "x-kubernetes-list-type": "map",
                                            "x-kubernetes-list-map-keys": ["k"],
                                            "items": {"type": "object", "properties": {"a": {"type": "string"}}}}),
     [f'{F}.x-kubernetes-list-map-keys: Invalid value: []string{{"k"}}: entries must all be names of item '
      "properties"]),
    ("list map key optional without default", _field({
        "type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["k"],
        "items": {"type": "object", "properties": {"k": {"type": "string"}}}}),
     [f"{F}.items.properties[k].default: Required value: this property is in x-kubernetes-list-map-keys, so it "
      "must have a default or be a required property"]),
    ("set of granular objects", _field({"type": "array", "x-kubernetes-list-type": "set",
                                        "items": {"type": "object", "properties": {"a": {"type": "string"}}}}),
     [f'{F}.items.x-kubernetes-map-type: Invalid value: "null": must be atomic as item of a list with '
      "x-kubernetes-list-type=set"]),
    ("map type on array", _field({"type": "array", "items": {"type": "string"}, "x-kubernetes-map-type": "atomic"}),
     [f'{F}.type: Invalid value: "array": must be object if x-kubernetes-map-type is specified']),
    ("default of the wrong type", _field({"type": "object", "properties": {"n": {"type": "integer",
                                                                             "default": "three"}}}),
     # The validator of a default has an empty root path, hence the double space.
     [f'{F}.properties[n].default: Invalid value: "string":  in body must be of type integer: "string"']),
    ("default failing its rule", _field({"type": "integer", "default": 5,
                                         "x-kubernetes-validations": [{"rule": "self < 3"}]}),
     [f'{F}.default: Invalid value: "integer": failed rule: self < 3']),
    ("default with unknown fields", _field({"type": "object", "default": {"a": 1, "b": 2},
                                            "properties": {"a": {"type": "integer"}}}),
     [f'{F}.default: Invalid value: map[string]interface {{}}{{"a":1, "b":2}}: must not have unknown fields']),
]


@pytest.mark.parametrize(("schema", "expected"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid(schema: dict[str, Any], expected: list[str]) -> None:
    assert _messages(schema) == expected
