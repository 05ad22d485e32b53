"""The Swagger 2.0 document kube-apiserver serves at ``/openapi/v2``, as JSON and as gnostic protobuf.

Why: kubectl 1.32 still validates some input on the client against v2. ``create -f``/``apply -f`` of
a ``kind: List`` (what ``kubectl get -o yaml`` writes) has no server-side field validation to lean on
(``v1 List`` has no path in the v3 documents), so kubectl downloads ``/openapi/v2`` and checks each
item against the definition whose ``x-kubernetes-group-version-kind`` matches; a 404 there makes the
whole command fail. ``apply`` also falls back to v2 paths (the ``consumes`` of a ``patch`` operation)
to choose a patch type, and ``explain --output plaintext-openapiv2`` reads v2 definitions.

How: upstream generates v2 and v3 from one spec; we derive v2 from our v3 documents
(:mod:`pilothouse.machinery.openapi`), which already hold the served paths and the official schemas.
The conversion is mechanical: ``#/components/schemas/`` becomes ``#/definitions/``, a reference
wrapped in ``allOf`` is unwrapped (v2 puts ``description`` next to ``$ref``), ``requestBody`` becomes a
``body`` parameter plus ``consumes``, response ``content`` becomes ``schema`` plus ``produces``, and
parameter ``schema`` is flattened into the parameter. The result is built once per resource set,
keyed by the v3 documents' hashes (so it follows custom resources as v3 does), and cached with its
encodings and ETag.
"""

from __future__ import annotations

import gzip
import hashlib
import threading
from collections.abc import Sequence
from typing import Any

import orjson

from pilothouse.machinery import openapi
from pilothouse.machinery.kinds.types import ResourceType
from pilothouse.machinery.openapi_components import COMPONENT_PREFIX
from pilothouse.machinery.protobuf.gnostic import encode_document
from pilothouse.machinery.schema import KUBERNETES_VERSION

__all__ = ["OpenAPIV2", "openapi_v2"]

_DEFINITION_PREFIX = "#/definitions/"
# Swagger 2.0 Schema Object keys (x-* extensions are kept too); OpenAPI 3 additions are dropped.
_SCHEMA_KEYS = frozenset({
    "$ref", "format", "title", "description", "default", "multipleOf", "maximum", "exclusiveMaximum",
    "minimum", "exclusiveMinimum", "maxLength", "minLength", "pattern", "maxItems", "minItems",
    "uniqueItems", "maxProperties", "minProperties", "required", "enum", "additionalProperties", "type",
    "items", "allOf", "properties", "discriminator", "readOnly", "xml", "externalDocs", "example",
})
_OPERATION_KEYS = ("description", "operationId", "tags", "summary", "deprecated")
_VERBS = ("get", "put", "post", "delete", "options", "head", "patch")


class OpenAPIV2:
    """One resource set's v2 document: the JSON form, its bytes, the protobuf bytes and the ETag."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.json = orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
        # As kube-openapi: the upper-case hex SHA-512 of the JSON, shared by both encodings (the
        # response varies by Accept).
        self.etag = hashlib.sha512(self.json).hexdigest().upper()
        self._protobuf: bytes | None = None
        self._gzipped: dict[bool, bytes] = {}
        self._lock = threading.Lock()

    @property
    def protobuf(self) -> bytes:
        """gnostic's ``openapi.v2.Document`` (encoded on first use; most clients want only this)."""
        with self._lock:
            if self._protobuf is None:
                self._protobuf = encode_document(self.document)
            return self._protobuf

    def gzipped(self, protobuf: bool) -> bytes:
        """One encoding gzipped, once (kube-apiserver gzips this large answer too; 0.86 MB → 0.12 MB)."""
        with self._lock:
            cached = self._gzipped.get(protobuf)
        if cached is None:
            cached = gzip.compress(self.protobuf if protobuf else self.json, compresslevel=6)
            with self._lock:
                self._gzipped[protobuf] = cached
        return cached


