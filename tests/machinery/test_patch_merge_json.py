"""JSON merge patch (RFC 7386) and JSON patch (RFC 6902) with Kubernetes' error codes."""

from __future__ import annotations

from typing import Any

import pytest

from pilothouse.machinery.errors import StatusError
from pilothouse.machinery.patch import json_patch, merge_patch

# RFC 7386 appendix A examples.
RFC7386 = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("original", "patch", "expected"), RFC7386)
def test_rfc7386_examples(original: Any, patch: Any, expected: Any) -> None:
    assert merge_patch(original, patch) == expected


def test_merge_patch_does_not_modify_inputs_and_does_label_annotate() -> None:
    obj = {"metadata": {"name": "x", "labels": {"a": "1", "b": "2"}}}
    # kubectl label x a- c=3 ; kubectl annotate x note=hi
    patch = {"metadata": {"labels": {"a": None, "c": "3"}, "annotations": {"note": "hi"}}}
    result = merge_patch(obj, patch)
    assert result == {"metadata": {"name": "x", "labels": {"b": "2", "c": "3"}, "annotations": {"note": "hi"}}}
    assert obj == {"metadata": {"name": "x", "labels": {"a": "1", "b": "2"}}}


def test_json_patch_operations() -> None:
    obj = {"spec": {"containers": [{"name": "a", "image": "a:1"}], "replicas": 1}}
    ops = [
        {"op": "replace", "path": "/spec/containers/0/image", "value": "a:2"},
        {"op": "add", "path": "/spec/containers/-", "value": {"name": "b"}},
        {"op": "remove", "path": "/spec/replicas"},
        {"op": "add", "path": "/metadata", "value": {"labels": {"x/y": "z"}}},
        {"op": "copy", "from": "/metadata/labels/x~1y", "path": "/metadata/note"},
        {"op": "move", "from": "/metadata/note", "path": "/metadata/moved"},
        {"op": "test", "path": "/metadata/moved", "value": "z"},
    ]
    result = json_patch(obj, ops)
    assert result == {"spec": {"containers": [{"name": "a", "image": "a:2"}, {"name": "b"}]},
                      "metadata": {"labels": {"x/y": "z"}, "moved": "z"}}
    assert obj["spec"]["replicas"] == 1


@pytest.mark.parametrize("ops", [
    [{"op": "test", "path": "/a", "value": 2}],
    [{"op": "replace", "path": "/missing/deep", "value": 1}],
    [{"op": "remove", "path": "/nope"}],
    [{"op": "frobnicate", "path": "/a"}],
    [{"op": "add", "path": "invalid", "value": 1}],
])
def test_json_patch_that_cannot_apply_is_422(ops: list[dict[str, Any]]) -> None:
    with pytest.raises(StatusError) as info:
        json_patch({"a": 1}, ops)
    assert info.value.code == 422
    assert info.value.reason == "Invalid"
    assert info.value.message == "the server rejected our request due to an error in our request"


@pytest.mark.parametrize(("body", "message"), [
    ({"op": "add", "path": "/a", "value": 1}, "json: cannot unmarshal object into Go value of type jsonpatch.Patch"),
    (["x"], "json: cannot unmarshal string into Go value of type jsonpatch.Operation"),
])
def test_malformed_json_patch_is_400(body: Any, message: str) -> None:
    with pytest.raises(StatusError) as info:
        json_patch({"a": 1}, body)
    assert info.value.code == 400
    assert info.value.message == message


def test_too_many_operations_is_413() -> None:
    ops = [{"op": "test", "path": "/a", "value": 1}] * 10001
    with pytest.raises(StatusError) as info:
        json_patch({"a": 1}, ops)
    assert info.value.code == 413
    assert "maximum operations in a JSON patch is 10000, got 10001" in info.value.message
