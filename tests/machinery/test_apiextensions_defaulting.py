"""Structural defaulting and pruning of custom resources.

Cases are apiextensions-apiserver's ``schema/defaulting/algorithm_test.go``,
``prunenulls_test.go`` and ``schema/pruning/algorithm_test.go``, with the structural schemas
written as the CRD JSON they come from.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from pilothouse.machinery.apiextensions import apply_defaults, prune


def _d(value: Any) -> dict[str, Any]:
    return {"default": value}


DEFAULTS: list[tuple[str, str, dict[str, Any], str]] = [
    ("scalar", "4", _d("foo"), "4"),
    ("scalar array", "[1,2]", {"items": _d("foo")}, "[1,2]"),
    ("object array", '[{"a":1},{"b":1},{"c":1}]',
     {"items": {"properties": {"a": _d("A"), "b": _d("B"), "c": _d("C")}}},
     '[{"a":1,"b":"B","c":"C"},{"a":"A","b":1,"c":"C"},{"a":"A","b":"B","c":1}]'),
    ("object array object", '{"array":[{"a":1},{"b":2}],"object":{"a":1},"additionalProperties":{"x":{"a":1},'
                            '"y":{"b":2}}}',
     {"properties": {"array": {"items": {"properties": {"a": _d("A"), "b": _d("B")}}},
                     "object": {"properties": {"a": _d("N"), "b": _d("O")}},
                     "additionalProperties": {"additionalProperties": {"properties": {"a": _d("alpha"),
                                                                                     "b": _d("beta")}}},
                     "foo": _d("bar")}},
     '{"array":[{"a":1,"b":"B"},{"a":"A","b":2}],"object":{"a":1,"b":"O"},"additionalProperties":{"x":{"a":1,'
     '"b":"beta"},"y":{"a":"alpha","b":2}},"foo":"bar"}'),
    ("empty and null", '[{},{"a":1},{"a":0},{"a":0.0},{"a":""},{"a":null},{"a":[]},{"a":{}}]',
     {"items": {"properties": {"a": _d("A")}}},
     '[{"a":"A"},{"a":1},{"a":0},{"a":0.0},{"a":""},{"a":"A"},{"a":[]},{"a":{}}]'),
    ("null in nullable list", "[null]", {"nullable": True, "items": {"properties": {"a": _d("A")}}}, "[null]"),
    ("null in non-nullable list", "[null]", {"items": _d("A")}, '["A"]'),
    ("null in nullable object", '{"a": null}', {"properties": {"a": {"nullable": True, "default": "A"}}},
     '{"a": null}'),
    ("null in non-nullable object", '{"a": null}', {"properties": {"a": _d("A")}}, '{"a": "A"}'),
    ("null in nullable additionalProperties", '{"a": null}',
     {"additionalProperties": {"nullable": True, "default": "A"}}, '{"a": null}'),
    ("null in non-nullable additionalProperties", '{"a": null}', {"additionalProperties": _d("A")}, '{"a": "A"}'),
    ("null unknown field", '{"a": null}', {"additionalProperties": True}, '{"a": null}'),
    ("defaults inside defaults", "{}",
     {"properties": {"spec": {"type": "object", "default": {}, "properties": {"replicas": _d(1)}}}},
     '{"spec": {"replicas": 1}}'),
    # PruneNonNullableNullsWithoutDefaults, which runs first.
    ("null without default is dropped", '{"a": null, "b": null, "c": null}',
     {"properties": {"a": {"type": "string"}, "b": {"type": "string", "nullable": True}}},
     '{"b": null, "c": null}'),
]


@pytest.mark.parametrize(("given", "schema", "expected"), [c[1:] for c in DEFAULTS], ids=[c[0] for c in DEFAULTS])
def test_defaulting(given: str, schema: dict[str, Any], expected: str) -> None:
    obj = json.loads(given)
    apply_defaults(schema, obj)
    assert obj == json.loads(expected)


def test_defaults_are_copies() -> None:
    schema = {"properties": {"a": _d({"x": [1]}), "b": _d({"x": [1]})}}
    first: dict[str, Any] = {}
    apply_defaults(schema, first)
    first["a"]["x"].append(2)
    second: dict[str, Any] = {}
    apply_defaults(schema, second)
    assert second == {"a": {"x": [1]}, "b": {"x": [1]}}


PRESERVING_SCHEMA = {
    "type": "object", "x-kubernetes-preserve-unknown-fields": True,
    "properties": {
        "alpha": {"type": "string"},
        "beta": {"type": "number"},
        "pruning": {"type": "object", "properties": {
            "preserving": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "pruning": {"type": "object"}}},
        "preserving": {"type": "object", "x-kubernetes-preserve-unknown-fields": True, "properties": {
            "preserving": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "preservingUnknownType": {"x-kubernetes-preserve-unknown-fields": True},
            "pruning": {"type": "object"}}},
        "preservingAdditionalPropertiesNotInheritingXPreserveUnknownFields": {
            "type": "object", "x-kubernetes-preserve-unknown-fields": True,
            "additionalProperties": {"type": "object", "properties": {"specified": {"type": "object"}}}},
        "preservingAdditionalPropertiesKeyPruneValues": {
            "type": "object",
            "additionalProperties": {"type": "object", "properties": {"specified": {"type": "object"}}}},
    },
}


def _foo() -> dict[str, Any]:
    return {"foo": {"specified": {"unspecified": "bar"}, "unspecified": "bar"}}


PRUNING: list[tuple[str, Any, dict[str, Any] | None, Any, list[str]]] = [
    ("scalar", 4, {}, 4, []),
    ("object array", [{"a": 1}, {"b": 1}, {"a": 1, "b": 2, "c": 3}], {"items": {"properties": {"a": {}, "c": {}}}},
     [{"a": 1}, {}, {"a": 1, "c": 3}], ["[1].b", "[2].b"]),
    ("object array with nil schema", [{"a": 1}, {"b": 1}, {"a": 1, "b": 2, "c": 3}], None, [{}, {}, {}],
     ["[0].a", "[1].b", "[2].a", "[2].b", "[2].c"]),
    ("additionalProperties with schema", {"a": 1, "b": 1, "c": {"a": 1, "b": 2, "c": {"a": 1}}},
     {"properties": {"a": {}, "c": {"additionalProperties": {"type": "object"}}}},
     {"a": 1, "c": {"a": 1, "b": 2, "c": {}}}, ["b", "c.c.a"]),
    ("additionalProperties with bool", {"a": 1, "b": 1, "c": {"a": 1, "b": 2, "c": {"a": 1, "apiVersion": "x"}}},
     {"properties": {"a": {}, "c": {"additionalProperties": True}}},
     {"a": 1, "c": {"a": 1, "b": 2, "c": {}}}, ["b", "c.c.a", "c.c.apiVersion"]),
    ("nested x-kubernetes-preserve-unknown-fields",
     {"unspecified": "bar", "alpha": "abc", "beta": 42.0, "unspecifiedObject": {"unspecified": "bar"},
      "pruning": {"unspecified": "bar", "unspecifiedObject": {"unspecified": "bar"}, "pruning": {"unspecified": "bar"},
                  "apiVersion": "unknown", "preserving": {"unspecified": "bar"}},
      "preserving": {"unspecified": "bar", "unspecifiedObject": {"unspecified": "bar"},
                     "pruning": {"unspecified": "bar"}, "preserving": {"unspecified": "bar"},
                     "preservingUnknownType": [{"foo": True}, {"bar": True}]},
      "preservingAdditionalPropertiesNotInheritingXPreserveUnknownFields": _foo(),
      "preservingAdditionalPropertiesKeyPruneValues": _foo()},
     PRESERVING_SCHEMA,
     {"unspecified": "bar", "alpha": "abc", "beta": 42.0, "unspecifiedObject": {"unspecified": "bar"},
      "pruning": {"pruning": {}, "preserving": {"unspecified": "bar"}},
      "preserving": {"unspecified": "bar", "unspecifiedObject": {"unspecified": "bar"}, "pruning": {},
                     "preserving": {"unspecified": "bar"}, "preservingUnknownType": [{"foo": True}, {"bar": True}]},
      "preservingAdditionalPropertiesNotInheritingXPreserveUnknownFields": {"foo": {"specified": {}}},
      "preservingAdditionalPropertiesKeyPruneValues": {"foo": {"specified": {}}}},
     ["preserving.pruning.unspecified", "preservingAdditionalPropertiesKeyPruneValues.foo.specified.unspecified",
      "preservingAdditionalPropertiesKeyPruneValues.foo.unspecified",
      "preservingAdditionalPropertiesNotInheritingXPreserveUnknownFields.foo.specified.unspecified",
      "preservingAdditionalPropertiesNotInheritingXPreserveUnknownFields.foo.unspecified", "pruning.apiVersion",
      "pruning.pruning.unspecified", "pruning.unspecified", "pruning.unspecifiedObject"]),
]


@pytest.mark.parametrize(("given", "schema", "expected", "paths"), [c[1:] for c in PRUNING],
                         ids=[c[0] for c in PRUNING])
def test_pruning(given: Any, schema: dict[str, Any] | None, expected: Any, paths: list[str]) -> None:
    assert prune(schema, given, is_resource_root=False) == paths
    assert given == expected


def test_resource_root_keeps_type_meta_and_object_meta_fields() -> None:
    schema = {"type": "object", "properties": {"spec": {"type": "object", "properties": {"a": {"type": "string"}},
                                                        "x-kubernetes-embedded-resource": False}},
              "x-kubernetes-embedded-resource": False}
    obj = {"apiVersion": "x/v1", "kind": "X", "metadata": {"name": "n", "junk": 1}, "spec": {"a": "1", "b": 2},
           "extra": True}
    # metadata is an ObjectMeta: what ObjectMeta lacks goes, as the Go decoding drops it.
    assert prune(schema, obj) == ["extra", "metadata.junk", "spec.b"]
    assert obj == {"apiVersion": "x/v1", "kind": "X", "metadata": {"name": "n"}, "spec": {"a": "1"}}


def test_embedded_resources_keep_their_type_and_object_meta() -> None:
    embedded = {"type": "object", "x-kubernetes-embedded-resource": True,
                "properties": {"spec": {"type": "object", "properties": {"x": {"type": "string"}}}}}
    schema = {"type": "object", "properties": {"template": embedded}}
    obj = {"template": {"apiVersion": "v1", "kind": "Pod",
                        "metadata": {"labels": {"a": "b"}, "ownerReferences": [{"uid": "u", "bogus": 1}]},
                        "spec": {"x": "1", "y": 2}, "status": {}}}
    assert prune(schema, obj) == ["template.metadata.ownerReferences[0].bogus", "template.spec.y",
                                  "template.status"]
    obj["template"]["metadata"].pop("ownerReferences")
    assert obj["template"] == {"apiVersion": "v1", "kind": "Pod", "metadata": {"labels": {"a": "b"}},
                               "spec": {"x": "1"}}
