"""A patch cannot build an object deeper than a request body may be (issue 15).

Bodies are bounded in depth at the door (machinery/bodyshape.py), but a JSON patch builds its result
from the stored object: an ``add`` of a deep value at a deep path, or ``copy`` of a subtree into
itself a few times (each copy doubles the depth). kube-apiserver decodes the patched object and
answers a too-deep one with 422 Invalid on the field ``patch``; so do we, and the stored object is
unchanged. A custom resource with ``x-kubernetes-preserve-unknown-fields`` keeps whatever depth it is
sent, so it is where a deep object can live at all.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, config

from pilothouse.machinery.bodyshape import MAX_DEPTH
from tests.conftest import ServerProcess

GROUP = "depth.example.com"
JSON_PATCH = "application/json-patch+json"  # the client would send a list as a merge patch
CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": f"nests.{GROUP}"},
    "spec": {"group": GROUP, "scope": "Namespaced",
             "names": {"plural": "nests", "singular": "nest", "kind": "Nest"},
             "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                 "type": "object", "properties": {"spec": {"type": "object",
                                                           "x-kubernetes-preserve-unknown-fields": True}}}}}]},
}


def nested(levels: int) -> Any:
    value: Any = "leaf"
    for _ in range(levels):
        value = {"n": value}
    return value


def depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


@pytest.fixture(scope="module")
def nests(server: ServerProcess) -> Iterator[client.CustomObjectsApi]:
    server.kubectl("apply", "-f", "-", input=json.dumps(CRD))
    server.kubectl("wait", "--for", "condition=established", "--timeout=20s", f"crd/nests.{GROUP}")
    api = config.new_client_from_config(config_file=str(server.kubeconfig))
    yield client.CustomObjectsApi(api)
    api.close()


def create(nests: client.CustomObjectsApi, name: str, spec: Any) -> None:
    nests.create_namespaced_custom_object(GROUP, "v1", "default", "nests", {
        "apiVersion": f"{GROUP}/v1", "kind": "Nest", "metadata": {"name": name}, "spec": spec})


def test_json_patch_adding_past_the_limit_is_422_on_the_field_patch(server: ServerProcess,
                                                                     nests: client.CustomObjectsApi) -> None:
    create(nests, "add", nested(MAX_DEPTH // 2))
    # The patch itself is shallow enough for the door (MAX_DEPTH - 10 levels), and so is the path, but
    # the value lands at the end of the path: the result is far past the limit.
    path = "/spec" + "/n" * (MAX_DEPTH // 2 - 1)
    patch = [{"op": "add", "path": path + "/deep", "value": nested(MAX_DEPTH - 10)}]
    result = server.kubectl("patch", f"nests.{GROUP}", "add", "--type", "json", "-p", json.dumps(patch),
                            check=False)
    assert result.returncode != 0
    assert "is invalid: patch: Invalid value" in result.stderr and "exceeded max depth" in result.stderr, \
        result.stderr[-500:]
    with pytest.raises(client.ApiException) as caught:
        nests.patch_namespaced_custom_object(GROUP, "v1", "default", "nests", "add", patch, _content_type=JSON_PATCH)
    assert caught.value.status == 422
    status = json.loads(caught.value.body)
    assert status["reason"] == "Invalid"
    assert [c["field"] for c in status["details"]["causes"]] == ["patch"]
    assert depth(nests.get_namespaced_custom_object(GROUP, "v1", "default", "nests", "add")["spec"]) \
        == MAX_DEPTH // 2  # unchanged


def test_json_patch_copying_a_subtree_into_itself_is_422(server: ServerProcess,
                                                         nests: client.CustomObjectsApi) -> None:
    create(nests, "copy", {"a": nested(100)})
    # Each copy puts the whole subtree under its own innermost object, doubling its depth: 100 → 200 →
    # 400 → 800 levels; Python's own recursion gives out somewhere on the way, which must be the same
    # 422, never a 500.
    patch, inner = [], "/n" * 99
    for _ in range(3):
        patch.append({"op": "copy", "from": "/spec/a", "path": f"/spec/a{inner}/b"})
        inner = f"{inner}/b{inner}"
    with pytest.raises(client.ApiException) as caught:
        nests.patch_namespaced_custom_object(GROUP, "v1", "default", "nests", "copy", patch,
                                             _content_type=JSON_PATCH)
    assert caught.value.status == 422, caught.value.body
    assert json.loads(caught.value.body)["details"]["causes"][0]["field"] == "patch"
    # One copy stays within the limit and is stored.
    one = nests.patch_namespaced_custom_object(GROUP, "v1", "default", "nests", "copy",
                                               [{"op": "copy", "from": "/spec/a", "path": "/spec/b"}],
                                               _content_type=JSON_PATCH)
    assert depth(one["spec"]) == 101


def test_merge_and_apply_patches_at_the_limit_still_work(server: ServerProcess,
                                                         nests: client.CustomObjectsApi) -> None:
    create(nests, "merge", {"x": 1})
    # A patch body is checked at the door; one just inside it produces an object inside the limit.
    inside = {"spec": {"y": nested(MAX_DEPTH - 4)}}
    server.kubectl("patch", f"nests.{GROUP}", "merge", "--type", "merge", "-p", json.dumps(inside))
    assert depth(nests.get_namespaced_custom_object(GROUP, "v1", "default", "nests", "merge")["spec"]) \
        == MAX_DEPTH - 3
    too_deep = {"spec": {"y": nested(MAX_DEPTH + 1)}}
    result = server.kubectl("patch", f"nests.{GROUP}", "merge", "--type", "merge", "-p", json.dumps(too_deep),
                            check=False)
    assert result.returncode != 0 and "exceeded max depth" in result.stderr, result.stderr[-300:]
