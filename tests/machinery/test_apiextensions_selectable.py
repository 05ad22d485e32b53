"""CRD checks of selectableFields, with ValidateCustomResourceSelectableFields' paths and texts."""

from __future__ import annotations

from pilothouse.machinery.apiextensions import validate_selectable_fields

P = "spec.versions[0].selectableFields"
SCHEMA = {"type": "object", "properties": {
    "metadata": {"type": "object", "properties": {"name": {"type": "string"}}},
    "spec": {"type": "object", "properties": {
        "color": {"type": "string", "enum": ["red", "blue"]}, "size": {"type": "integer"},
        "on": {"type": "boolean"}, "ratio": {"type": "number"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}}}}}}


def _messages(*paths: str) -> list[str]:
    return [e.message() for e in validate_selectable_fields([{"jsonPath": p} for p in paths], SCHEMA, P)]


def test_valid() -> None:
    assert _messages(".spec.color", ".spec.size", ".spec.on", ".spec.labels.app") == []


def test_invalid() -> None:
    assert _messages(".spec.nope", "spec.color", ".spec.ratio", ".metadata.name", ".spec.color", ".spec['size']",
                     ".spec.color") == [
        f'{P}[0].jsonPath: Invalid value: ".spec.nope": is an invalid path: does not refer to a valid field',
        f'{P}[1].jsonPath: Invalid value: "spec.color": is an invalid path: expected [ or . but got: spec',
        f'{P}[2].jsonPath: Invalid value: ".spec.ratio": must point to a field of type string, boolean or integer. '
        "Enum string fields and strings with formats are allowed.",
        f'{P}[3].jsonPath: Invalid value: ".metadata.name": must not point to fields in metadata',
        f'{P}[5].jsonPath: Invalid value: ".spec[\'size\']": is an invalid path: array notation is not allowed',
        f'{P}[6].jsonPath: Duplicate value: ".spec.color"',
    ]


def test_required_and_too_many() -> None:
    assert [e.message() for e in validate_selectable_fields([{}], SCHEMA, P)] == [f"{P}[0].jsonPath: Required value"]
    many = [{"jsonPath": f".spec.labels.k{i}"} for i in range(9)]
    assert [e.message() for e in validate_selectable_fields(many, SCHEMA, P)] == [
        f"{P}: Too many: 9: must have at most 8 items"]
