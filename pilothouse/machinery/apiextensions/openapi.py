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
from pilothouse.machinery.schema import Schema, definitions

__all__ = [
    "definition_name",
    "list_definition_name",
    "openapi_list_schema",
    "openapi_schema",
    "openapi_v2_schema",
    "typed_schema",
]

_OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
_LIST_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta"
#: The reference form of ``machinery.schema`` (the official JSON schemas), which patch and apply read.
SOURCE_PREFIX = "#/$defs/"
_V2_PREFIX = "#/definitions/"


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


_EMBEDDED_API_VERSION = ("apiVersion defines the versioned schema of this representation of an object. More info: "
                         "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources")
_EMBEDDED_KIND = ("kind is a string value representing the type of this object. In CamelCase. More info: "
                  "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds")
_INT_OR_STRING = [{"type": "integer"}, {"type": "string"}]
# Keywords NewStructural does not keep, so the published schema does not have them either.
_NOT_STRUCTURAL = ("example", "externalDocs", "$schema", "id")


def _meta_ref(metadata_ref: str, description: str, v2: bool = False) -> Schema:
    if v2:
        return {"$ref": _V2_PREFIX + metadata_ref, "description": description}
    # OpenAPI 3.0 forbids siblings of $ref; kube-openapi wraps such references in allOf.
    return {"allOf": [{"$ref": COMPONENT_PREFIX + metadata_ref}], "description": description}


def _to_v2(s: Schema) -> None:
    """``ToStructuralOpenAPIV2`` on one node (before its children, as the visitor goes): no
    junctors, nullable and preserve-unknown-fields nodes untyped and without structure (kubectl's
    v2 reader cannot cope with them), nullable fields not required."""
    for name in ("allOf", "oneOf", "anyOf", "not"):
        s.pop(name, None)
    if s.pop("nullable", False):
        s.pop("type", None)
        s.pop("items", None)
        s.pop("properties", None)
    if s.get("x-kubernetes-preserve-unknown-fields"):
        s.pop("items", None)
        s.pop("properties", None)
    if "items" not in s and s.get("type") == "array":
        s.pop("type")
    if s.get("x-kubernetes-preserve-unknown-fields") and s.get("type") == "object":
        s.pop("type")
    nullable = {name for name, prop in (s.get("properties") or {}).items()
                if isinstance(prop, dict) and prop.get("nullable")}
    additional = s.get("additionalProperties")
    if isinstance(additional, dict) and additional.get("nullable"):
        s.pop("required", None)
    elif nullable and "required" in s:
        s["required"] = [name for name in s["required"] if name not in nullable]


def _type_meta(schema: Schema, metadata_ref: str, v2: bool = False) -> None:
    """``addTypeMetaProperties`` plus the ObjectMeta/ListMeta reference."""
    properties = schema.setdefault("properties", {})
    properties["apiVersion"] = {"description": _description("apiVersion"), "type": "string"}
    properties["kind"] = {"description": _description("kind"), "type": "string"}
    properties["metadata"] = _meta_ref(metadata_ref, _description("metadata"), v2)


def _publish(schema: Any, v2: bool = False) -> None:
    """In place: ``Unfold`` (int-or-string as anyOf), ``ToStructuralOpenAPIV2`` for ``v2``,
    ``addEmbeddedProperties``, non-structural keys out."""
    if not isinstance(schema, dict):
        return
    for name in _NOT_STRUCTURAL:
        schema.pop(name, None)
    if schema.get("x-kubernetes-int-or-string") and not v2:
        any_of = schema.get("anyOf")
        all_of = schema.get("allOf") or []
        first_any_of = all_of[0].get("anyOf") if all_of and isinstance(all_of[0], dict) else None
        if any_of != _INT_OR_STRING and first_any_of != _INT_OR_STRING:
            if any_of is None:
                schema["anyOf"] = copy.deepcopy(_INT_OR_STRING)
            else:
                schema["allOf"] = [{"anyOf": copy.deepcopy(_INT_OR_STRING)}, *all_of]
    if v2:
        _to_v2(schema)
    for value in (schema.get("properties") or {}).values():
        _publish(value, v2)
    for name in ("items", "additionalProperties"):
        _publish(schema.get(name), v2)
    if schema.get("x-kubernetes-embedded-resource") and not (v2 and schema.get("x-kubernetes-preserve-unknown-fields")):
        properties = schema.setdefault("properties", {})
        properties["apiVersion"] = {"description": _EMBEDDED_API_VERSION, "type": "string"}
        properties["kind"] = {"description": _EMBEDDED_KIND, "type": "string"}
        properties["metadata"] = _meta_ref(_OBJECT_META, _description("metadata"), v2)
        required = schema.setdefault("required", [])
        for name in ("kind", "apiVersion"):
            if name not in required:
                required.append(name)


