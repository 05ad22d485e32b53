"""The v2 document (machinery/openapi_v2.py) and its gnostic encoding (machinery/protobuf/gnostic.py)."""

from __future__ import annotations

from typing import Any

import yaml

from pilothouse.machinery.kinds import BUILTIN_RESOURCES
from pilothouse.machinery.openapi_v2 import openapi_v2, schema_v2
from pilothouse.machinery.protobuf.gnostic import document_class, encode_document
from pilothouse.machinery.schema import definition_name


def schema_nodes(schema: Any, found: list[dict[str, Any]]) -> None:
    """A schema and its subschemas (property *names* such as JSONSchemaProps' ``nullable`` are not keys)."""
    if not isinstance(schema, dict):
        return
    found.append(schema)
    for sub in (schema.get("properties") or {}).values():
        schema_nodes(sub, found)
    for key in ("items", "additionalProperties", "schema"):
        schema_nodes(schema.get(key), found)
    for branch in schema.get("allOf") or ():
        schema_nodes(branch, found)


def test_document_is_swagger_2_with_resolvable_references() -> None:
    document = openapi_v2(list(BUILTIN_RESOURCES)).document
    assert document["swagger"] == "2.0"
    assert not {"components", "openapi"} & set(document)
    nodes: list[dict[str, Any]] = []
    for definition in document["definitions"].values():
        schema_nodes(definition, nodes)
    for item in document["paths"].values():
        for verb, op in item.items():
            if verb == "parameters":
                continue
            assert "requestBody" not in op
            for param in op.get("parameters", ()):
                schema_nodes(param.get("schema"), nodes)
            for response in op["responses"].values():
                assert "content" not in response
                schema_nodes(response.get("schema"), nodes)
    refs = {node["$ref"] for node in nodes if "$ref" in node}
    assert refs and all(ref.startswith("#/definitions/") for ref in refs)
    assert {ref.removeprefix("#/definitions/") for ref in refs} <= set(document["definitions"])
    for node in nodes:  # nothing of OpenAPI 3 is left, and every array has its items (kubectl needs them)
        assert not {"nullable", "oneOf", "anyOf", "not"} & set(node)
        assert not (node.get("allOf") and len(node["allOf"]) == 1 and "$ref" in node["allOf"][0])
        assert node.get("type") != "array" or "items" in node


def test_every_served_kind_has_a_gvk_definition_and_a_patch_path() -> None:
    resources = list(BUILTIN_RESOURCES)
    document = openapi_v2(resources).document
    patch_gvks = [op["patch"]["x-kubernetes-group-version-kind"] for op in document["paths"].values()
                  if "patch" in op]
    for rt in resources:
        name = definition_name(rt.group, rt.version, rt.kind)
        if name is None:
            continue
        gvk = {"group": rt.group, "kind": rt.kind, "version": rt.version}
        assert gvk in document["definitions"][name]["x-kubernetes-group-version-kind"]
        if "patch" in rt.verbs:
            assert gvk in patch_gvks, rt.kind
    pod = document["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]
    assert pod["patch"]["consumes"][-1] == "application/strategic-merge-patch+json"
    assert pod["patch"]["parameters"][0]["in"] == "body"
    assert pod["get"]["responses"]["200"]["schema"] == {"$ref": "#/definitions/io.k8s.api.core.v1.Pod"}
    assert {"in": "path", "name": "name", "type": "string", "required": True}.items() <= \
        pod["parameters"][0].items()


def test_cached_per_resource_set() -> None:
    resources = list(BUILTIN_RESOURCES)
    assert openapi_v2(resources) is openapi_v2(list(BUILTIN_RESOURCES))
    fewer = [rt for rt in resources if rt.kind != "ConfigMap"]
    smaller = openapi_v2(fewer)
    assert smaller is not openapi_v2(resources)
    assert smaller.etag != openapi_v2(resources).etag
    assert "/api/v1/namespaces/{namespace}/configmaps" not in smaller.document["paths"]


def test_reference_with_description_is_unwrapped_as_upstream_v2() -> None:
    converted = schema_v2({"allOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.PodSpec"}],
                           "default": {}, "description": "spec", "nullable": True})
    assert converted == {"$ref": "#/definitions/io.k8s.api.core.v1.PodSpec", "default": {}, "description": "spec"}


