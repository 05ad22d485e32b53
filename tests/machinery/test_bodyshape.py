"""``bodyshape.settled`` and ``shallow``: the C-scan answers that let a body skip the walk say only
what the walk would say (never "settled" for a body with a duplicate member or too deep)."""

from __future__ import annotations

import orjson
import pytest

from pilothouse.machinery.bodyshape import MAX_DEPTH, TooDeep, duplicate_fields, members, settled, shallow

POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "web-", "labels": {"app": "web"}},
       "spec": {"containers": [{"name": "c", "image": "registry.local:5000/web:1.0", "args": ["a\"b", "é"]}]}}


@pytest.mark.parametrize("raw", [
    orjson.dumps(POD),
    orjson.dumps(POD) + b"\n",  # client-go's encoder ends the body with a newline
])
def test_a_body_as_orjson_writes_it_is_settled(raw: bytes) -> None:
    value = orjson.loads(raw)
    assert settled(raw, value)
    assert duplicate_fields(raw, value, members(value)) == []  # what the walk says too


@pytest.mark.parametrize("raw", [
    b'{"metadata":{"name":"a","name":"a"}}',  # a duplicate, compact: orjson writes one member
    b'{"a":1,"b":{"c":2,"c":3}}',
    b'{"a": 1}',  # not orjson's layout: walk it (no duplicate here, the walk says so)
    b'{"a":1}\n\n',
    b'{"a":1.0e3}',
    b'{"a":"\\u00e9"}',
    b'{"a":' + b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1) + b"}",
])
def test_anything_else_is_left_to_the_walk(raw: bytes) -> None:
    assert not settled(raw, orjson.loads(raw))


def test_shallow_is_a_bound_on_depth() -> None:
    at_limit = b"[" * MAX_DEPTH + b"]" * MAX_DEPTH
    assert shallow(at_limit)
    members(orjson.loads(at_limit))  # the walk agrees: not too deep
    too_deep = b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1)
    assert not shallow(too_deep)
    with pytest.raises(TooDeep):
        members(orjson.loads(too_deep))
    # Brackets in strings only make it say "not known", never "shallow" for a deep body.
    assert not shallow(b'{"a":"' + b"{" * (MAX_DEPTH + 1) + b'"}')
