"""A custom resource's whole validation on create and update: order, blocking errors, ratcheting.

As ``customResourceStrategy.Validate``/``ValidateUpdate`` in apiextensions-apiserver 1.32, where
CRDValidationRatcheting is on by default: on update, a part of the object left as it was does
not fail validation it already failed (schema keywords and rules without ``oldSelf`` alike).
"""

from __future__ import annotations

from typing import Any

from pilothouse.machinery.apiextensions import validate_custom_resource, validate_instance, validate_rules
from pilothouse.machinery.errors import FieldError

SCHEMA: dict[str, Any] = {"type": "object", "properties": {"spec": {
    "type": "object",
    "x-kubernetes-validations": [{"rule": "self.min <= self.max", "message": "min must not exceed max"}],
    "properties": {
        "min": {"type": "integer"}, "max": {"type": "integer"},
        "name": {"type": "string", "maxLength": 5},
        "tags": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
        "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                  "items": {"type": "object", "properties": {"name": {"type": "string"},
                                                             "port": {"type": "integer", "maximum": 100}}}},
    }}}}


def _messages(obj: Any, old: Any = None) -> list[str]:
    return [e.message() for e in validate_custom_resource(SCHEMA, obj, old)]


def test_schema_then_rules() -> None:
    assert _messages({"spec": {"min": 3, "max": 1, "ports": [{"name": "a", "port": 101}]}}) == [
        "spec.ports[0].port: Invalid value: 101: spec.ports[0].port in body should be less than or equal to 100",
        'spec: Invalid value: "object": min must not exceed max',
    ]


def test_blocking_errors_skip_the_rules() -> None:
    assert _messages({"spec": {"min": "3", "max": 1}}) == [
        'spec.min: Invalid value: "string": spec.min in body must be of type integer: "string"',
        '<nil>: Invalid value: "null": some validation rules were not checked because the object was invalid; '
        "correct the existing errors to complete validation",
    ]


def test_no_rules_no_blocking_error() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    assert [e.message() for e in validate_custom_resource(schema, {"n": "x"})] == [
        'n: Invalid value: "string": n in body must be of type integer: "string"']


def test_prior_errors_also_block() -> None:
    prior = [FieldError("FieldValueRequired", "metadata.name", "name or generateName is required")]
    messages = [e.message() for e in validate_custom_resource(SCHEMA, {"spec": {"min": 3, "max": 1}}, prior=prior)]
    assert messages == ['<nil>: Invalid value: "null": some validation rules were not checked because the object '
                        "was invalid; correct the existing errors to complete validation"]


def test_unchanged_invalid_values_ratchet_on_update() -> None:
    old = {"spec": {"name": "toolong", "min": 3, "max": 1, "ports": [{"name": "a", "port": 101}]}}
    new = {"spec": {"name": "toolong", "min": 3, "max": 1, "ports": [{"name": "a", "port": 101}], "tags": ["x"]}}
    # Only the rule on spec, whose value did change (tags were added), still fails.
    assert _messages(new, old) == ['spec: Invalid value: "object": min must not exceed max']
    assert _messages(old, old) == []
    # On create, or where the value changed, the same problems are errors.
    assert len(_messages(new)) == 3
    changed = {"spec": {"name": "toolong!", "min": 3, "max": 1, "ports": [{"name": "a", "port": 102}]}}
    assert _messages(changed, old) == [
        "spec.name: Too long: may not be more than 5 bytes",
        "spec.ports[0].port: Invalid value: 102: spec.ports[0].port in body should be less than or equal to 100",
        "<nil>: Invalid value: \"null\": some validation rules were not checked because the object was invalid; "
        "correct the existing errors to complete validation",
    ]


def test_rules_ratchet_per_node() -> None:
    old = {"spec": {"min": 3, "max": 1}}
    assert validate_rules(SCHEMA, {"spec": {"min": 3, "max": 1}}, old) == []
    warnings: list[str] = []
    assert validate_rules(SCHEMA, {"spec": {"min": 3, "max": 1}}, old, warnings=warnings) == []
    assert warnings == ['spec: Invalid value: "object": min must not exceed max']
    assert [e.message() for e in validate_rules(SCHEMA, {"spec": {"min": 4, "max": 1}}, old)] == [
        'spec: Invalid value: "object": min must not exceed max']


def test_list_uniqueness_only_if_the_old_object_had_it() -> None:
    old_dup = {"spec": {"tags": ["a", "a"]}}
    assert validate_instance(SCHEMA, {"spec": {"tags": ["a", "a", "b"]}}, old_dup) == []
    old_ok = {"spec": {"tags": ["a"]}}
    assert [e.message() for e in validate_instance(SCHEMA, {"spec": {"tags": ["a", "a"]}}, old_ok)] == [
        'spec.tags[1]: Duplicate value: "a"']