def test_custom_resource_style_schema_follows_upstream_v2_rules() -> None:
    converted = schema_v2({
        "type": "object",
        "required": ["spec", "note"],
        "properties": {
            "spec": {"type": "object", "properties": {
                "raw": {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                        "properties": {"a": {"type": "string"}}},
                "anything": {"type": "array", "x-kubernetes-preserve-unknown-fields": True,
                             "items": {"type": "string"}},
                "port": {"x-kubernetes-int-or-string": True,
                         "anyOf": [{"type": "integer"}, {"type": "string"}]},
                "labels": {"type": "object", "additionalProperties": {"type": "string", "nullable": True}},
            }},
            "note": {"type": "string", "nullable": True},
        },
    })
    assert converted["required"] == ["spec"]  # a nullable field may be null, so not required in v2
    assert converted["properties"]["note"] == {}
    spec = converted["properties"]["spec"]["properties"]
    assert spec["raw"] == {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    assert spec["anything"] == {"x-kubernetes-preserve-unknown-fields": True}
    assert spec["port"] == {"x-kubernetes-int-or-string": True}
    assert spec["labels"]["additionalProperties"] == {"type": "string"}


def test_gnostic_encoding_of_every_shape() -> None:
    document = {
        "swagger": "2.0",
        "info": {"title": "t", "version": "v1", "x-note": "n"},
        "definitions": {
            "a.Thing": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {"type": "string", "enum": ["x", "y"], "maxLength": 3},
                    "count": {"type": "integer", "format": "int32", "minimum": 1, "default": 2},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "closed": {"type": "object", "additionalProperties": False},
                    "empty": {"type": "object", "properties": {}},
                    "list": {"type": "array", "items": {"$ref": "#/definitions/a.Thing"}},
                },
                "x-kubernetes-group-version-kind": [{"group": "a", "kind": "Thing", "version": "v1"}],
            },
        },
        "paths": {
            "/things/{name}": {
                "parameters": [{"$ref": "#/parameters/name"},
                               {"in": "path", "name": "name", "required": True, "type": "string"}],
                "patch": {
                    "consumes": ["application/merge-patch+json"],
                    "parameters": [{"in": "body", "name": "body", "required": True,
                                    "schema": {"$ref": "#/definitions/a.Thing"}},
                                   {"in": "query", "name": "dryRun", "type": "string", "uniqueItems": True}],
                    "responses": {"200": {"description": "OK", "schema": {"$ref": "#/definitions/a.Thing"}},
                                  "401": {"description": "Unauthorized"}},
                    "x-kubernetes-action": "patch",
                },
            },
            "x-root": {"a": 1},
        },
        "security": [{"BearerToken": []}],
        "securityDefinitions": {"BearerToken": {"type": "apiKey", "name": "authorization", "in": "header"}},
    }
    decoded = document_class().FromString(encode_document(document))
    assert decoded.swagger == "2.0"
    assert [(e.name, e.value.yaml) for e in decoded.info.vendor_extension] == [("x-note", '"n"')]
    (thing,) = decoded.definitions.additional_properties
    schema = thing.value
    assert (thing.name, list(schema.type.value), list(schema.required)) == ("a.Thing", ["object"], ["name"])
    props = {p.name: p.value for p in schema.properties.additional_properties}
    assert [yaml.safe_load(a.yaml) for a in props["name"].enum] == ["x", "y"]
    assert props["name"].max_length == 3
    assert (props["count"].format, props["count"].minimum, yaml.safe_load(props["count"].default.yaml)) == \
        ("int32", 1.0, 2)
    assert list(props["labels"].additional_properties.schema.type.value) == ["string"]
    assert props["closed"].additional_properties.WhichOneof("oneof") == "boolean"
    assert props["closed"].additional_properties.boolean is False
    assert props["empty"].HasField("properties")  # an empty map is still present, as gnostic keeps it
    assert [s._ref for s in props["list"].items.schema] == ["#/definitions/a.Thing"]
    assert yaml.safe_load(schema.vendor_extension[0].value.yaml) == [{"group": "a", "kind": "Thing", "version": "v1"}]

    (path,) = decoded.paths.path
    assert [e.name for e in decoded.paths.vendor_extension] == ["x-root"]
    assert path.value.parameters[0].json_reference._ref == "#/parameters/name"
    assert path.value.parameters[1].parameter.non_body_parameter.path_parameter_sub_schema.required
    patch = path.value.patch
    assert list(patch.consumes) == ["application/merge-patch+json"]
    assert patch.parameters[0].parameter.body_parameter.schema._ref == "#/definitions/a.Thing"
    query = patch.parameters[1].parameter.non_body_parameter.query_parameter_sub_schema
    assert (query.name, query.type, query.unique_items) == ("dryRun", "string", True)
    codes = {c.name: c.value.response for c in patch.responses.response_code}
    assert codes["200"].schema.schema._ref == "#/definitions/a.Thing"
    assert codes["401"].description == "Unauthorized"
    assert [(e.name, e.value.yaml) for e in patch.vendor_extension] == [("x-kubernetes-action", '"patch"')]
    (requirement,) = decoded.security
    assert requirement.additional_properties[0].name == "BearerToken"
    (definition,) = decoded.security_definitions.additional_properties
    assert definition.value.api_key_security.name == "authorization"
