"""Strategic merge patch: cases ported from apimachinery's strategicpatch/patch_test.go, plus the
patches kubectl really sends (apply, edit, cordon, rollout restart) against the official schemas."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from pilothouse.machinery.errors import StatusError
from pilothouse.machinery.patch import strategic_merge_patch
from pilothouse.machinery.schema import schema_for_kind

# The MergeItem test struct of patch_test.go, as a (self-referencing) JSON schema.
MERGE_ITEM: dict[str, Any] = {"type": "object", "properties": {}}
RETAIN_ITEM: dict[str, Any] = {"type": "object", "properties": {}}
_STR = {"type": "string"}
MERGE_ITEM["properties"].update({
    "name": _STR, "value": _STR, "other": _STR,
    "mergingList": {"type": "array", "items": MERGE_ITEM, "x-kubernetes-patch-strategy": "merge",
                    "x-kubernetes-patch-merge-key": "name"},
    "nonMergingList": {"type": "array", "items": MERGE_ITEM},
    "mergingIntList": {"type": "array", "items": {"type": "integer"}, "x-kubernetes-patch-strategy": "merge"},
    "nonMergingIntList": {"type": "array", "items": {"type": "integer"}},
    "mergeItemPtr": {"allOf": [MERGE_ITEM], "x-kubernetes-patch-strategy": "merge",
                     "x-kubernetes-patch-merge-key": "name"},
    "simpleMap": {"type": "object", "additionalProperties": _STR},
    "replacingItem": {"type": "object", "x-kubernetes-patch-strategy": "replace"},
    "retainKeysMap": {"allOf": [RETAIN_ITEM], "x-kubernetes-patch-strategy": "retainKeys"},
    "retainKeysMergingList": {"type": "array", "items": MERGE_ITEM, "x-kubernetes-patch-merge-key": "name",
                              "x-kubernetes-patch-strategy": "merge,retainKeys"},
})
RETAIN_ITEM["properties"].update({
    "name": _STR, "value": _STR, "other": _STR,
    "simpleMap": {"type": "object", "additionalProperties": _STR},
    "mergingIntList": {"type": "array", "items": {"type": "integer"}, "x-kubernetes-patch-strategy": "merge"},
    "mergingList": {"type": "array", "items": MERGE_ITEM, "x-kubernetes-patch-strategy": "merge",
                    "x-kubernetes-patch-merge-key": "name"},
    "nonMergingList": {"type": "array", "items": MERGE_ITEM},
})

# Two-way cases: patch applied to original gives modified (customStrategicMergePatchTestCaseData
# and the twoWay half of createStrategicMergePatchTestCaseData).
TWO_WAY = yaml.safe_load("""
- description: unique scalars when merging lists
  original: {mergingIntList: [1, 2]}
  patch: {mergingIntList: [2, 3]}
  modified: {mergingIntList: [1, 2, 3]}
- description: delete map from nested map
  original: {simpleMap: {key1: "1", key2: "1"}}
  patch: {simpleMap: {$patch: delete}}
  modified: {simpleMap: {}}
- description: delete all items from merging list
  original: {mergingList: [{name: "1"}, {name: "2"}]}
  patch: {mergingList: [{$patch: replace}]}
  modified: {mergingList: []}
- description: merge empty merging lists
  original: {mergingList: []}
  patch: {mergingList: []}
  modified: {mergingList: []}
- description: delete all keys from map
  original: {name: "1", value: "1"}
  patch: {$patch: replace}
  modified: {}
- description: add key and delete all keys from map
  original: {name: "1", value: "1"}
  patch: {other: a, $patch: replace}
  modified: {other: a}
- description: delete all duplicate entries in a merging list
  original: {mergingList: [{name: "1"}, {name: "1"}, {name: "2", value: a}, {name: "3"}, {name: "3"}]}
  patch: {mergingList: [{name: "1", $patch: delete}, {name: "3", $patch: delete}]}
  modified: {mergingList: [{name: "2", value: a}]}
- description: retainKeys map can add a field when no retainKeys directive present
  original: {retainKeysMap: {name: foo}}
  patch: {retainKeysMap: {value: bar}}
  modified: {retainKeysMap: {name: foo, value: bar}}
- description: retainKeys map can delete a field when no retainKeys directive present
  original: {retainKeysMap: {name: foo, value: a}}
  patch: {retainKeysMap: {value: null}}
  modified: {retainKeysMap: {name: foo}}
- description: retainKeys map merge an empty map
  original: {retainKeysMap: {name: foo, value: a}}
  patch: {retainKeysMap: {}}
  modified: {retainKeysMap: {name: foo, value: a}}
