"""Shape of the OpenAPI v3 documents: what kubectl and upstream-compatible tools rely on."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from pilothouse.machinery.kinds.types import ResourceType, ScaleSpec, Strategy
from pilothouse.machinery.openapi import (
    group_version_path,
    openapi_v3_document,
    openapi_v3_document_bytes,
    openapi_v3_index,
)

RESOURCES = [
    ResourceType("", "v1", "Pod", "pods", True, status_strategy=Strategy()),
    ResourceType("", "v1", "Namespace", "namespaces", False, status_strategy=Strategy()),
    ResourceType("", "v1", "ConfigMap", "configmaps", True),
    ResourceType("apps", "v1", "Deployment", "deployments", True, status_strategy=Strategy(),
                 scale=ScaleSpec()),
    ResourceType("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", False),
]


def _walk(node: Any, path: str = ""):  # type: ignore[no-untyped-def]
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, f"{path}/{index}")


def _documents() -> dict[str, dict[str, Any]]:
    docs = {}
    for path in openapi_v3_index(RESOURCES)["paths"]:
        document = openapi_v3_document(path, RESOURCES)
        assert document is not None
        docs[path] = document
    return docs


def test_index_lists_every_group_version_with_a_stable_content_hash() -> None:
    index = openapi_v3_index(RESOURCES)
    assert set(index["paths"]) == {"api/v1", "apis/apps/v1", "apis/rbac.authorization.k8s.io/v1"}
    url = index["paths"]["apis/apps/v1"]["serverRelativeURL"]
    assert url.startswith("/openapi/v3/apis/apps/v1?hash=")
    data, digest = openapi_v3_document_bytes("apis/apps/v1", RESOURCES) or (b"", "")
    assert url.endswith(digest) and len(digest) == 128 and digest == digest.upper()
    # Same resources in another order: same documents, same hashes.
    assert openapi_v3_index(list(reversed(RESOURCES))) == index
    # A different resource set changes the core document and so its hash.
    other = openapi_v3_index(RESOURCES[:2])
    assert other["paths"]["api/v1"] != index["paths"]["api/v1"]
    assert orjson.loads(data)["openapi"] == "3.0.0"


def test_unknown_group_version_is_none() -> None:
    assert openapi_v3_document("apis/batch/v1", RESOURCES) is None
    assert openapi_v3_document_bytes("apis/batch/v1", RESOURCES) is None
    assert group_version_path("", "v1") == "api/v1"
    assert group_version_path("apps", "v1") == "apis/apps/v1"


def test_every_served_kind_has_its_schema_with_gvk_in_its_document() -> None:
    docs = _documents()
    for rt in RESOURCES:
        document = docs[group_version_path(rt.group, rt.version)]
        schemas = document["components"]["schemas"]
        matches = [name for name, schema in schemas.items()
                   if {"group": rt.group, "version": rt.version, "kind": rt.kind}
                   in schema.get("x-kubernetes-group-version-kind", [])]
        assert matches, rt.kind
        assert any(rt.kind + "List" in name for name in schemas)
    shared = docs["apis/apps/v1"]["components"]["schemas"]
    for name in ("Status", "DeleteOptions", "ListMeta", "ObjectMeta", "Patch", "WatchEvent"):
        assert f"io.k8s.apimachinery.pkg.apis.meta.v1.{name}" in shared
    assert "io.k8s.api.autoscaling.v1.Scale" in shared
    # Only reachable definitions: no unrelated kinds.
    assert "io.k8s.api.batch.v1.Job" not in shared
    assert "io.k8s.api.apps.v1.StatefulSet" not in shared


def test_operations_carry_kubernetes_extensions_and_patch_metadata() -> None:
    docs = _documents()
    for path_doc in docs.values():
        for url, item in path_doc["paths"].items():
            for method, operation in item.items():
                if method == "parameters":
                    continue
                assert operation["x-kubernetes-action"], url
                gvk = operation["x-kubernetes-group-version-kind"]
                assert set(gvk) == {"group", "version", "kind"}
                assert operation["operationId"]
                if method == "patch":
                    names = {p["name"] for p in operation["parameters"]}
                    assert {"fieldValidation", "fieldManager", "force", "dryRun"} <= names
                    assert "application/strategic-merge-patch+json" in operation["requestBody"]["content"]
                    assert "application/apply-patch+yaml" in operation["requestBody"]["content"]
                if method in ("post", "put"):
                    assert "fieldValidation" in {p["name"] for p in operation["parameters"]}
    apps = docs["apis/apps/v1"]["paths"]
    item = "/apis/apps/v1/namespaces/{namespace}/deployments/{name}"
    assert set(apps[item]) == {"delete", "get", "parameters", "patch", "put"}
    assert apps[item]["patch"]["operationId"] == "patchAppsV1NamespacedDeployment"
    assert set(apps[item + "/status"]) == {"get", "parameters", "patch", "put"}
    scale = apps[item + "/scale"]["patch"]
    assert scale["x-kubernetes-group-version-kind"] == {"group": "autoscaling", "kind": "Scale",
                                                          "version": "v1"}
    collection = apps["/apis/apps/v1/namespaces/{namespace}/deployments"]
    assert collection["get"]["x-kubernetes-action"] == "list"
    assert collection["delete"]["x-kubernetes-action"] == "deletecollection"
    assert collection["post"]["operationId"] == "createAppsV1NamespacedDeployment"
    assert apps["/apis/apps/v1/deployments"]["get"]["operationId"] == "listAppsV1DeploymentForAllNamespaces"
    core = docs["api/v1"]["paths"]
    assert "/api/v1/namespaces/{name}" in core and "/api/v1/namespaces/{name}/status" in core
    assert "/api/v1/namespaces/{namespace}/configmaps/{name}/status" not in core
    assert core["/api/v1/namespaces/{name}"]["patch"]["operationId"] == "patchCoreV1Namespace"
    rbac = docs["apis/rbac.authorization.k8s.io/v1"]["paths"]
    assert rbac["/apis/rbac.authorization.k8s.io/v1/clusterroles"]["get"]["tags"] == ["rbacAuthorization_v1"]


def test_verbs_limit_the_operations() -> None:
    limited = [ResourceType("", "v1", "Binding", "bindings", True, verbs=("create",))]
    paths = (openapi_v3_document("api/v1", limited) or {})["paths"]
    collection = paths["/api/v1/namespaces/{namespace}/bindings"]
    assert set(collection) == {"post", "parameters"}
    assert set(paths["/api/v1/namespaces/{namespace}/bindings/{name}"]) == {"parameters"}


def test_schemas_are_openapi_3_0() -> None:
    for path, document in _documents().items():
        schemas = document["components"]["schemas"]
        for where, node in _walk(document):
            if not isinstance(node, dict):
                continue
            if "type" in node and not where.endswith("/properties"):
                assert isinstance(node["type"], str), (path, where)
            ref = node.get("$ref")
            if isinstance(ref, str):
                assert ref.startswith("#/components/schemas/"), where
                assert ref.removeprefix("#/components/schemas/") in schemas, (path, ref)
                assert set(node) == {"$ref"}, where  # siblings go beside an allOf instead
        assert "$defs" not in orjson.dumps(document).decode()


def test_schema_conversion_matches_upstream_shape() -> None:
    schemas = (openapi_v3_document("apis/apps/v1", RESOURCES) or {})["components"]["schemas"]
    deployment = schemas["io.k8s.api.apps.v1.Deployment"]
    assert deployment["type"] == "object"
    assert deployment["properties"]["apiVersion"] == {
        "description": deployment["properties"]["apiVersion"]["description"], "type": "string"}
    spec = deployment["properties"]["spec"]
    assert spec["allOf"] == [{"$ref": "#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec"}]
    assert spec["default"] == {} and spec["description"]
    replicas = schemas["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["replicas"]
    assert replicas["type"] == "integer" and replicas["format"] == "int32"
    containers = schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]
    assert containers["x-kubernetes-patch-merge-key"] == "name"
    assert containers["x-kubernetes-patch-strategy"] == "merge"
    assert containers["items"] == {"allOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.Container"}],
                                   "default": {}}
    int_or_string = schemas["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]
    assert int_or_string["format"] == "int-or-string" and int_or_string["type"] == "string"
    assert "oneOf" not in schemas["io.k8s.apimachinery.pkg.api.resource.Quantity"]


@pytest.mark.parametrize("path", ["api/v1", "/apis/apps/v1"])
def test_documents_are_cached(path: str) -> None:
    assert openapi_v3_document(path, RESOURCES) is openapi_v3_document(path, list(RESOURCES))
