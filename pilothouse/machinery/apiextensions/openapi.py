"""The OpenAPI v3 component schemas kube-apiserver publishes for a CRD version (``openapi_schema``).

A port of ``apiextensions-apiserver/pkg/controller/openapi/builder``: the version's structural
schema, with ``apiVersion``, ``kind`` and ``metadata`` (a reference to ObjectMeta) added at the
root and in every ``x-kubernetes-embedded-resource``, and ``x-kubernetes-group-version-kind`` so
kubectl can match it to the resource. kubectl explain walks it, kubectl apply finds no
``x-kubernetes-patch-strategy`` in it (so it sends merge patches for custom resources), and
server-side apply reads its list and map types.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

from pilothouse.machinery.openapi_components import COMPONENT_PREFIX
from pilothouse.machinery.schema import definitions

__all__ = ["definition_name", "list_definition_name", "openapi_list_schema", "openapi_schema"]

Schema = dict[str, Any]
_OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
_LIST_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta"


@functools.cache
def _description(field: str) -> str:
    # The upstream builder uses the TypeMeta/ObjectMeta wording every built-in kind carries.
    prop = (definitions().get("io.k8s.api.core.v1.Pod") or {}).get("properties", {}).get(field) or {}
    return str(prop.get("description", ""))


def _group_prefix(group: str) -> str:
    return ".".join(reversed(group.split(".")))


def definition_name(group: str, version: str, kind: str) -> str:
    """``com.example.stable.v1.CronTab`` for group ``stable.example.com``."""
    return f"{_group_prefix(group)}.{version}.{kind}"


def list_definition_name(group: str, version: str, kind: str) -> str:
    return definition_name(group, version, kind) + "List"


def _version(crd: dict[str, Any], version: str) -> dict[str, Any]:
    for entry in (crd.get("spec") or {}).get("versions") or []:
        if entry.get("name") == version:
            return dict(entry)
    raise KeyError(version)


def _type_meta(schema: Schema, metadata_ref: str) -> None:
    properties = schema.setdefault("properties", {})
    properties["apiVersion"] = {"description": _description("apiVersion"), "type": "string"}
    properties["kind"] = {"description": _description("kind"), "type": "string"}
    properties["metadata"] = {"allOf": [{"$ref": COMPONENT_PREFIX + metadata_ref}],
                              "description": _description("metadata")}
    schema["type"] = "object"


def _embedded(schema: Any) -> None:
    if not isinstance(schema, dict):
        return
    for value in (schema.get("properties") or {}).values():
        _embedded(value)
    for name in ("items", "additionalProperties"):
        _embedded(schema.get(name))
    for name in ("allOf", "anyOf", "oneOf"):
        for sub in schema.get(name) or []:
            _embedded(sub)
    if schema.get("x-kubernetes-embedded-resource"):
        _type_meta(schema, _OBJECT_META)


def openapi_schema(crd: dict[str, Any], version: str) -> Schema:
    """The component schema of ``version``'s custom resource (a fresh dict)."""
    spec = crd.get("spec") or {}
    group, kind = spec.get("group", ""), (spec.get("names") or {}).get("kind", "")
    entry = _version(crd, version)
    source = ((entry.get("schema") or {}).get("openAPIV3Schema")
              or ((spec.get("validation") or {}).get("openAPIV3Schema")))
    schema: Schema = copy.deepcopy(source) if isinstance(source, dict) else {
        "type": "object", "x-kubernetes-preserve-unknown-fields": True}
    _embedded(schema)
    _type_meta(schema, _OBJECT_META)
    schema["x-kubernetes-group-version-kind"] = [{"group": group, "kind": kind, "version": version}]
    return schema


def openapi_list_schema(crd: dict[str, Any], version: str) -> Schema:
    """The ``<Kind>List`` component schema, items referencing :func:`openapi_schema`'s name."""
    spec = crd.get("spec") or {}
    group, names = spec.get("group", ""), spec.get("names") or {}
    kind, plural = names.get("kind", ""), names.get("plural", "")
    item_ref = COMPONENT_PREFIX + definition_name(group, version, kind)
    schema: Schema = {
        "description": f"{kind}List is a list of {kind}",
        "required": ["items"],
        "properties": {
            "items": {"description": f"List of {plural}. More info: "
                                     "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md",
                      "items": {"$ref": item_ref}, "type": "array"},
        },
    }
    _type_meta(schema, _LIST_META)
    schema["properties"]["metadata"]["description"] = (
        "Standard list metadata. More info: "
        "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds")
    schema["x-kubernetes-group-version-kind"] = [{"group": group, "kind": kind + "List", "version": version}]
    return schema
