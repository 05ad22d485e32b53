"""Updates done on the FieldsV1 dicts (patch.owned) give exactly what the set-based path gives.

Chains of writes over the objects of test_patch_created: create, then random mutations by
several managers on the main resource and on ``/status``, compared byte for byte with the
general path; plus non-canonical, client-written managedFields that must take the general path.
"""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import pytest
from test_patch_created import OBJECTS, _mutated, _schema

from pilothouse.machinery.patch import decode_fields_v1, encode_fields_v1, managed, owned, track_update
from pilothouse.machinery.schema import schema_for_kind

T = [f"2024-05-01T10:00:0{i}Z" for i in range(10)]
MANAGERS = ["kubectl-create", "kubelet", "kubectl-edit", "kube-controller-manager"]


def _general(live: Any, new: dict[str, Any], manager: str, now: str, schema: Any, sub: str) -> dict[str, Any]:
    managers = managed._decode_live_or_new(live, new, sub)
    managed._track_general(live, new, managers, manager, "Update", "v1", now, schema, sub)
    return new


def _step(live: Any, new: dict[str, Any], manager: str, now: str, schema: Any, sub: str) -> tuple[str, str]:
    # Garbage the client wrote (a list as a time...) fails the same way on both paths.
    fast: Any = copy.deepcopy(new)
    try:
        track_update(live, fast, manager, "Update", "v1", now, schema, sub)
    except TypeError as error:
        fast = repr(error)
    try:
        slow: Any = _general(copy.deepcopy(live), copy.deepcopy(new), manager, now, schema, sub)
    except TypeError as error:
        slow = repr(error)
    return json.dumps(fast), json.dumps(slow)


@pytest.mark.parametrize("with_schema", [True, False], ids=["typed", "untyped"])
def test_update_chains_match_general_path(with_schema: bool) -> None:
    rng = random.Random(99)
    mismatches = []
    for number, obj in enumerate(OBJECTS[::2]):
        schema = _schema(obj) if with_schema else None
        live = copy.deepcopy(obj)
        live["metadata"].pop("managedFields", None)
        track_update(None, live, MANAGERS[0], "Update", "v1", T[0], schema)
        for step in range(1, 4):
            variants = _mutated(live, rng, 1) if rng.random() < 0.8 else []
            new = variants[0] if variants else copy.deepcopy(live)
            sub = rng.choice(["", "", "status"])
            if rng.random() < 0.3:
                new["metadata"].pop("managedFields", None)  # as carry_system_metadata fills in
            fast, slow = _step(live, new, rng.choice(MANAGERS), T[step], schema, sub)
            if fast != slow:
                mismatches.append((number, step, fast, slow))
                break
            if not isinstance(json.loads(fast), dict):
                break
            live = json.loads(fast)
    assert not mismatches, mismatches[:2]


def test_pod_status_update_only_touches_the_status_entry() -> None:
    schema = schema_for_kind("", "v1", "Pod")
    pod: dict[str, Any] = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "b"}},
                           "spec": {"containers": [{"name": "c", "image": "i"}]}}
    track_update(None, pod, "kubectl-create", "Update", "v1", T[0], schema)
    created = copy.deepcopy(pod["metadata"]["managedFields"][0])
    for step, phase in enumerate(["Pending", "Running"], start=1):
        new = copy.deepcopy(pod)
        new["status"] = {"phase": phase, "podIP": "10.0.0.1"}
        fast, slow = _step(pod, new, "kubelet", T[step], schema, "status")
        assert fast == slow
        pod = json.loads(fast)
    entries = pod["metadata"]["managedFields"]
    assert entries[0] == created
    assert entries[1]["subresource"] == "status" and entries[1]["time"] == T[2]
    assert entries[1]["fieldsV1"] == {"f:status": {".": {}, "f:phase": {}, "f:podIP": {}}}


def test_non_canonical_entries_take_the_general_path() -> None:
    schema = schema_for_kind("", "v1", "ConfigMap")
    odd = [
        {"f:data": {".": {}, "f:b": {}, "f:a": {}}},  # out of order
        {"f:data": {"f:a": {}, ".": {}}},  # "." after children
        {".": {}, "f:data": {}},  # a root marker
        {"f:data": {".": {}}},  # "." without children
        {"f:data": {"f:a": {}}, "x:weird": {}},  # unknown element type
        {"f:data": {'k:{"b":1,"a":2}': {}}},  # unsorted key fields
        {"f:data": {"v:1": {}, "v:1.0": {}}},  # equal elements
        {"f:data": {"f:a": None}},  # not an object
    ]
    for fields_v1 in odd:
        assert not owned.is_canonical_root(fields_v1)
        live = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "managedFields": [
            {"manager": "x", "operation": "Update", "apiVersion": "v1", "fieldsType": "FieldsV1",
             "fieldsV1": fields_v1}]}, "data": {"a": "1", "b": "2"}}
        new = copy.deepcopy(live)
        new["data"]["a"] = "3"
        fast, slow = _step(live, new, "me", T[1], schema, "")
        assert fast == slow
    canonical = encode_fields_v1(decode_fields_v1({"f:data": {"f:b": {}, ".": {}, "f:a": {}}}))
    assert owned.is_canonical_root(canonical)


def test_remove_and_union_on_dicts() -> None:
    base = {"f:metadata": {"f:labels": {".": {}, "f:a": {}, "f:b": {}}}, "f:spec": {"f:x": {}}}
    paths = decode_fields_v1(base)
    for chosen in (set(), {(("f", "spec"), ("f", "x"))},
                   {(("f", "metadata"), ("f", "labels"))},
                   {(("f", "metadata"), ("f", "labels"), ("f", "a")), (("f", "spec"), ("f", "y"))}):
        assert owned.remove_paths(base, owned.trie(chosen)) == encode_fields_v1(paths - chosen)
        assert json.dumps(owned.union_paths(base, owned.trie(chosen))) == \
            json.dumps(encode_fields_v1(paths | chosen))
    untouched = owned.remove_paths(base, owned.trie({(("f", "spec"), ("f", "x"))}))
    assert untouched["f:metadata"] is base["f:metadata"]  # shared, not copied
