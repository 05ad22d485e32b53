"""The rows a CRD turns into (machinery/kinds/custom.py), without a server."""

from __future__ import annotations

from typing import Any

from pilothouse.machinery.kinds.custom import custom_resource_types, json_path, version_priority


def crd(**version_extra: Any) -> dict[str, Any]:
    version = {"name": "v1", "served": True, "storage": True,
               "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                   "spec": {"type": "object", "properties": {
                       "replicas": {"type": "integer", "default": 1},
                       "size": {"type": "string"}}},
                   "status": {"type": "object", "properties": {"replicas": {"type": "integer"}}}}}},
               **version_extra}
    return {"metadata": {"name": "widgets.example.com", "uid": "u", "generation": 1, "resourceVersion": "10"},
            "spec": {"group": "example.com", "scope": "Namespaced",
                     "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList",
                               "shortNames": ["wd"], "categories": ["all"]},
                     "versions": [version]}}


def test_versions_sort_in_kubernetes_priority_order() -> None:
    names = ["v1alpha1", "foo", "v2", "v1beta2", "v1", "v10beta1", "v1beta1", "bar"]
    assert sorted(names, key=version_priority) == ["v2", "v1", "v10beta1", "v1beta2", "v1beta1", "v1alpha1",
                                                   "bar", "foo"]


def test_json_path() -> None:
    assert json_path(".spec.replicas") == ("spec", "replicas")
    assert json_path("") == ()


def test_a_row_carries_names_subresources_and_schema() -> None:
    row, = custom_resource_types(crd(subresources={"status": {}, "scale": {
        "specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"}}))
    assert (row.group, row.version, row.kind, row.plural, row.namespaced) == ("example.com", "v1", "Widget",
                                                                               "widgets", True)
    assert row.short_names == ("wd",) and row.categories == ("all",) and row.singular == "widget"
    assert row.subresources == ("status", "scale")
    assert row.scale is not None and row.scale.replicas_path == ("spec", "replicas")
    assert row.scale.selector_path == ()
    assert not row.strategic_merge_patch and row.list_kind == "WidgetList"
    assert row.openapi is not None and row.openapi.definition == "com.example.v1.Widget"
    assert row.printer is not None and [c.name for c in row.printer.columns] == ["Name", "Age"]


def test_the_strategy_defaults_prunes_and_guards_status() -> None:
    row, = custom_resource_types(crd(subresources={"status": {}}))
    obj: dict[str, Any] = {"apiVersion": "example.com/v1", "kind": "Widget",
                           "metadata": {"name": "w", "bogus": 1}, "spec": {"extra": True},
                           "status": {"replicas": 2}}
    assert row.prune is not None and row.prune(obj) == ["metadata.bogus", "spec.extra"]
    row.strategy.default(obj)
    assert obj["spec"] == {"replicas": 1}
    row.strategy.prepare_for_create(obj)
    assert "status" not in obj and obj["metadata"]["generation"] == 1
    updated = {**obj, "metadata": dict(obj["metadata"]), "spec": {"replicas": 2}, "status": {"replicas": 9}}
    row.strategy.prepare_for_update(updated, obj)
    assert "status" not in updated and updated["metadata"]["generation"] == 2
    errors = row.strategy.validate({**obj, "spec": {"replicas": "many"}})
    assert [e.field for e in errors] == ["spec.replicas"]


def test_objects_read_in_another_version_get_its_apiversion_and_defaults() -> None:
    beta = dict(crd()["spec"]["versions"][0], name="v1beta1", storage=False)
    definition = crd()
    definition["spec"]["versions"].append(beta)
    v1, v1beta1 = custom_resource_types(definition)
    assert (v1.version, v1beta1.version) == ("v1", "v1beta1")
    stored: dict[str, Any] = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
                              "spec": {}}
    assert v1beta1.strategy.decorate is not None
    v1beta1.strategy.decorate(stored)
    assert stored["apiVersion"] == "example.com/v1beta1" and stored["spec"] == {"replicas": 1}
    assert v1.strategy.decorated_through == 10


def test_names_come_from_accepted_names_when_set() -> None:
    definition = crd()
    definition["status"] = {"acceptedNames": {"plural": "widgets", "kind": "Widget", "shortNames": ["w"]}}
    row, = custom_resource_types(definition)
    assert row.short_names == ("w",)
