"""Dropping the fields a structural schema does not know (``prune``).

A port of ``apiextensions-apiserver/pkg/apiserver/schema/pruning``: everything not named by
``properties``/``additionalProperties``/``items`` is removed, except below
``x-kubernetes-preserve-unknown-fields: true`` and the ``apiVersion``/``kind``/``metadata`` of the
resource root and of every ``x-kubernetes-embedded-resource``. Their ``metadata`` is decoded as
an ObjectMeta instead (``objectmeta.Coerce``), which drops what ObjectMeta lacks: that is done
against the official ObjectMeta schema. The removed paths come back sorted, in the form of
``UnknownFieldPathOptions`` (``spec.foo``, ``spec.items[0].bar``), which ``fieldValidation``
turns into ``unknown field "spec.foo"``.
"""

from __future__ import annotations

from typing import Any

from pilothouse.machinery.apiextensions.nodes import Schema, node, properties
from pilothouse.machinery.schema import definitions, resolve

__all__ = ["META_FIELDS", "OBJECT_META", "prune"]

META_FIELDS = frozenset({"apiVersion", "kind", "metadata"})
OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"


def prune(schema: Schema | None, obj: Any, is_resource_root: bool = True) -> list[str]:
    """Remove unknown fields from ``obj`` in place; return their paths, sorted."""
    s = schema
    if is_resource_root:
        s = {**(schema or {}), "x-kubernetes-embedded-resource": True}
    pruned: list[str] = []
    _prune(obj, s, "", pruned)
    return sorted(pruned)


def _key(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _prune(x: Any, s: Schema | None, path: str, pruned: list[str], preserving: bool = False) -> None:
    """``prune``, or with ``preserving`` (below preserve-unknown-fields) upstream's ``skipPrune``:
    unknown keys stay, known ones are still pruned inside."""
    if s is not None and s.get("x-kubernetes-preserve-unknown-fields"):
        preserving = True
    if preserving and s is None:
        return
    if isinstance(x, dict):
        if s is None:
            pruned.extend(_key(path, name) for name in x)
            x.clear()
            return
        declared = properties(s)
        has_additional = s.get("additionalProperties") is not None
        for name in list(x):
            if s.get("x-kubernetes-embedded-resource") and name in META_FIELDS:
                if name == "metadata":
                    _prune_official(x[name], definitions()[OBJECT_META], _key(path, name), pruned)
                continue
            if name in declared:
                _prune(x[name], declared[name], _key(path, name), pruned)
            elif has_additional:
                _prune(x[name], node(s.get("additionalProperties")), _key(path, name), pruned)
            elif not preserving:
                if name not in META_FIELDS or path:
                    pruned.append(_key(path, name))
                del x[name]
    elif isinstance(x, list):
        items = node(s.get("items")) if s is not None else None
        for i, item in enumerate(x):
            # skipPrune stays in skip mode for items; prune switches back per item's own schema.
            _prune(item, items, f"{path}[{i}]", pruned, preserving)


def _prune_official(x: Any, schema: Schema, path: str, pruned: list[str]) -> None:
    """Drop what a typed Kubernetes struct (an official schema, ``$ref`` and all) does not have."""
    schema = resolve(schema)
    if isinstance(x, dict):
        declared = schema.get("properties")
        additional = schema.get("additionalProperties")
        if isinstance(declared, dict):
            for name in list(x):
                if name in declared:
                    _prune_official(x[name], declared[name], _key(path, name), pruned)
                else:
                    pruned.append(_key(path, name))
                    del x[name]
        elif isinstance(additional, dict):
            for name, value in x.items():
                _prune_official(value, additional, _key(path, name), pruned)
    elif isinstance(x, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(x):
            _prune_official(item, schema["items"], f"{path}[{i}]", pruned)
