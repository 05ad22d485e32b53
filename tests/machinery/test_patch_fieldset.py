"""FieldsV1 encoding of field sets (structured-merge-diff fieldpath/serialize.go)."""

from __future__ import annotations

import json
import random

import pytest

from pilothouse.machinery.patch import fieldset
from pilothouse.machinery.patch.fieldset import decode_fields_v1, encode_fields_v1, path_string

# TestSerializeV1GoldenData from serialize_test.go: decode then encode reproduces the bytes.
GOLDEN = [
    '{"f:aaa":{},"f:aab":{},"f:aac":{},"f:aad":{},"f:aae":{},"f:aaf":{},"k:{\\"name\\":\\"first\\"}":{},'
    '"k:{\\"name\\":\\"second\\"}":{},"k:{\\"port\\":443,\\"protocol\\":\\"tcp\\"}":{},'
    '"k:{\\"port\\":443,\\"protocol\\":\\"udp\\"}":{},"v:1":{},"v:2":{},"v:3":{},"v:\\"aa\\"":{},'
    '"v:\\"ab\\"":{},"v:true":{},"i:1":{},"i:2":{},"i:3":{},"i:4":{}}',
    '{"f:aaa":{"k:{\\"name\\":\\"second\\"}":{"v:3":{"f:aab":{}}},"v:3":{},"v:true":{}},'
    '"f:aab":{"f:aaa":{},"f:aaf":{"k:{\\"port\\":443,\\"protocol\\":\\"udp\\"}":'
    '{"k:{\\"port\\":443,\\"protocol\\":\\"tcp\\"}":{}}},"k:{\\"name\\":\\"first\\"}":{}},'
    '"v:1":{"f:aac":{"i:4":{}},"f:aaf":{},"k:{\\"port\\":443,\\"protocol\\":\\"tcp\\"}":{}},'
    '"i:3":{"f:aab":{"v:true":{"v:\\"aa\\"":{}}},"f:aaf":{},"i:1":{}}}',
]


def _compact(data: object) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


@pytest.mark.parametrize("text", GOLDEN)
def test_golden_round_trip(text: str) -> None:
    assert _compact(encode_fields_v1(decode_fields_v1(json.loads(text)))) == text


def _random_path(rng: random.Random) -> fieldset.Path:
    makers = [
        lambda: fieldset.field(rng.choice(["aaa", "aab", "spec", "containers"])),
        lambda: fieldset.key({"name": rng.choice(["first", "second"])}),
        lambda: fieldset.key({"port": 443, "protocol": rng.choice(["tcp", "udp"])}),
        lambda: fieldset.value(rng.choice([1, 2, "aa", True, 3.5])),
        lambda: fieldset.index(rng.randint(0, 4)),
    ]
    return tuple(rng.choice(makers)() for _ in range(rng.randint(1, 5)))


def test_random_sets_round_trip() -> None:
    rng = random.Random(1234)
    for _ in range(200):
        paths = {_random_path(rng) for _ in range(30)}
        encoded = encode_fields_v1(paths)
        assert decode_fields_v1(encoded) == paths
        # and the JSON text is stable across a second round trip
        assert encode_fields_v1(decode_fields_v1(json.loads(json.dumps(encoded)))) == encoded


def test_member_with_children_gets_dot() -> None:
    labels = (fieldset.field("metadata"), fieldset.field("labels"))
    paths = {labels, (*labels, fieldset.field("app"))}
    assert encode_fields_v1(paths) == {"f:metadata": {"f:labels": {".": {}, "f:app": {}}}}
    assert decode_fields_v1({"f:metadata": {"f:labels": {".": {}, "f:app": {}}}}) == paths
    # a node with children but no "." is not a member
    assert decode_fields_v1({"f:spec": {"f:replicas": {}}}) == {(fieldset.field("spec"), fieldset.field("replicas"))}


def test_unknown_element_types_are_dropped() -> None:
    assert _compact(encode_fields_v1(decode_fields_v1({"f:aaa": {}, "r:aab": {}}))) == '{"f:aaa":{}}'


def test_path_strings() -> None:
    path = (fieldset.field("spec"), fieldset.field("containers"), fieldset.key({"name": "nginx"}),
            fieldset.field("image"))
    assert path_string(path) == '.spec.containers[name="nginx"].image'
    ports = (fieldset.field("ports"), fieldset.key({"protocol": "TCP", "containerPort": 80}))
    assert path_string(ports) == '.ports[containerPort=80,protocol="TCP"]'
    assert path_string((fieldset.field("finalizers"), fieldset.value("a/b"))) == '.finalizers[="a/b"]'
    assert path_string((fieldset.field("args"), fieldset.index(2))) == ".args[2]"
