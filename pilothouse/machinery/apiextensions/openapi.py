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

__all__ = ["definition_name", "list_definition_name", "openapi_list_schema", "openapi_schema", "typed_schema"]

Schema = dict[str, Any]
_OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
_LIST_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta"
#: The reference form of ``machinery.schema`` (the official JSON schemas), which patch and apply read.
SOURCE_PREFIX = "#/$defs/"


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


def _meta_ref(metadata_ref: str, description: str) -> Schema:
    # OpenAPI 3.0 forbids siblings of $ref; kube-openapi wraps such references in allOf.
    return {"allOf": [{"$ref": COMPONENT_PREFIX + metadata_ref}], "description": description}


def _type_meta(schema: Schema, metadata_ref: str) -> None:
    """``addTypeMetaProperties`` plus the ObjectMeta/ListMeta reference."""
    properties = schema.setdefault("properties", {})
    properties["apiVersion"] = {"description": _description("apiVersion"), "type": "string"}
    properties["kind"] = {"description": _description("kind"), "type": "string"}
    properties["metadata"] = _meta_ref(metadata_ref, _description("metadata"))


def _publish(schema: Any) -> None:
    """In place: ``Unfold`` (int-or-string as anyOf), ``addEmbeddedProperties``, non-structural keys out."""
    if not isinstance(schema, dict):
        return
    for name in _NOT_STRUCTURAL:
        schema.pop(name, None)
    for value in (schema.get("properties") or {}).values():
        _publish(value)
    for name in ("items", "additionalProperties"):
        _publish(schema.get(name))
    if schema.get("x-kubernetes-int-or-string"):
        any_of = schema.get("anyOf")
        all_of = schema.get("allOf") or []
        first_any_of = all_of[0].get("anyOf") if all_of and isinstance(all_of[0], dict) else None
        if any_of != _INT_OR_STRING and first_any_of != _INT_OR_STRING:
            if any_of is None:
                schema["anyOf"] = copy.deepcopy(_INT_OR_STRING)
            else:
                schema["allOf"] = [{"anyOf": copy.deepcopy(_INT_OR_STRING)}, *all_of]
    if schema.get("x-kubernetes-embedded-resource"):
        properties = schema.setdefault("properties", {})
        properties["apiVersion"] = {"description": _EMBEDDED_API_VERSION, "type": "string"}
        properties["kind"] = {"description": _EMBEDDED_KIND, "type": "string"}
        properties["metadata"] = _meta_ref(_OBJECT_META, _description("metadata"))
        required = schema.setdefault("required", [])
        for name in ("kind", "apiVersion"):
            if name not in required:
                required.append(name)


def openapi_schema(crd: dict[str, Any], version: str) -> Schema:
    """The component schema of ``version``'s custom resource (a fresh dict), as ``buildKubeNative``."""
    spec = crd.get("spec") or {}
    group, kind = spec.get("group", ""), (spec.get("names") or {}).get("kind", "")
    entry = _version(crd, version)
    source = ((entry.get("schema") or {}).get("openAPIV3Schema")
              or ((spec.get("validation") or {}).get("openAPIV3Schema")))
    schema: Schema
    if isinstance(source, dict):
        schema = copy.deepcopy(source)
        _publish(schema)
        _type_meta(schema, _OBJECT_META)
    else:
        # Without a schema kube-apiserver publishes a bare object: properties would make kubectl
        # refuse every field it does not list.
        schema = {"type": "object"}
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
    schema["properties"]["metadata"] = _meta_ref(_LIST_META, (
        "Standard list metadata. More info: "
        "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds"))
    schema["type"] = "object"
    schema["x-kubernetes-group-version-kind"] = [{"group": group, "kind": kind + "List", "version": version}]
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
