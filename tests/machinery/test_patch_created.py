"""The direct create path of track_update gives exactly what the general comparison path gives.

Objects: every literal Kubernetes object in tests/machinery, the protobuf fixtures, a sample of
every built-in kind before and after defaulting, hand-built variations (multi-container pods,
deployments, services, nodes with status, metadata with labels/finalizers/ownerReferences) and
seeded random mutations of all of them (nulls, empties, duplicates, booleans and numbers in
lists) that reach the comparison's edge cases.
"""

from __future__ import annotations

import ast
import copy
import json
import random
from pathlib import Path
from typing import Any

import pytest

from pilothouse.machinery.kinds import BUILTIN_RESOURCES
from pilothouse.machinery.patch import created, managed, track_update
from pilothouse.machinery.protobuf import decode_kubernetes_protobuf
from pilothouse.machinery.schema import schema_for_kind

HERE = Path(__file__).parent
T0 = "2024-05-01T10:00:00Z"
_RESOURCES = {(r.api_version, r.kind): r for r in BUILTIN_RESOURCES}


def _literal_objects() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for path in sorted(HERE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Dict):
                continue
            try:
                value = ast.literal_eval(node)
            except (ValueError, SyntaxError, TypeError):
                continue
            if isinstance(value, dict) and "kind" in value and isinstance(value.get("apiVersion"), str):
                found.append(value)
    return found


def _fixture_objects() -> list[dict[str, Any]]:
    out = []
    for path in sorted((HERE / "protobuf_fixtures").glob("*.pb")):
        obj = decode_kubernetes_protobuf(path.read_bytes())
        if isinstance(obj, dict) and "kind" in obj:
            out.append(obj)
    return out


def _container(i: int) -> dict[str, Any]:
    return {"name": f"c{i}", "image": f"img:{i}", "ports": [{"containerPort": 80 + i, "protocol": "TCP"},
                                                            {"containerPort": 9000 + i, "name": f"m{i}"}],
            "env": [{"name": "A", "value": str(i)},
                    {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}}],
            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            "resources": {"requests": {"cpu": "100m"}, "limits": {"memory": "1Gi"}},
            "args": ["--a", "--b", "--a"], "securityContext": {"capabilities": {"add": ["NET_ADMIN"]}}}


def _meta(name: str) -> dict[str, Any]:
    return {"name": name, "namespace": "ns", "labels": {"app": name, "tier": "web"},
            "annotations": {"a/b": "c", "x": ""}, "finalizers": ["f/one", "f/two", "f/one"],
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "u1",
                                 "controller": True, "blockOwnerDeletion": True}],
            "generateName": "x-", "uid": "abc", "resourceVersion": "5", "creationTimestamp": T0,
            "generation": 3}


def _pod_spec(n: int) -> dict[str, Any]:
    return {"containers": [_container(i) for i in range(n)], "initContainers": [_container(9)],
            "volumes": [{"name": "data", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "cm"}},
                        {"name": "sec", "secret": {"secretName": "s", "items": [{"key": "a", "path": "b"}]}}],
            "tolerations": [{"key": "k", "operator": "Exists"}, {"key": "k", "operator": "Exists"}],
            "nodeSelector": {"disk": "ssd"}, "imagePullSecrets": [{"name": "reg"}],
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "a", "operator": "In", "values": ["1"]}]}]}}},
            "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}]}


