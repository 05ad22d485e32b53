"""The official Kubernetes object schemas, as shipped by the ``kubernetes-validate`` package.

Why that package: it carries the JSON schemas generated from the real Kubernetes OpenAPI for every
minor release, including descriptions, required fields, ``x-kubernetes-group-version-kind`` and the
patch metadata (``x-kubernetes-patch-merge-key``/``-patch-strategy``, list types). One source then
drives validation, strategic merge patch, server-side apply, the OpenAPI v3 documents and
``kubectl explain``, and none of it is typed in by hand.

Schemas use ``{"$ref": "#/$defs/<name>"}`` references and nullable types (``["string", "null"]``).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import kubernetes_validate
import orjson

__all__ = [
    "KUBERNETES_VERSION",
    "Schema",
    "definition_name",
    "definitions",
    "gvk_index",
    "resolve",
    "schema_for_kind",
    "types_of",
]

Schema = dict[str, Any]

#: The Kubernetes release whose API we emulate.
KUBERNETES_VERSION = "1.32.0"

_REF_PREFIX = "#/$defs/"


@functools.cache
def definitions() -> dict[str, Schema]:
    """All definitions by their OpenAPI name, e.g. ``io.k8s.api.core.v1.Pod``."""
    base = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    path = base / f"v{KUBERNETES_VERSION}-local" / "_definitions.json"
    document = orjson.loads(path.read_bytes())
    defs: dict[str, Schema] = document["$defs"]
    return defs


@functools.cache
def gvk_index() -> dict[tuple[str, str, str], str]:
    """(group, version, kind) -> definition name, from ``x-kubernetes-group-version-kind``."""
    index: dict[tuple[str, str, str], str] = {}
    for name, schema in definitions().items():
        for gvk in schema.get("x-kubernetes-group-version-kind", ()):
            index.setdefault((gvk["group"], gvk["version"], gvk["kind"]), name)
    return index


def definition_name(group: str, version: str, kind: str) -> str | None:
    return gvk_index().get((group, version, kind))


def schema_for_kind(group: str, version: str, kind: str) -> Schema | None:
    name = definition_name(group, version, kind)
    return definitions()[name] if name else None


def resolve(schema: Schema | None) -> Schema:
    """Follow ``$ref`` (and a single-element ``allOf``) to the schema it names."""
    while schema:
        ref = schema.get("$ref")
        if ref is not None:
            schema = definitions()[ref[len(_REF_PREFIX):]]
            continue
        all_of = schema.get("allOf")
        if all_of and len(all_of) == 1:
            schema = all_of[0]
            continue
        return schema
    return {}


def types_of(schema: Schema) -> set[str]:
    """The JSON types a schema admits, without ``null``; empty for ``oneOf``/untyped schemas."""
    declared = schema.get("type")
    if declared is None:
        return set()
    if isinstance(declared, str):
        return {declared} - {"null"}
    return set(declared) - {"null"}