- description: retainKeys list can change a field when no retainKeys directive present
  original: {retainKeysMergingList: [{name: bar}, {name: foo, value: a}]}
  patch: {retainKeysMergingList: [{name: foo, value: b}]}
  modified: {retainKeysMergingList: [{name: bar}, {name: foo, value: b}]}
- description: retainKeys list can delete a field when no retainKeys directive present
  original: {retainKeysMergingList: [{name: bar}, {name: foo, value: a}]}
  patch: {retainKeysMergingList: [{name: foo, value: null}]}
  modified: {retainKeysMergingList: [{name: bar}, {name: foo}]}
- description: preserve the order from the patch in a merging list
  original: {mergingList: [{name: "1"}, {name: "2", value: b}, {name: "3"}]}
  patch: {mergingList: [{name: "3", value: c}, {name: "1", value: a}, {name: "2", other: x}]}
  modified: {mergingList: [{name: "3", value: c}, {name: "1", value: a}, {name: "2", value: b, other: x}]}
- description: preserve the order from the patch in a merging list 2
  original: {mergingList: [{name: "1"}, {name: "2", value: b}, {name: "3"}]}
  patch: {mergingList: [{name: "3", value: c}, {name: "1", value: a}]}
  modified: {mergingList: [{name: "2", value: b}, {name: "3", value: c}, {name: "1", value: a}]}
- description: preserve the order from the patch in a merging int list
  original: {mergingIntList: [1, 2, 3]}
  patch: {mergingIntList: [3, 1, 2]}
  modified: {mergingIntList: [3, 1, 2]}
- description: preserve the order from the patch in a merging int list 2
  original: {mergingIntList: [1, 2, 3]}
  patch: {mergingIntList: [3, 1]}
  modified: {mergingIntList: [2, 3, 1]}
- description: setElementOrder contains item that is not present in the list to be merged
  original: {mergingList: [{name: "1"}, {name: "3"}]}
  patch:
    $setElementOrder/mergingList: [{name: "3"}, {name: "2"}, {name: "1"}]
    mergingList: [{name: "3", value: "3"}, {name: "1", value: "1"}]
  modified: {mergingList: [{name: "3", value: "3"}, {name: "1", value: "1"}]}
- description: setElementOrder contains item that is not present in the int list to be merged
  original: {mergingIntList: [1, 3]}
  patch: {$setElementOrder/mergingIntList: [3, 2, 1]}
  modified: {mergingIntList: [3, 1]}
- description: deleteFromPrimitiveList of nonexistent item should not add the item
  original: {mergingIntList: [1, 2]}
  patch: {$deleteFromPrimitiveList/mergingIntList: [3]}
  modified: {mergingIntList: [1, 2]}
- description: deleteFromPrimitiveList on empty primitive list should not add the item
  original: {mergingIntList: null}
  patch: {$deleteFromPrimitiveList/mergingIntList: [3]}
  modified: {mergingIntList: null}
- description: deleteFromPrimitiveList on nonexistent primitive list should not add the list
  original: {foo: [bar]}
  patch: {$deleteFromPrimitiveList/mergingIntList: [3]}
  modified: {foo: [bar]}
- description: deleteFromPrimitiveList deletes from a list with merge patch strategy
  original: {mergingIntList: [1, 2, 3]}
  patch: {$deleteFromPrimitiveList/mergingIntList: [2]}
  modified: {mergingIntList: [1, 3]}
- description: deleteFromPrimitiveList deletes from a list without merge patch strategy
  original: {nonMergingIntList: [1, 2, 3]}
  patch: {$deleteFromPrimitiveList/nonMergingIntList: [2]}
  modified: {nonMergingIntList: [1, 3]}
- description: nil original
  original: {}
  patch: {name: "1", value: "1"}
  modified: {name: "1", value: "1"}
- description: add field and delete field from map
  original: {name: "1"}
  patch: {name: null, value: "1"}
  modified: {value: "1"}
- description: delete field from nested map
  original: {simpleMap: {key1: "1", key2: "1"}}
  patch: {simpleMap: {key2: null}}
  modified: {simpleMap: {key1: "1"}}
- description: replace list of scalars
  original: {nonMergingIntList: [1, 2]}
  patch: {nonMergingIntList: [2, 3]}
  modified: {nonMergingIntList: [2, 3]}
- description: delete all maps from merging list
  original: {mergingList: [{name: "1"}, {name: "2"}]}
  patch: {mergingList: [{name: "1", $patch: delete}, {name: "2", $patch: delete}]}
  modified: {mergingList: []}