def schema_v2(schema: Any, *, nullable_allowed: bool = False) -> Any:
    """One OpenAPI 3 schema (as in ``components.schemas``) in Swagger 2.0 form.

    v2 has no ``nullable``; kube-apiserver publishes custom resource schemas to v2 with the rules of
    its ``ToStructuralOpenAPIV2``, repeated here because kubectl's v2 reader is strict (one array
    without ``items`` and it rejects the whole document): a nullable schema loses its type, items and
    properties (kubectl would refuse a null otherwise) and leaves its parent's ``required``; a schema
    that preserves unknown fields loses items and properties; an array left without items loses its
    type. A nullable ``additionalProperties`` just drops the flag. Built-in schemas have none of these.
    """
    if not isinstance(schema, dict):
        return schema
    all_of = schema.get("allOf")
    if isinstance(all_of, list) and len(all_of) == 1 and "$ref" in all_of[0]:
        schema = {**{k: v for k, v in schema.items() if k != "allOf"}, "$ref": all_of[0]["$ref"]}
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key not in _SCHEMA_KEYS and not key.startswith("x-"):
            continue
        if key == "$ref":
            out[key] = _DEFINITION_PREFIX + value.removeprefix(COMPONENT_PREFIX)
        elif key == "properties":
            out[key] = {name: schema_v2(sub) for name, sub in value.items()}
        elif key == "items":
            out[key] = schema_v2(value)
        elif key == "additionalProperties":
            out[key] = schema_v2(value, nullable_allowed=True)
        elif key == "allOf":
            out[key] = [schema_v2(branch) for branch in value]
        else:
            out[key] = value
    if schema.get("nullable") is True and not nullable_allowed:
        for key in ("type", "items", "properties"):
            out.pop(key, None)
    if schema.get("x-kubernetes-preserve-unknown-fields") is True:
        out.pop("items", None)
        out.pop("properties", None)
    if out.get("type") == "array" and "items" not in out:
        del out["type"]
    nullable = {name for name, sub in (schema.get("properties") or {}).items()
                if isinstance(sub, dict) and sub.get("nullable") is True}
    if nullable and "required" in out:
        out["required"] = [name for name in out["required"] if name not in nullable]
        if not out["required"]:
            del out["required"]
    return out


def _parameter(param: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in param.items() if k != "schema"}
    out.update(param.get("schema") or {})  # v2 query/path parameters carry type etc. themselves
    return out


def _first_schema(content: dict[str, Any]) -> Any:
    return next((media["schema"] for media in content.values() if "schema" in media), None)


def _operation(op: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {k: op[k] for k in _OPERATION_KEYS if k in op}
    parameters = [_parameter(p) for p in op.get("parameters", ())]
    body = op.get("requestBody")
    if body is not None:
        content = body.get("content", {})
        parameters.insert(0, {"in": "body", "name": "body", "required": bool(body.get("required")),
                              "schema": schema_v2(_first_schema(content))})
        out["consumes"] = list(content)
    if parameters:
        out["parameters"] = parameters
    produces: list[str] = []
    responses: dict[str, Any] = {}
    for code, response in op.get("responses", {}).items():
        content = response.get("content", {})
        responses[code] = {"description": response.get("description", "")}
        if content:
            responses[code]["schema"] = schema_v2(_first_schema(content))
            produces.extend(m for m in content if m not in produces)
    if produces:
        out["produces"] = produces
    out["responses"] = responses
    out["schemes"] = ["https"]
    out.update({k: v for k, v in op.items() if k.startswith("x-")})
    return out


def _path_item(item: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {verb: _operation(item[verb]) for verb in _VERBS if verb in item}
    if "parameters" in item:
        out["parameters"] = [_parameter(p) for p in item["parameters"]]
    return out


def _build(documents: Sequence[dict[str, Any]]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    definitions: dict[str, Any] = {}
    for document in documents:
        for path, item in document.get("paths", {}).items():
            paths[path] = _path_item(item)
        for name, schema in document.get("components", {}).get("schemas", {}).items():
            if name not in definitions:
                definitions[name] = schema_v2(schema)
    return {
        "definitions": dict(sorted(definitions.items())),
        "info": {"title": "Kubernetes", "version": f"v{KUBERNETES_VERSION}"},
        "paths": dict(sorted(paths.items())),
        "security": [{"BearerToken": []}],
        "securityDefinitions": {"BearerToken": {"description": "Bearer Token authentication",
                                                "in": "header", "name": "authorization", "type": "apiKey"}},
        "swagger": "2.0",
    }


_cache: dict[tuple[tuple[str, str], ...], OpenAPIV2] = {}
_lock = threading.Lock()


def openapi_v2(resources: Sequence[ResourceType]) -> OpenAPIV2:
    """The v2 document for the served resources (shared and cached: do not modify it)."""
    gv_paths = sorted(openapi.openapi_v3_index(resources)["paths"])
    key = tuple((path, (openapi.openapi_v3_document_bytes(path, resources) or (b"", ""))[1])
                for path in gv_paths)
    built = _cache.get(key)
    if built is None:
        with _lock:
            built = _cache.get(key)
            if built is None:
                documents = [openapi.openapi_v3_document(path, resources) or {} for path in gv_paths]
                built = OpenAPIV2(_build(documents))
                if len(_cache) > 4:
                    _cache.clear()  # resource sets change rarely (custom resources): keep the newest few
                _cache[key] = built
    return built
