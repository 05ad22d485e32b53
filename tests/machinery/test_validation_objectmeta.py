"""metadata checks shared by every kind (apimachinery ValidateObjectMeta / ...Update)."""

from __future__ import annotations

from typing import Any

from pilothouse.machinery.errors import invalid
from pilothouse.machinery.validation.names import name_is_dns_label, name_is_dns_subdomain
from pilothouse.machinery.validation.objectmeta import validate_object_meta, validate_object_meta_update


def _fields(errors: list[Any]) -> list[tuple[str, str]]:
    return [(e.type, e.field) for e in errors]


def test_valid_metadata_passes() -> None:
    meta = {"name": "web", "namespace": "default", "labels": {"app": "web", "example.com/tier": ""},
            "annotations": {"Example.com/Note": "anything at all"}, "finalizers": ["example.com/cleanup"],
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1", "uid": "u",
                                 "controller": True}]}
    assert validate_object_meta(meta, True, name_is_dns_subdomain) == []


def test_name_is_required_unless_generate_name() -> None:
    errors = validate_object_meta({"namespace": "default"}, True, name_is_dns_subdomain)
    required = "metadata.name: Required value: name or generateName is required"
    assert [e.message() for e in errors] == [required]
    assert invalid("Pod", "", "", errors).message == f'Pod "" is invalid: {required}'
    errors = validate_object_meta({"generateName": "Web-", "name": "Web-x1"}, False, name_is_dns_subdomain)
    assert _fields(errors) == [("FieldValueInvalid", "metadata.generateName"),
                               ("FieldValueInvalid", "metadata.name")]
    assert errors[1].message().startswith(
        'metadata.name: Invalid value: "Web-x1": a lowercase RFC 1123 subdomain')


def test_namespace_required_or_forbidden_by_scope() -> None:
    assert [e.message() for e in validate_object_meta({"name": "a"}, True, name_is_dns_subdomain)] == [
        "metadata.namespace: Required value"]
    forbidden = validate_object_meta({"name": "a", "namespace": "x"}, False, name_is_dns_label)
    assert [e.message() for e in forbidden] == ["metadata.namespace: Forbidden: not allowed on this type"]
    bad = validate_object_meta({"name": "a", "namespace": "a.b"}, True, name_is_dns_subdomain)
    assert [e.message() for e in bad] == ['metadata.namespace: Invalid value: "a.b": must not contain dots']


def test_labels_annotations_and_size() -> None:
    meta = {"name": "a", "labels": {"bad key!": "ok", "k": "bad value"},
            "annotations": {"a/b/c": "x"}}
    errors = validate_object_meta(meta, False, name_is_dns_subdomain)
    assert _fields(errors) == [("FieldValueInvalid", "metadata.labels")] * 2 + [
        ("FieldValueInvalid", "metadata.annotations")]
    assert errors[0].value == "bad key!" and errors[1].value == "bad value"
    big = {"name": "a", "annotations": {"k": "x" * (256 * 1024)}}
    errors = validate_object_meta(big, False, name_is_dns_subdomain)
    assert [e.message() for e in errors] == [
        "metadata.annotations: Too long: may not be more than 262144 bytes"]


def test_owner_references_and_finalizers() -> None:
    meta = {"name": "a", "namespace": "d",
            "ownerReferences": [
                {"apiVersion": "", "kind": "", "name": "", "uid": ""},
                {"apiVersion": "v1", "kind": "Event", "name": "e", "uid": "1"},
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "r1", "uid": "2",
                 "controller": True},
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "r2", "uid": "3",
                 "controller": True}],
            "finalizers": ["orphan", "foregroundDeletion", "custom"]}
    messages = [e.message() for e in validate_object_meta(meta, True, name_is_dns_subdomain)]
    assert 'metadata.ownerReferences.apiVersion: Invalid value: "": version must not be empty' in messages
    assert 'metadata.ownerReferences.uid: Invalid value: "": must not be empty' in messages
    assert any("/v1, Kind=Event is disallowed from being an owner" in m for m in messages)
    assert any('Only one reference can have Controller set to true. Found "true" in references for '
               "ReplicaSet/r1 and ReplicaSet/r2" in m for m in messages)
    assert any("finalizer orphan and foregroundDeletion cannot be both set" in m for m in messages)
    assert ('metadata.finalizers[2]: Invalid value: "custom": name is neither a standard finalizer name nor '
            "is it fully qualified") in messages


def test_update_keeps_identity_immutable() -> None:
    old = {"name": "a", "namespace": "d", "uid": "u1", "resourceVersion": "5", "generation": 2,
           "creationTimestamp": "2024-01-01T00:00:00Z"}
    same = dict(old)
    assert validate_object_meta_update(same, old) == []
    changed = {**old, "name": "b", "uid": "u2", "generation": 1, "creationTimestamp": "2025-01-01T00:00:00Z"}
    messages = [e.message() for e in validate_object_meta_update(changed, old)]
    assert messages == [
        "metadata.generation: Invalid value: 1: must not be decremented",
        'metadata.name: Invalid value: "b": field is immutable',
        'metadata.uid: Invalid value: "u2": field is immutable',
        'metadata.creationTimestamp: Invalid value: "2025-01-01T00:00:00Z": field is immutable',
    ]
    no_rv = {k: v for k, v in old.items() if k != "resourceVersion"}
    assert [e.field for e in validate_object_meta_update(no_rv, old)] == ["metadata.resourceVersion"]
    assert validate_object_meta_update(no_rv, old, require_resource_version=False) == []


def test_no_new_finalizers_while_deleting() -> None:
    old = {"name": "a", "resourceVersion": "1", "deletionTimestamp": "2024-01-01T00:00:00Z",
           "deletionGracePeriodSeconds": 0, "finalizers": ["example.com/a"]}
    new = {**old, "finalizers": ["example.com/a", "example.com/b"]}
    messages = [e.message() for e in validate_object_meta_update(new, old)]
    assert messages == ['metadata.finalizers: Forbidden: no new finalizers can be added if the object is '
                        'being deleted, found new finalizers []string{"example.com/b"}']
    removing = {**old, "finalizers": []}
    assert validate_object_meta_update(removing, old) == []
    # A pointer field: 0 and absent differ.
    unset = {**old, "deletionGracePeriodSeconds": None}
    errors = validate_object_meta_update(unset, old)
    assert [e.field for e in errors] == ["metadata.deletionGracePeriodSeconds"]
