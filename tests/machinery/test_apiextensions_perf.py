"""The shortcuts that make custom-resource writes cheaper must not change what they report."""

from __future__ import annotations

from typing import Any

from pilothouse.machinery.apiextensions.defaulting import apply_defaults
from pilothouse.machinery.apiextensions.embedded import validate_embedded_resources
from pilothouse.machinery.apiextensions.nodes import carries
from pilothouse.machinery.apiextensions.rules import validate_rules

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "plain": {"type": "object", "properties": {"a": {"type": "string"}}},
        "ruled": {"type": "array", "items": {
            "type": "object", "properties": {"n": {"type": "integer", "default": 3}},
            "x-kubernetes-validations": [{"rule": "self.n < 10", "message": "small"}]}},
        "map": {"type": "object", "additionalProperties": {
            "type": "object", "x-kubernetes-embedded-resource": True,
            "x-kubernetes-preserve-unknown-fields": True}},
    },
}


def test_carries_sees_keywords_through_properties_items_and_additional_properties() -> None:
    assert carries(SCHEMA, "x-kubernetes-validations")
    assert carries(SCHEMA, "default")
    assert carries(SCHEMA, "x-kubernetes-embedded-resource")
    assert not carries(SCHEMA["properties"]["plain"], "x-kubernetes-validations")
    assert not carries(SCHEMA["properties"]["plain"], "default")
    assert carries(SCHEMA["properties"]["ruled"], "default")
    assert not carries(SCHEMA["properties"]["ruled"], "x-kubernetes-embedded-resource")
    assert not carries({"type": "object", "allOf": [{"default": 1}]}, "default")  # not structural


def test_skipped_subtrees_still_report_below_rules_defaults_and_embedded_resources() -> None:
    obj: dict[str, Any] = {"plain": {"a": "x"}, "ruled": [{}, {"n": 12}], "map": {"k": {"kind": "K"}}}
    apply_defaults(SCHEMA, obj)
    assert obj["ruled"] == [{"n": 3}, {"n": 12}]
    errors = validate_rules(SCHEMA, obj)
    assert [(e.field, e.detail) for e in errors] == [("ruled[1]", "small")]
    embedded = validate_embedded_resources(SCHEMA, obj)
    assert [(e.field, e.type) for e in embedded] == [("map[k].apiVersion", "FieldValueRequired")]


def test_a_context_that_saw_old_self_is_not_reused_for_a_create() -> None:
    # The messageExpression reads oldSelf; on a create it must fall back to the static message
    # even right after an update bound oldSelf in the same thread.
    schema: dict[str, Any] = {"type": "object", "properties": {"n": {"type": "integer"}},
                              "x-kubernetes-validations": [{
                                  "rule": "self.n < 10", "message": "static",
                                  "messageExpression": "'was ' + string(oldSelf.n)"}]}
    updated = validate_rules(schema, {"n": 12}, {"n": 11})
    assert [e.detail for e in updated] == ["was 11"]
    created = validate_rules(schema, {"n": 12})
    assert [e.detail for e in created] == ["static"]