def _generated() -> list[dict[str, Any]]:
    pods = [{"apiVersion": "v1", "kind": "Pod", "metadata": _meta(f"p{n}"), "spec": _pod_spec(n),
             "status": {"phase": "Running", "podIPs": [{"ip": "10.0.0.1"}]}} for n in (1, 3)]
    template = {"metadata": {"labels": {"app": "web"}}, "spec": _pod_spec(2)}
    return [*pods,
            {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta("d"),
             "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": template,
                      "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%"}}}},
            {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": _meta("s"),
             "spec": {"serviceName": "s", "selector": {"matchLabels": {"app": "web"}}, "template": template,
                      "volumeClaimTemplates": [{"metadata": {"name": "v"}, "spec": {"accessModes": ["RWO"]}}]}},
            {"apiVersion": "v1", "kind": "Service", "metadata": _meta("svc"),
             "spec": {"type": "NodePort", "selector": {"app": "web"}, "clusterIPs": ["10.0.0.1"],
                      "ports": [{"port": 80, "protocol": "TCP", "targetPort": "http"},
                                {"port": 80, "protocol": "UDP", "targetPort": 53}]}},
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta("cm"),
             "data": {"a": "1", "b": ""}, "binaryData": {"c": "AAE="}},
            {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1", "labels": {"zone": "a"}},
             "spec": {"taints": [{"key": "t", "effect": "NoSchedule"}], "podCIDRs": ["10.1.0.0/24"]},
             "status": {"capacity": {"cpu": "4"}, "addresses": [{"type": "InternalIP", "address": "1.2.3.4"}],
                        "conditions": [{"type": "Ready", "status": "True"}]}},
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"},
             "spec": {"finalizers": ["kubernetes"]}},
            {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "labels": {"a": "b"}},
             "spec": {"list": [1, 2, {"x": None}], "map": {"deep": {"er": True}}, "none": None}}]


def _samples() -> list[dict[str, Any]]:
    out = []
    for resource in BUILTIN_RESOURCES:
        obj: dict[str, Any] = {"apiVersion": resource.api_version, "kind": resource.kind,
                               "metadata": {"name": "x", "labels": {"a": "b"}}}
        if resource.kind in ("Pod",):
            obj["spec"] = _pod_spec(2)
        elif resource.kind in ("Deployment", "ReplicaSet", "DaemonSet", "Job"):
            obj["spec"] = {"template": {"metadata": {"labels": {"a": "b"}}, "spec": _pod_spec(1)}}
        out.append(obj)
    return out


_MUTATIONS = [None, {}, [], 0, 1, 1.0, True, False, "", "s", [None], [True, 1, 1.0, "1"],
              {"k": None}, {"name": None}, [{"name": "a"}, {"name": "a"}, {}, {"name": None}]]


def _positions(data: Any, out: list[tuple[Any, Any]]) -> None:
    if isinstance(data, dict):
        for name, child in data.items():
            out.append((data, name))
            _positions(child, out)
    elif isinstance(data, list):
        for position, child in enumerate(data):
            out.append((data, position))
            _positions(child, out)


def _mutated(obj: dict[str, Any], rng: random.Random, count: int) -> list[dict[str, Any]]:
    variants = []
    for _ in range(count):
        clone = copy.deepcopy(obj)
        spots: list[tuple[Any, Any]] = []
        _positions(clone, spots)
        for container, slot in rng.sample(spots, min(3, len(spots))):
            try:
                container[slot] = copy.deepcopy(rng.choice(_MUTATIONS))
            except (IndexError, KeyError):
                continue
        if isinstance(clone.get("metadata"), dict):
            variants.append(clone)
    return variants


def _all_objects() -> list[dict[str, Any]]:
    base = [*_literal_objects(), *_fixture_objects(), *_generated(), *_samples()]
    defaulted = []
    for obj in base:
        resource = _RESOURCES.get((obj.get("apiVersion"), obj.get("kind")))
        if resource is not None:
            clone = copy.deepcopy(obj)
            try:
                resource.strategy.default(clone)
            except (AttributeError, KeyError, TypeError, ValueError):
                continue
            defaulted.append(clone)
    rng = random.Random(1234)
    mutated = [variant for obj in base + defaulted for variant in _mutated(obj, rng, 4)]
    # track_update leaves objects without a metadata map alone.
    return [obj for obj in base + defaulted + mutated if isinstance(obj.get("metadata"), dict)]


def _schema(obj: dict[str, Any]) -> Any:
    group, _, version = str(obj.get("apiVersion", "")).rpartition("/")
    return schema_for_kind(group, version, str(obj.get("kind", "")))


def _general(obj: dict[str, Any], schema: Any) -> dict[str, Any]:
    managers = managed._decode_live_or_new(None, obj, "")
    managed._track_general(None, obj, managers, "kubectl-create", "Update", "v1", T0, schema, "")
    return obj


