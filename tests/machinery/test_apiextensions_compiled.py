"""A CRD schema compiled once (``compiled.compile_schema``) must do what the interpreted walks do.

Each case runs the interpreted function (``prune``, ``apply_defaults``, ``validate_instance``) and
the compiled one on copies of the same object and compares the results, valid and invalid
objects alike; the compiled validity check must also vouch for the valid ones (else it saves
nothing).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from pilothouse.machinery.apiextensions import apply_defaults, prune, validate_instance, validate_rules
from pilothouse.machinery.apiextensions.compiled import compile_schema
from pilothouse.machinery.apiextensions.instance import has_failures
from pilothouse.machinery.apiextensions.rules import _fields_read

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "required": ["size"],
            "properties": {
                "size": {"type": "integer", "minimum": 0, "maximum": 10, "default": 1},
                "ratio": {"type": "number", "exclusiveMinimum": True, "minimum": 0},
                "color": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 8},
                "mode": {"type": "string", "enum": ["a", "b"]},
                "when": {"type": "string", "format": "date-time"},
                "tags": {"type": "array", "maxItems": 3, "items": {"type": "string", "minLength": 1}},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "port": {"x-kubernetes-int-or-string": True},
                "nothing": {"type": "string", "nullable": True},
                "nested": {"type": "object", "default": {}, "properties": {
                    "deep": {"type": "string", "default": "d"},
                    "list": {"type": "array", "items": {"type": "object", "properties": {
                        "n": {"type": "integer", "default": 7}}}}}},
                "closed": {"type": "object", "additionalProperties": False,
                           "properties": {"only": {"type": "boolean"}}},
            },
        },
        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                   "properties": {"phase": {"type": "string"}}},
        "items": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
        "embedded": {"type": "object", "x-kubernetes-embedded-resource": True,
                     "x-kubernetes-preserve-unknown-fields": True},
    },
}


def _resource(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "x.example.com/v1", "kind": "X",
            "metadata": {"name": "a", "labels": {"k": "v"}, "bogus": 1,
                         "managedFields": [{"manager": "m", "fieldsV1": {"f:spec": {}}, "extra": True}]},
            "spec": spec}


VALID = [
    _resource(size=3),
    _resource(size=0, ratio=0.5, color="blue", tags=["a", "b"], labels={"x": "y"}, nothing=None,
              nested={"list": [{}, {"n": 2}]}, closed={"only": True}),
    {**_resource(size=10), "status": {"phase": "Up", "anything": [1, {"x": None}]}},
    {**_resource(size=1), "embedded": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "junk": 1}}},
]
INVALID = [
    _resource(size=11),
    _resource(size=-1),
    _resource(size=3.0),  # an integral float passes as an integer: the interpreter decides
    _resource(size="3"),
    _resource(ratio=0),
    _resource(size=1, color="Blue"),
    _resource(size=1, color="abcdefghij"),
    _resource(size=1, mode="c"),
    _resource(size=1, when="yesterday"),
    _resource(size=1, tags=["a", "b", "c", "d"]),
    _resource(size=1, tags=[""]),
    _resource(size=1, labels={"x": 1}),
    _resource(size=1, port=[1]),
    _resource(size=1, closed={"only": True, "other": 1}),
    _resource(size=None),
    {**_resource(size=1), "spec": None},
]
EXTRAS = [
    {**_resource(size=1, unknown=1, nested={"deep": None, "list": [{"n": None, "x": 1}]}), "top": {"a": 1},
     "items": [{"free": 1}, None]},
    {**_resource(size=None, nested=None, labels={"a": None}), "status": None},
]


@pytest.mark.parametrize("obj", VALID + INVALID + EXTRAS)
def test_compiled_prune_and_defaults_do_what_the_interpreter_does(obj: dict[str, Any]) -> None:
    compiled = compile_schema(SCHEMA)
    expected, actual = copy.deepcopy(obj), copy.deepcopy(obj)
    assert compiled.prune(actual) == prune(SCHEMA, expected)
    assert actual == expected
    apply_defaults(SCHEMA, expected)
    compiled.default(actual)
    assert actual == expected


@pytest.mark.parametrize("obj", VALID + INVALID + EXTRAS)
def test_compiled_validity_never_vouches_for_an_invalid_object(obj: dict[str, Any]) -> None:
    compiled = compile_schema(SCHEMA)
    if compiled.valid(obj):
        assert not has_failures(SCHEMA, obj)
    messages = [e.message() for e in validate_instance(SCHEMA, obj)]
    assert [e.message() for e in validate_instance(SCHEMA, obj, valid=compiled.valid)] == messages


@pytest.mark.parametrize("obj", VALID)
def test_compiled_validity_vouches_for_valid_objects(obj: dict[str, Any]) -> None:
    # Without the date-time, enum and int-or-string fields, which the interpreter always checks.
    assert compile_schema(SCHEMA).valid(obj)
    assert not validate_instance(SCHEMA, obj)


def test_prune_reports_paths_of_lists_and_maps_as_the_interpreter_does() -> None:
    obj = copy.deepcopy(EXTRAS[0])
    assert compile_schema(SCHEMA).prune(obj) == [
        "metadata.bogus", "metadata.managedFields[0].extra", "spec.nested.list[0].x", "spec.unknown", "top"]


@pytest.mark.parametrize(("rule", "self_fields", "old_fields"), [
    ("self.size <= 100", {"size"}, set()),
    ("has(self.x) && self.y.exists(z, z > 0)", {"x", "y"}, set()),
    ("self.a == oldSelf.b", {"a"}, {"b"}),
    ("self.all(k, k != '')", None, set()),
    ("size(self) > 1", None, set()),
    ("self.x == oldSelf", {"x"}, None),
    ("self.?x.orValue(1) == 1", None, set()),
    ("'self' == self.a", None, set()),
])
def test_rules_bind_only_the_fields_they_read(rule: str, self_fields: set[str] | None,
                                              old_fields: set[str] | None) -> None:
    fields = _fields_read({"x-kubernetes-validations": [{"rule": rule}]})
    assert fields == (None if self_fields is None else frozenset(self_fields),
                      None if old_fields is None else frozenset(old_fields))


def test_rules_see_the_same_values_through_the_projection() -> None:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {"spec": {
            "type": "object",
            "properties": {"max-size": {"type": "integer"}, "size": {"type": "integer"},
                           "when": {"type": "string", "format": "date-time"}, "in": {"type": "string"}},
            "x-kubernetes-validations": [
                {"rule": "self.size <= self.max__dash__size", "messageExpression": "'size ' + string(self.size)"},
                {"rule": "!has(self.when) || self.when > timestamp('2020-01-01T00:00:00Z')"},
                {"rule": "!has(self.__in__) || self.__in__ != 'no'"},
            ]}},
    }
    bad = {"spec": {"size": 5, "max-size": 3, "when": "2019-01-01T00:00:00Z", "in": "no", "other": [1]}}
    assert [(e.field, e.detail) for e in validate_rules(schema, bad)] == [
        ("spec", "size 5"),
        ("spec", "failed rule: !has(self.when) || self.when > timestamp('2020-01-01T00:00:00Z')"),
        ("spec", "failed rule: !has(self.__in__) || self.__in__ != 'no'")]
    assert validate_rules(schema, {"spec": {"size": 1, "max-size": 3, "when": "2021-01-01T00:00:00Z"}}) == []


def test_a_null_old_value_is_still_bound_for_transition_rules() -> None:
    schema: dict[str, Any] = {"type": "object", "properties": {"spec": {
        "type": "object", "nullable": True,
        "x-kubernetes-validations": [{"rule": "oldSelf == null || self == oldSelf", "message": "immutable"}]}}}
    assert [e.detail for e in validate_rules(schema, {"spec": {"a": 1}}, {"spec": {"a": 2}})] == ["immutable"]
    assert validate_rules(schema, {"spec": {"a": 1}}, {"spec": None}) == []