- description: defined null values are dropped when the key is absent
  original: {name: "2"}
  patch: {name: "1", value: "1", other: null}
  modified: {name: "1", value: "1"}
- description: replace non merging list of maps
  original: {nonMergingList: [{name: "1"}, {name: "2"}]}
  patch: {nonMergingList: [{name: "3"}]}
  modified: {nonMergingList: [{name: "3"}]}
- description: replacingItem is replaced, not merged
  original: {replacingItem: {a: "1", b: {c: "2"}}}
  patch: {replacingItem: {b: {d: "3"}}}
  modified: {replacingItem: {b: {d: "3"}}}
- description: merge into the pointer struct
  original: {mergeItemPtr: {name: a, value: x}}
  patch: {mergeItemPtr: {other: y}}
  modified: {mergeItemPtr: {name: a, value: x, other: y}}
- description: nested merging lists merge recursively
  original: {mergingList: [{name: a, mergingList: [{name: x, value: "1"}]}]}
  patch: {mergingList: [{name: a, mergingList: [{name: y, value: "2"}]}]}
  modified: {mergingList: [{name: a, mergingList: [{name: y, value: "2"}, {name: x, value: "1"}]}]}
- description: add a map to a merging list puts it first
  original: {mergingList: [{name: "1"}, {name: "2"}]}
  patch: {mergingList: [{name: "3", value: c}]}
  modified: {mergingList: [{name: "3", value: c}, {name: "1"}, {name: "2"}]}
- description: directives in a newly added value are stripped
  original: {}
  patch: {mergingList: [{name: a, mergingList: [{name: z, $patch: delete}, {name: b}]}]}
  modified: {mergingList: [{name: a, mergingList: [{name: b}]}]}
- description: retainKeys directive clears other keys of the map
  original: {retainKeysMap: {name: foo, value: a, other: b}}
  patch: {retainKeysMap: {$retainKeys: [name, other], other: c}}
  modified: {retainKeysMap: {name: foo, other: c}}
""")

# Three-way cases: the patch kubectl computes, applied to the live object.
THREE_WAY = yaml.safe_load("""
- description: add field to map with conflict
  current: {name: a, other: a}
  patch: {name: "1", value: "1"}
  result: {name: "1", value: "1", other: a}
- description: delete field from nested map with conflict
  current: {simpleMap: {key1: a, key2: "1", other: a}}
  patch: {simpleMap: {key1: "1", key2: null}}
  result: {simpleMap: {key1: "1", other: a}}
- description: delete all maps from empty merging list
  current: {mergingList: []}
  patch: {mergingList: [{name: "1", $patch: delete}, {name: "2", $patch: delete}]}
  result: {mergingList: []}
- description: nested patch merge with empty list
  current: {name: hi, mergingList: [{name: hello2}]}
  patch:
    $setElementOrder/mergingList: [{name: hello}, {name: doesntexist}]
    mergingList: [{name: hello}, {$patch: delete, name: doesntexist}]
  result: {name: hi, mergingList: [{name: hello}, {name: hello2}]}
- description: delete items in lists of scalars
  current: {mergingIntList: [1, 2, 3, 4]}
  patch: {$setElementOrder/mergingIntList: [1, 2], $deleteFromPrimitiveList/mergingIntList: [3]}
  result: {mergingIntList: [1, 2, 4]}
- description: delete all duplicate items in lists of scalars
  current: {mergingIntList: [1, 2, 3, 3, 4]}
  patch: {$setElementOrder/mergingIntList: [1, 2], $deleteFromPrimitiveList/mergingIntList: [3]}
  result: {mergingIntList: [1, 2, 4]}
- description: add and delete items in lists of scalars
  current: {mergingIntList: [1, 2, 3]}
  patch:
    $setElementOrder/mergingIntList: [1, 2, 4]
    $deleteFromPrimitiveList/mergingIntList: [3]
    mergingIntList: [4]
  result: {mergingIntList: [1, 2, 4]}
- description: merge lists of maps
  current: {mergingList: [{name: "1", other: a}, {name: "2", value: "2", other: b}]}
  patch:
    $setElementOrder/mergingList: [{name: "4"}, {name: "1"}, {name: "2"}, {name: "3"}]
    mergingList: [{name: "4", value: "4"}, {name: "3", value: "3"}]
  result:
    mergingList:
    - {name: "4", value: "4"}
    - {name: "1", other: a}
    - {name: "2", value: "2", other: b}
    - {name: "3", value: "3"}
- description: nil patch with retainKeys map
  current: {name: a, value: b, retainKeysMap: {name: foo}}
  patch: {}
  result: {name: a, value: b, retainKeysMap: {name: foo}}