OBJECTS = _all_objects()


def test_the_corpus_is_broad() -> None:
    assert len(OBJECTS) > 300
    kinds = {str(obj.get("kind")) for obj in OBJECTS}
    assert {"Pod", "Deployment", "Service", "ConfigMap", "Node", "StatefulSet", "Secret"} <= kinds


@pytest.mark.parametrize("with_schema", [True, False], ids=["typed", "untyped"])
def test_create_path_matches_general_path(with_schema: bool) -> None:
    mismatches = []
    for number, obj in enumerate(OBJECTS):
        schema = _schema(obj) if with_schema else None
        fast = copy.deepcopy(obj)
        track_update(None, fast, "kubectl-create", "Update", "v1", T0, schema)
        slow = _general(copy.deepcopy(obj), schema)
        # Byte-for-byte, key order included: kubectl prints managedFields verbatim.
        if json.dumps(fast) != json.dumps(slow):
            mismatches.append(number)
    assert not mismatches, [OBJECTS[i] for i in mismatches[:3]]


def test_create_path_records_expected_fields() -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "b"}},
           "spec": {"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80}]}]},
           "status": {"phase": "Pending"}}
    track_update(None, pod, "kubectl-create", "Update", "v1", T0, schema_for_kind("", "v1", "Pod"))
    assert pod["metadata"]["managedFields"] == [{
        "manager": "kubectl-create", "operation": "Update", "apiVersion": "v1", "time": T0,
        "fieldsType": "FieldsV1",
        "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:a": {}}},
                     "f:spec": {"f:containers": {'k:{"name":"c"}': {
                         ".": {}, "f:image": {}, "f:name": {},
                         "f:ports": {".": {}, 'k:{"containerPort":80}': {
                             ".": {}, "f:containerPort": {}}}}}}}}]


def test_client_managed_fields_and_reset_still_work() -> None:
    schema = schema_for_kind("", "v1", "ConfigMap")
    given = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "managedFields": [
        {"manager": "other", "operation": "Update", "apiVersion": "v1", "fieldsType": "FieldsV1",
         "fieldsV1": {"f:data": {"f:a": {}, "f:z": {}}}}]}, "data": {"a": "1"}}
    fast = copy.deepcopy(given)
    track_update(None, fast, "me", "Update", "v1", T0, schema)
    assert [e["manager"] for e in fast["metadata"]["managedFields"]] == ["other", "me"]
    assert fast["metadata"]["managedFields"][0]["fieldsV1"] == {"f:data": {"f:z": {}}}
    reset = copy.deepcopy(given)
    reset["metadata"]["managedFields"] = [{}]
    track_update(None, reset, "me", "Update", "v1", T0, schema)
    assert [e["manager"] for e in reset["metadata"]["managedFields"]] == ["me"]
    assert "managedFields" not in reset["metadata"]["managedFields"][0]["fieldsV1"].get("f:metadata", {})


def test_remembered_subtrees_give_the_same_answer_and_fresh_copies() -> None:
    """The second create of an object finds its spec in the memo (created._SUBTREE_MEMO): the
    answer is byte-for-byte the walk's, and no two objects share (or can corrupt) one FieldsV1."""
    created._SUBTREE_MEMO.clear()
    sample = [obj for obj in OBJECTS if isinstance(obj.get("spec"), dict)][:150]
    first = []
    for obj in sample:
        fast = copy.deepcopy(obj)
        track_update(None, fast, "kubectl-create", "Update", "v1", T0, _schema(obj))
        first.append(fast)
    assert created._SUBTREE_MEMO, "specs were remembered"
    for obj in first:  # scribble over every answer handed out so far
        for entry in obj["metadata"].get("managedFields") or []:
            entry["fieldsV1"].get("f:spec", {})["f:scribbled"] = {}
    for obj in sample:
        again = copy.deepcopy(obj)
        track_update(None, again, "kubectl-create", "Update", "v1", T0, _schema(obj))
        slow = _general(copy.deepcopy(obj), _schema(obj))
        assert json.dumps(again) == json.dumps(slow)
