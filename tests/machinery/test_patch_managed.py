"""managedFields bookkeeping (track_update) and server-side apply."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from pilothouse.machinery.errors import StatusError
from pilothouse.machinery.patch import server_side_apply, track_update
from pilothouse.machinery.patch.managed import manager_from_user_agent
from pilothouse.machinery.schema import schema_for_kind

DEPLOYMENT = schema_for_kind("apps", "v1", "Deployment")
CONFIGMAP = schema_for_kind("", "v1", "ConfigMap")
T0, T1, T2 = "2024-01-01T00:00:00Z", "2024-01-01T00:01:00Z", "2024-01-01T00:02:00Z"


def _deployment() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "uid": "u1", "resourceVersion": "1",
                     "labels": {"app": "web"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"containers": [{"name": "nginx", "image": "nginx:1"}]}},
        },
    }


def _entries(obj: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(e["manager"], e["operation"]): e for e in obj["metadata"].get("managedFields", [])}


def _created(manager: str = "kubectl-create") -> dict[str, Any]:
    obj = _deployment()
    track_update(None, obj, manager, "Update", "apps/v1", T0, DEPLOYMENT)
    return obj


def test_create_records_update_entry_like_kubernetes() -> None:
    obj = _created()
    [entry] = obj["metadata"]["managedFields"]
    assert {k: entry[k] for k in ("manager", "operation", "apiVersion", "time", "fieldsType")} == {
        "manager": "kubectl-create", "operation": "Update", "apiVersion": "apps/v1", "time": T0,
        "fieldsType": "FieldsV1"}
    assert entry["fieldsV1"] == {
        "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
        "f:spec": {
            "f:replicas": {},
            "f:selector": {},  # LabelSelector is an atomic map
            "f:template": {
                "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                "f:spec": {"f:containers": {'k:{"name":"nginx"}': {".": {}, "f:image": {}, "f:name": {}}}},
            },
        },
    }


def test_update_transfers_ownership_between_managers() -> None:
    live = _created()
    new = copy.deepcopy(live)
    new["spec"]["replicas"] = 3
    new["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:2"
    track_update(live, new, "kubectl-scale", "Update", "apps/v1", T1, DEPLOYMENT)
    entries = _entries(new)
    scale = entries[("kubectl-scale", "Update")]
    assert scale["time"] == T1
    assert scale["fieldsV1"] == {"f:spec": {
        "f:replicas": {},
        "f:template": {"f:spec": {"f:containers": {'k:{"name":"nginx"}': {"f:image": {}}}}}}}
    create = entries[("kubectl-create", "Update")]
    assert create["time"] == T0  # untouched entries keep their time
    assert "f:replicas" not in create["fieldsV1"]["f:spec"]
    assert create["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"] == {
        'k:{"name":"nginx"}': {".": {}, "f:name": {}}}
    # the order is Kubernetes': by operation, then time
    assert [e["manager"] for e in new["metadata"]["managedFields"]] == ["kubectl-create", "kubectl-scale"]


def test_update_that_changes_nothing_keeps_entries_and_removed_fields_leave_everyone() -> None:
    live = _created()
    same = copy.deepcopy(live)
    same["metadata"]["resourceVersion"] = "2"  # bookkeeping fields are never tracked
    track_update(live, same, "other", "Update", "apps/v1", T1, DEPLOYMENT)
    assert same["metadata"]["managedFields"] == live["metadata"]["managedFields"]

    removed = copy.deepcopy(live)
    del removed["metadata"]["labels"]
    track_update(live, removed, "other", "Update", "apps/v1", T1, DEPLOYMENT)
    [entry] = removed["metadata"]["managedFields"]
    assert entry["manager"] == "kubectl-create"
    assert "f:metadata" not in entry["fieldsV1"]


def test_entries_that_lose_every_field_are_dropped_and_reset_clears() -> None:
    live = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}}
    track_update(None, live, "first", "Update", "v1", T0, CONFIGMAP)
    changed = copy.deepcopy(live)
    changed["data"] = {"a": "2"}
    track_update(live, changed, "second", "Update", "v1", T1, CONFIGMAP)
    # "first" created the data map, so it keeps the map itself
    assert {e["manager"]: e["fieldsV1"] for e in changed["metadata"]["managedFields"]} == {
        "first": {"f:data": {}}, "second": {"f:data": {"f:a": {}}}}

    new = copy.deepcopy(live)
    del new["data"]
    new["binaryData"] = {"b": "AA=="}
    track_update(live, new, "second", "Update", "v1", T1, CONFIGMAP)
    assert [e["manager"] for e in new["metadata"]["managedFields"]] == ["second"]
    assert new["metadata"]["managedFields"][0]["fieldsV1"] == {"f:binaryData": {".": {}, "f:b": {}}}

    reset = copy.deepcopy(new)
    reset["metadata"]["managedFields"] = [{}]
    track_update(new, reset, "second", "Update", "v1", T2, CONFIGMAP)
    assert "managedFields" not in reset["metadata"]  # nothing changed, so nobody owns anything


def test_status_is_not_tracked_on_the_main_resource() -> None:
    live = _created()
    new = copy.deepcopy(live)
    new["status"] = {"replicas": 1}
    track_update(live, new, "someone", "Update", "apps/v1", T1, DEPLOYMENT)
    assert ("someone", "Update") not in _entries(new)
    status_new = copy.deepcopy(new)
    status_new["status"]["replicas"] = 2
    track_update(new, status_new, "kube-controller-manager", "Update", "apps/v1", T1, DEPLOYMENT,
                 subresource="status")
    entry = _entries(status_new)[("kube-controller-manager", "Update")]
    assert entry["subresource"] == "status"
    assert entry["fieldsV1"] == {"f:status": {"f:replicas": {}}}


def test_manager_from_user_agent() -> None:
    assert manager_from_user_agent("kubectl/v1.32.0 (linux/amd64) kubernetes/abc") == "kubectl"
    assert manager_from_user_agent("OpenAPI-Generator/31.0.0/python") == "OpenAPI-Generator"


# --- server-side apply ---------------------------------------------------------------------------

CONFIG = {
    "apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": "web", "labels": {"app": "web"}},
    "spec": {
        "replicas": 2,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}},
                     "spec": {"containers": [{"name": "nginx", "image": "nginx:1"}]}},
    },
}


def _apply(live: dict[str, Any] | None, config: dict[str, Any], manager: str = "kubectl",
           force: bool = False, now: str = T1) -> dict[str, Any]:
    return server_side_apply(live, copy.deepcopy(config), manager, force, "apps/v1", now, DEPLOYMENT)


def test_apply_creates() -> None:
    obj = _apply(None, CONFIG)
    assert {k: v for k, v in obj.items() if k != "metadata"} == {k: v for k, v in CONFIG.items() if k != "metadata"}
    [entry] = obj["metadata"]["managedFields"]
    assert (entry["manager"], entry["operation"], entry["apiVersion"], entry["time"]) == (
        "kubectl", "Apply", "apps/v1", T1)
    assert entry["fieldsV1"] == {
        "f:metadata": {"f:labels": {"f:app": {}}},
        "f:spec": {
            "f:replicas": {},
            "f:selector": {},
            "f:template": {
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {"f:containers": {'k:{"name":"nginx"}': {".": {}, "f:image": {}, "f:name": {}}}},
            },
        },
    }


def test_reapply_same_is_a_no_op() -> None:
    first = _apply(None, CONFIG)
    second = _apply(first, CONFIG, now=T2)
    assert second == first  # same object, same managedFields, time not bumped


def test_apply_dropping_a_field_removes_it() -> None:
    config = copy.deepcopy(CONFIG)
    config["metadata"]["labels"]["tier"] = "frontend"
    config["spec"]["template"]["spec"]["containers"].append({"name": "sidecar", "image": "side:1"})
    first = _apply(None, config)
    second = _apply(first, CONFIG, now=T2)
    assert second["metadata"]["labels"] == {"app": "web"}
    assert [c["name"] for c in second["spec"]["template"]["spec"]["containers"]] == ["nginx"]
    [entry] = second["metadata"]["managedFields"]
    assert entry["time"] == T2


def test_dropped_field_survives_when_another_manager_owns_it() -> None:
    config = copy.deepcopy(CONFIG)
    config["metadata"]["labels"]["tier"] = "frontend"
    first = _apply(None, config)
    # another applier also sets the same label value: shared ownership, no conflict
    shared = _apply(first, {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {
        "name": "web", "labels": {"tier": "frontend"}}}, manager="other")
    second = _apply(shared, CONFIG, now=T2)
    assert second["metadata"]["labels"] == {"app": "web", "tier": "frontend"}


def test_conflict_with_update_manager_is_409_with_causes() -> None:
    live = _created("kubectl-client-side-apply")
    config = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 5}}
    with pytest.raises(StatusError) as info:
        _apply(live, config)
    error = info.value
    assert error.code == 409
    assert error.reason == "Conflict"
    assert error.message == ('Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" '
                             "using apps/v1: .spec.replicas")
    assert error.details == {"causes": [{
        "reason": "FieldManagerConflict",
        "message": 'conflict with "kubectl-client-side-apply" using apps/v1',
        "field": ".spec.replicas"}]}
    # applying the value the other manager already set is not a conflict
    same = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 1}}
    assert _apply(live, same)["spec"]["replicas"] == 1


def test_several_conflicts_are_listed() -> None:
    live = _created("kubectl-client-side-apply")
    config = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {
        "replicas": 5, "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:9"}]}}}}
    with pytest.raises(StatusError) as info:
        _apply(live, config)
    assert info.value.message == (
        'Apply failed with 2 conflicts: conflicts with "kubectl-client-side-apply" using apps/v1:\n'
        "- .spec.replicas\n"
        '- .spec.template.spec.containers[name="nginx"].image')
    assert [c["field"] for c in info.value.details["causes"]] == [
        ".spec.replicas", '.spec.template.spec.containers[name="nginx"].image']


def test_force_takes_ownership() -> None:
    live = _created("kubectl-client-side-apply")
    config = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 5}}
    obj = _apply(live, config, force=True)
    assert obj["spec"]["replicas"] == 5
    entries = _entries(obj)
    assert entries[("kubectl", "Apply")]["fieldsV1"] == {"f:spec": {"f:replicas": {}}}
    assert "f:replicas" not in entries[("kubectl-client-side-apply", "Update")]["fieldsV1"]["f:spec"]
    # the rest of the object is untouched
    assert obj["spec"]["template"] == live["spec"]["template"]


def test_two_appliers_own_different_containers() -> None:
    base = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {
        "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}},
                     "spec": {"containers": [{"name": "app", "image": "app:1"}]}}}}
    sidecar = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {
        "template": {"spec": {"containers": [{"name": "proxy", "image": "proxy:1"}]}}}}
    obj = _apply(None, base, manager="team-a")
    obj = _apply(obj, sidecar, manager="team-b")
    containers = obj["spec"]["template"]["spec"]["containers"]
    assert containers == [{"name": "app", "image": "app:1"}, {"name": "proxy", "image": "proxy:1"}]
    entries = _entries(obj)
    assert list(entries[("team-b", "Apply")]["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]) == [
        'k:{"name":"proxy"}']
    # team-a re-applies with a new image for its container: no conflict, proxy stays
    base2 = copy.deepcopy(base)
    base2["spec"]["template"]["spec"]["containers"][0]["image"] = "app:2"
    obj = _apply(obj, base2, manager="team-a", now=T2)
    assert obj["spec"]["template"]["spec"]["containers"] == [
        {"name": "app", "image": "app:2"}, {"name": "proxy", "image": "proxy:1"}]
    # team-b dropping its container removes it; team-a's stays
    empty_b = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}}
    obj = _apply(obj, empty_b, manager="team-b", now=T2)
    assert obj["spec"]["template"]["spec"]["containers"] == [{"name": "app", "image": "app:2"}]
    assert ("team-b", "Apply") not in _entries(obj)
    # team-b touching team-a's container image conflicts, naming the Apply manager without version
    steal = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {
        "template": {"spec": {"containers": [{"name": "app", "image": "evil:1"}]}}}}
    with pytest.raises(StatusError) as info:
        _apply(obj, steal, manager="team-b")
    assert info.value.message == ('Apply failed with 1 conflict: conflict with "team-a": '
                                  '.spec.template.spec.containers[name="app"].image')


def test_apply_keeps_live_only_fields_and_set_lists_union() -> None:
    live = _created()
    live["metadata"]["finalizers"] = ["x/y"]
    config = {"apiVersion": "apps/v1", "kind": "Deployment",
              "metadata": {"name": "web", "finalizers": ["a/b"], "annotations": {"note": "hi"}}}
    obj = _apply(live, config)
    assert obj["metadata"]["finalizers"] == ["x/y", "a/b"]
    assert obj["metadata"]["annotations"] == {"note": "hi"}
    assert obj["spec"] == live["spec"]
    assert _entries(obj)[("kubectl", "Apply")]["fieldsV1"] == {
        "f:metadata": {"f:annotations": {"f:note": {}}, "f:finalizers": {'v:"a/b"': {}}}}


def test_apply_rejects_managed_fields_and_wrong_version() -> None:
    with pytest.raises(StatusError) as info:
        _apply(None, {**CONFIG, "metadata": {"name": "web", "managedFields": []}})
    assert info.value.code == 400
    with pytest.raises(StatusError) as info:
        _apply(None, {**CONFIG, "apiVersion": "apps/v1beta1"})
    assert info.value.code == 400
    assert "Incorrect version specified in apply patch" in info.value.message


def test_apply_without_schema_treats_lists_as_atomic() -> None:
    live = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
            "spec": {"items": [{"name": "a"}, {"name": "b"}], "size": 1}}
    track_update(None, live, "creator", "Update", "example.com/v1", T0, None)
    config = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
              "spec": {"items": [{"name": "c"}]}}
    with pytest.raises(StatusError):
        server_side_apply(live, config, "kubectl", False, "example.com/v1", T1, None)
    obj = server_side_apply(live, config, "kubectl", True, "example.com/v1", T1, None)
    assert obj["spec"] == {"items": [{"name": "c"}], "size": 1}
    # untyped maps are "deduced": every key is a member, lists are atomic
    assert _entries(obj)[("kubectl", "Apply")]["fieldsV1"] == {"f:spec": {".": {}, "f:items": {}}}


def test_more_than_ten_update_managers_merge_the_oldest_into_ancient_changes() -> None:
    """capmanagers.go: with an 11th..13th Update manager the oldest are merged, per apiVersion,
    into one ``ancient-changes`` entry, so that at most 10 Update entries remain."""
    live: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {}}
    track_update(None, live, "creator", "Update", "v1", "2024-01-01T00:00:00Z", CONFIGMAP)
    for index in range(12):
        new = copy.deepcopy(live)
        new["data"][f"k{index}"] = "v"
        track_update(live, new, f"m{index:02}", "Update", "v1", f"2024-01-01T00:{index + 1:02}:00Z", CONFIGMAP)
        live = new
    entries = live["metadata"]["managedFields"]
    assert len(entries) == 10
    assert [e["manager"] for e in entries] == ["ancient-changes"] + [f"m{i:02}" for i in range(3, 12)]
    # the creator (oldest) became the bucket and took m00..m02's fields, with m02's time
    bucket = entries[0]
    assert bucket["time"] == "2024-01-01T00:03:00Z"
    assert set(bucket["fieldsV1"]["f:data"]) == {".", "f:k0", "f:k1", "f:k2"}
    # one more: the bucket is the oldest again and absorbs the next oldest
    new = copy.deepcopy(live)
    new["data"]["k12"] = "v"
    track_update(live, new, "m12", "Update", "v1", "2024-01-01T01:00:00Z", CONFIGMAP)
    managers = [e["manager"] for e in new["metadata"]["managedFields"]]
    assert len(managers) == 10 and managers[0] == "ancient-changes" and "m03" not in managers
    assert set(new["metadata"]["managedFields"][0]["fieldsV1"]["f:data"]) == {".", "f:k0", "f:k1", "f:k2", "f:k3"}


def test_apply_managers_are_not_capped() -> None:
    live: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {}}
    for index in range(12):
        patch = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {f"a{index}": "v"}}
        live = server_side_apply(live, patch, f"applier{index:02}", False, "v1", T0, CONFIGMAP)
    assert len(live["metadata"]["managedFields"]) == 12