""")


@pytest.mark.parametrize("case", TWO_WAY, ids=[c["description"] for c in TWO_WAY])
def test_two_way_cases(case: dict[str, Any]) -> None:
    original = copy.deepcopy(case["original"])
    assert strategic_merge_patch(original, case["patch"], MERGE_ITEM) == case["modified"]
    assert original == case["original"]  # inputs are not modified


@pytest.mark.parametrize("case", THREE_WAY, ids=[c["description"] for c in THREE_WAY])
def test_three_way_cases(case: dict[str, Any]) -> None:
    assert strategic_merge_patch(case["current"], case["patch"], MERGE_ITEM) == case["result"]


ERRORS = yaml.safe_load("""
- description: order in setElementOrder and patch list must match
  original: {mergingList: [{name: "1"}, {name: "3"}, {name: "2"}]}
  patch:
    $setElementOrder/mergingList: [{name: "1"}, {name: "2"}, {name: "3"}]
    mergingList: [{name: "3", value: "3"}, {name: "1", value: "1"}]
  code: 500
  message: doesn't match
- description: order in setElementOrder and int patch list must match
  original: {mergingIntList: [1, 3, 2]}
  patch: {$setElementOrder/mergingIntList: [1, 2, 3], mergingIntList: [3, 1]}
  code: 500
  message: doesn't match
- description: missing merge key
  original: {mergingList: [{name: "1", value: a}]}
  patch: {mergingList: [{value: b}]}
  code: 500
  message: "Internal error occurred: map: map[value:b] does not contain declared merge key: name"
- description: retainKeys must list every key of the patch
  original: {retainKeysMap: {name: foo}}
  patch: {retainKeysMap: {$retainKeys: [name], value: x}}
  code: 400
  message: invalid patch format of retainKeys
- description: retainKeys must be a list
  original: {retainKeysMap: {name: foo}}
  patch: {retainKeysMap: {$retainKeys: name}}
  code: 400
  message: invalid patch format of retainKeys
- description: lists of lists
  original: {mergingIntList: [[1]]}
  patch: {mergingIntList: [[2]]}
  code: 422
  message: the server rejected our request due to an error in our request
- description: unknown patch directive on a map
  original: {simpleMap: {a: b}}
  patch: {simpleMap: {$patch: frobnicate}}
  code: 500
  message: "unknown patch type: frobnicate in map: map[$patch:frobnicate]"
- description: merge directive in a list is not supported
  original: {mergingList: [{name: a}]}
  patch: {mergingList: [{name: a, $patch: merge}]}
  code: 500
  message: merging lists cannot yet be specified in the patch