def _source(crd: dict[str, Any], version: str) -> Schema | None:
    spec = crd.get("spec") or {}
    entry = _version(crd, version)
    source = ((entry.get("schema") or {}).get("openAPIV3Schema")
              or ((spec.get("validation") or {}).get("openAPIV3Schema")))
    return source if isinstance(source, dict) else None


def _selectable(crd: dict[str, Any], version: str, schema: Schema) -> None:
    """``x-kubernetes-selectable-fields`` (CustomResourceFieldSelectors, GA in 1.32)."""
    fields = _version(crd, version).get("selectableFields") or []
    paths = [str(f.get("jsonPath", "")).removeprefix(".") for f in fields if isinstance(f, dict)]
    if paths:
        schema["x-kubernetes-selectable-fields"] = [{"fieldPath": path} for path in paths]


def _gvk(crd: dict[str, Any], version: str, suffix: str = "") -> list[dict[str, str]]:
    spec = crd.get("spec") or {}
    kind = (spec.get("names") or {}).get("kind", "")
    return [{"group": spec.get("group", ""), "kind": kind + suffix, "version": version}]


def openapi_schema(crd: dict[str, Any], version: str) -> Schema:
    """The component schema of ``version``'s custom resource (a fresh dict), as ``buildKubeNative``."""
    source = _source(crd, version)
    schema: Schema
    if source is not None:
        schema = copy.deepcopy(source)
        _publish(schema)
        _type_meta(schema, _OBJECT_META)
    else:
        # Without a schema kube-apiserver publishes a bare object: properties would make kubectl
        # refuse every field it does not list.
        schema = {"type": "object"}
    schema["x-kubernetes-group-version-kind"] = _gvk(crd, version)
    _selectable(crd, version, schema)
    return schema


def openapi_v2_schema(crd: dict[str, Any], version: str) -> Schema:
    """The Swagger 2.0 definition of ``version``'s custom resource (``/openapi/v2``), with
    ``#/definitions/`` references; a bare object when unknown fields are preserved at the root."""
    source = _source(crd, version)
    schema: Schema
    preserve = bool((crd.get("spec") or {}).get("preserveUnknownFields"))
    if source is None or preserve or source.get("x-kubernetes-preserve-unknown-fields"):
        schema = {"type": "object"}
    else:
        schema = copy.deepcopy(source)
        _publish(schema, v2=True)
        _type_meta(schema, _OBJECT_META, v2=True)
    schema["x-kubernetes-group-version-kind"] = _gvk(crd, version)
    _selectable(crd, version, schema)
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
    schema["properties"]["metadata"] = _meta_ref(_LIST_META, (
        "Standard list metadata. More info: "
        "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds"))
    schema["type"] = "object"
    schema["x-kubernetes-group-version-kind"] = _gvk(crd, version, "List")
    _selectable(crd, version, schema)
    return schema


def _rebase_refs(value: Any, prefix: str) -> Any:
    if isinstance(value, dict):
        out = {k: _rebase_refs(v, prefix) for k, v in value.items()}
        ref = out.get("$ref")
        if isinstance(ref, str) and ref.startswith(COMPONENT_PREFIX):
            out["$ref"] = prefix + ref[len(COMPONENT_PREFIX):]
        return out
    if isinstance(value, list):
        return [_rebase_refs(v, prefix) for v in value]
    return value


def typed_schema(crd: dict[str, Any], version: str) -> Schema:
    """:func:`openapi_schema` with ``#/$defs/`` references, the form ``machinery.schema.resolve``,
    strategic merge patch and server-side apply (``patch.schemainfo``) read."""
    return _rebase_refs(openapi_schema(crd, version), SOURCE_PREFIX)  # type: ignore[no-any-return]
