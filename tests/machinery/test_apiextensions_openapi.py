"""The OpenAPI v3 schema published for a CRD version, and its typed form used by server-side apply.

Expectations follow apiextensions-apiserver's ``controller/openapi/builder`` (buildKubeNative,
addEmbeddedProperties, Unfold, buildListSchema).
"""

from __future__ import annotations

from typing import Any

from pilothouse.machinery.apiextensions import (
    definition_name,
    list_definition_name,
    openapi_list_schema,
    openapi_schema,
    openapi_v2_schema,
    typed_schema,
)
from pilothouse.machinery.patch.apply import server_side_apply
from pilothouse.machinery.schema import resolve

META = "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
PORTS = {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
         "items": {"type": "object", "required": ["name"],
                   "properties": {"name": {"type": "string"}, "port": {"type": "integer"}}}}


def _crd(schema: dict[str, Any] | None) -> dict[str, Any]:
    version: dict[str, Any] = {"name": "v1", "served": True, "storage": True}
    if schema is not None:
        version["schema"] = {"openAPIV3Schema": schema}
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "crontabs.stable.example.com"},
            "spec": {"group": "stable.example.com", "scope": "Namespaced",
                     "names": {"kind": "CronTab", "plural": "crontabs", "singular": "crontab",
                               "listKind": "CronTabList"},
                     "versions": [version]}}


SCHEMA = {"type": "object", "properties": {
    "spec": {"type": "object", "description": "the spec", "properties": {
        "cronSpec": {"type": "string", "example": "* * * * *"},
        "port": {"x-kubernetes-int-or-string": True},
        "ports": PORTS,
        "template": {"type": "object", "x-kubernetes-embedded-resource": True,
                     "x-kubernetes-preserve-unknown-fields": True}}}}}


def test_names() -> None:
    assert definition_name("stable.example.com", "v1", "CronTab") == "com.example.stable.v1.CronTab"
    assert list_definition_name("stable.example.com", "v1", "CronTab") == "com.example.stable.v1.CronTabList"


def test_published_schema() -> None:
    schema = openapi_schema(_crd(SCHEMA), "v1")
    assert schema["x-kubernetes-group-version-kind"] == [
        {"group": "stable.example.com", "kind": "CronTab", "version": "v1"}]
    props = schema["properties"]
    assert props["apiVersion"]["type"] == "string"
    assert props["apiVersion"]["description"].startswith("APIVersion defines the versioned schema")
    assert props["kind"]["description"].startswith("Kind is a string value representing the REST resource")
    assert props["metadata"] == {"allOf": [{"$ref": META}], "description": (
        "Standard object's metadata. More info: "
        "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata")}
    spec = props["spec"]
    assert spec["description"] == "the spec"
    assert "example" not in spec["properties"]["cronSpec"]
    assert spec["properties"]["port"] == {"x-kubernetes-int-or-string": True,
                                          "anyOf": [{"type": "integer"}, {"type": "string"}]}
    assert spec["properties"]["ports"]["x-kubernetes-list-map-keys"] == ["name"]
    template = spec["properties"]["template"]
    assert set(template["properties"]) == {"apiVersion", "kind", "metadata"}
    assert template["properties"]["kind"]["description"].startswith("kind is a string value representing the type")
    assert template["required"] == ["kind", "apiVersion"]
    assert "apiVersion" not in SCHEMA["properties"]  # the CRD's own schema is left alone


def test_without_schema_a_bare_object_is_published() -> None:
    assert openapi_schema(_crd(None), "v1") == {
        "type": "object",
        "x-kubernetes-group-version-kind": [{"group": "stable.example.com", "kind": "CronTab", "version": "v1"}]}


def test_list_schema() -> None:
    schema = openapi_list_schema(_crd(SCHEMA), "v1")
    assert schema["required"] == ["items"]
    assert schema["properties"]["items"]["items"] == {"$ref": "#/components/schemas/com.example.stable.v1.CronTab"}
    assert schema["properties"]["metadata"]["allOf"] == [
        {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta"}]
    assert schema["x-kubernetes-group-version-kind"] == [
        {"group": "stable.example.com", "kind": "CronTabList", "version": "v1"}]


def test_typed_schema_resolves_object_meta() -> None:
    typed = typed_schema(_crd(SCHEMA), "v1")
    assert "name" in resolve(typed["properties"]["metadata"])["properties"]


def _apply(live: dict[str, Any] | None, ports: list[dict[str, Any]], manager: str,
           schema: dict[str, Any] | None) -> dict[str, Any]:
    applied = {"apiVersion": "stable.example.com/v1", "kind": "CronTab",
               "metadata": {"name": "c", "namespace": "default"}, "spec": {"ports": ports}}
    return server_side_apply(live, applied, manager, False, "stable.example.com/v1", "2026-12-03T00:00:00Z", schema)


def test_server_side_apply_merges_list_maps_by_key() -> None:
    typed = typed_schema(_crd(SCHEMA), "v1")
    first = _apply(None, [{"name": "a", "port": 1}], "one", typed)
    second = _apply(first, [{"name": "b", "port": 2}], "two", typed)
    assert second["spec"]["ports"] == [{"name": "a", "port": 1}, {"name": "b", "port": 2}]


def test_v2_definition_is_what_kubectl_can_read() -> None:
    nullable = {"type": "object", "required": ["a", "b"], "properties": {
        "a": {"type": "string", "nullable": True}, "b": {"type": "string"},
        "list": {"type": "array", "x-kubernetes-preserve-unknown-fields": True, "items": {"type": "string"}},
        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                 "properties": {"x": {"type": "string"}}},
        "one": {"type": "string", "anyOf": [{"pattern": "a"}, {"pattern": "b"}]},
        "port": {"x-kubernetes-int-or-string": True}}}
    schema = openapi_v2_schema(_crd({"type": "object", "properties": {"spec": nullable}}), "v1")
    spec = schema["properties"]["spec"]
    assert spec["required"] == ["b"]
    assert spec["properties"]["a"] == {}
    assert spec["properties"]["list"] == {"x-kubernetes-preserve-unknown-fields": True}
    assert spec["properties"]["free"] == {"x-kubernetes-preserve-unknown-fields": True}
    assert spec["properties"]["one"] == {"type": "string"}
    assert spec["properties"]["port"] == {"x-kubernetes-int-or-string": True}
    assert schema["properties"]["metadata"] == {
        "$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "description": schema["properties"]["metadata"]["description"]}
    preserving = openapi_v2_schema(_crd({"type": "object", "x-kubernetes-preserve-unknown-fields": True}), "v1")
    assert preserving == {"type": "object", "x-kubernetes-group-version-kind": [
        {"group": "stable.example.com", "kind": "CronTab", "version": "v1"}]}


def test_selectable_fields_are_published() -> None:
    crd = _crd(SCHEMA)
    crd["spec"]["versions"][0]["selectableFields"] = [{"jsonPath": ".spec.cronSpec"}]
    expected = [{"fieldPath": "spec.cronSpec"}]
    assert openapi_schema(crd, "v1")["x-kubernetes-selectable-fields"] == expected
    assert openapi_list_schema(crd, "v1")["x-kubernetes-selectable-fields"] == expected
    assert "x-kubernetes-selectable-fields" not in openapi_schema(_crd(SCHEMA), "v1")