""")


@pytest.mark.parametrize("case", ERRORS, ids=[c["description"] for c in ERRORS])
def test_error_cases(case: dict[str, Any]) -> None:
    with pytest.raises(StatusError) as info:
        strategic_merge_patch(case["original"], case["patch"], MERGE_ITEM)
    assert info.value.code == case["code"]
    assert case["message"] in info.value.message


def test_schema_none_is_unsupported_media_type() -> None:
    with pytest.raises(StatusError) as info:
        strategic_merge_patch({"spec": {}}, {"spec": {"a": 1}}, None)
    assert info.value.code == 415
    assert info.value.reason == "UnsupportedMediaType"
    assert "application/merge-patch+json" in info.value.message


def test_non_object_patch_is_bad_request() -> None:
    with pytest.raises(StatusError) as info:
        strategic_merge_patch({}, [1], MERGE_ITEM)
    assert info.value.code == 400
    assert "cannot unmarshal array" in info.value.message


# --- what kubectl sends, against the official schemas -------------------------------------------

DEPLOYMENT = schema_for_kind("apps", "v1", "Deployment")
POD = schema_for_kind("", "v1", "Pod")
NODE = schema_for_kind("", "v1", "Node")


def _deployment() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}, "finalizers": ["a/b"]},
        "spec": {
            "replicas": 1,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {"name": "app", "image": "app:1", "env": [{"name": "A", "value": "1"}],
                         "args": ["--x"]},
                        {"name": "sidecar", "image": "side:1"},
                    ],
                    "volumes": [{"name": "data", "emptyDir": {}}],
                },
            },
        },
    }


def test_kubectl_apply_three_way_patch_with_set_element_order() -> None:
    patch = {
        "spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "app"}, {"name": "sidecar"}, {"name": "log"}],
            "containers": [
                {"name": "app", "image": "app:2", "$setElementOrder/env": [{"name": "B"}],
                 "env": [{"name": "B", "value": "2"}, {"$patch": "delete", "name": "A"}]},
                {"name": "log", "image": "log:1"},
            ],
        }}},
    }
    result = strategic_merge_patch(_deployment(), patch, DEPLOYMENT)
    containers = result["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["app", "sidecar", "log"]
    assert containers[0] == {"name": "app", "image": "app:2", "env": [{"name": "B", "value": "2"}], "args": ["--x"]}
    assert containers[1] == {"name": "sidecar", "image": "side:1"}


def test_atomic_list_is_replaced_and_set_list_is_unioned() -> None:
    patch = {"metadata": {"finalizers": ["c/d"]},
             "spec": {"template": {"spec": {"containers": [{"name": "app", "args": ["--y"]}]}}}}
    result = strategic_merge_patch(_deployment(), patch, DEPLOYMENT)
    assert result["metadata"]["finalizers"] == ["c/d", "a/b"]
    assert result["spec"]["template"]["spec"]["containers"][0]["args"] == ["--y"]


def test_strategy_change_uses_retain_keys() -> None:
    # kubectl apply switching to Recreate
    patch = {"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": None, "type": "Recreate"}}}
    result = strategic_merge_patch(_deployment(), patch, DEPLOYMENT)
    assert result["spec"]["strategy"] == {"type": "Recreate"}


def test_volume_source_switch_uses_retain_keys_in_list_item() -> None:
    patch = {"spec": {"template": {"spec": {"volumes": [
        {"$retainKeys": ["configMap", "name"], "name": "data", "configMap": {"name": "cfg"}}]}}}}
    result = strategic_merge_patch(_deployment(), patch, DEPLOYMENT)
    assert result["spec"]["template"]["spec"]["volumes"] == [{"name": "data", "configMap": {"name": "cfg"}}]


def test_rollout_restart_and_scale() -> None:
    restart = {"spec": {"template": {"metadata": {"annotations": {
        "kubectl.kubernetes.io/restartedAt": "2024-01-01T00:00:00Z"}}}}}
    result = strategic_merge_patch(_deployment(), restart, DEPLOYMENT)
    assert result["spec"]["template"]["metadata"] == {
        "labels": {"app": "web"}, "annotations": {"kubectl.kubernetes.io/restartedAt": "2024-01-01T00:00:00Z"}}
    assert result["spec"]["template"]["spec"] == _deployment()["spec"]["template"]["spec"]
    assert strategic_merge_patch(_deployment(), {"spec": {"replicas": 5}}, DEPLOYMENT)["spec"]["replicas"] == 5


def test_cordon_and_uncordon() -> None:
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}, "spec": {"podCIDR": "10.0.0.0/24"}}
    cordoned = strategic_merge_patch(node, {"spec": {"unschedulable": True}}, NODE)
    assert cordoned["spec"] == {"podCIDR": "10.0.0.0/24", "unschedulable": True}
    assert strategic_merge_patch(cordoned, {"spec": {"unschedulable": None}}, NODE)["spec"] == {
        "podCIDR": "10.0.0.0/24"}


def test_set_image_patch_merges_container_by_name() -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": {"containers": [{"name": "a", "image": "a:1", "ports": [{"containerPort": 80}]},
                                   {"name": "b", "image": "b:1"}]}}
    result = strategic_merge_patch(pod, {"spec": {"containers": [{"name": "b", "image": "b:2"}]}}, POD)
    assert result["spec"]["containers"] == [{"name": "a", "image": "a:1", "ports": [{"containerPort": 80}]},
                                            {"name": "b", "image": "b:2"}]


def test_delete_container_and_replace_whole_list() -> None:
    dep = _deployment()
    deleted = strategic_merge_patch(dep, {"spec": {"template": {"spec": {"containers": [
        {"name": "sidecar", "$patch": "delete"}]}}}}, DEPLOYMENT)
    assert [c["name"] for c in deleted["spec"]["template"]["spec"]["containers"]] == ["app"]
    replaced = strategic_merge_patch(dep, {"spec": {"template": {"spec": {"containers": [
        {"$patch": "replace"}, {"name": "only", "image": "x"}]}}}}, DEPLOYMENT)
    assert replaced["spec"]["template"]["spec"]["containers"] == [{"name": "only", "image": "x"}]


def test_delete_map_with_patch_directive() -> None:
    result = strategic_merge_patch(_deployment(), {"spec": {"strategy": {"$patch": "delete"}}}, DEPLOYMENT)
    assert result["spec"]["strategy"] == {}
    replaced = strategic_merge_patch(_deployment(), {"metadata": {"labels": {"$patch": "replace", "x": "y"}}},
                                     DEPLOYMENT)
    assert replaced["metadata"]["labels"] == {"x": "y"}
