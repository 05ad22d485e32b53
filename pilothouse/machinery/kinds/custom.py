"""The served resources of a CustomResourceDefinition: one :class:`ResourceType` row per served version.

A custom resource is a row like any built-in, carrying what the built-ins find by group/version/kind
(its schema, table printer, OpenAPI definitions, scale spec and strategy), so the one generic REST
path serves it (``apiextensions-apiserver/pkg/registry/customresource`` is the model for the
strategy). The schema work itself (pruning, instance validation, defaulting, CEL rules, printer
columns, OpenAPI component schemas, the typed schema that patches and server-side apply read) is
:mod:`pilothouse.machinery.apiextensions`'; this module only wires it into a row.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import datetime
from typing import Any

from pilothouse.machinery import apiextensions as schemas
from pilothouse.machinery import meta
from pilothouse.machinery.errors import FieldError
from pilothouse.machinery.kinds.types import (
    Object,
    OpenAPIDefinitions,
    ResourceType,
    ScaleSpec,
    Strategy,
    selectable_metadata,
)
from pilothouse.machinery.tables.columns import NAME, Column, Printer

__all__ = ["custom_resource_types", "json_path", "version_priority"]



# ----------------------------------------------------------------------------------- small helpers

_KUBE_VERSION = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")


def version_priority(name: str) -> tuple[int, int, int, str]:
    """Sort key putting versions in Kubernetes' priority order (v2 > v1 > v1beta2 > v1alpha1 > foo),
    as ``version.CompareKubeAwareVersionStrings``: the first is the preferred version."""
    match = _KUBE_VERSION.match(name)
    if match is None:
        return (3, 0, 0, name)
    major, stage, minor = int(match.group(1)), match.group(2), int(match.group(3) or 0)
    rank = {None: 0, "beta": 1, "alpha": 2}[stage]
    return (rank, -major, -minor, name)


def json_path(path: str) -> tuple[str, ...]:
    """``.spec.replicas`` → ("spec", "replicas"): the simple paths scale subresources take."""
    return tuple(part for part in path.strip().lstrip(".").split(".") if part)


# ------------------------------------------------------------------------------------- the strategy

def _bump_generation(new: Object, old: Object, ignored: tuple[str, ...]) -> None:
    generation = old["metadata"].get("generation", 1)
    changed = any(new.get(k) != old.get(k) for k in set(new) | set(old) if k not in ignored)
    new["metadata"]["generation"] = generation + 1 if changed else generation


def _strategy(group: str, version: str, compiled: schemas.CompiledSchema, crd_version: Object, status_enabled: bool,
              through: int) -> Strategy:
    """customresource/strategy.go over ``compiled``, the version's ``openAPIV3Schema`` compiled once
    here rather than walked per request; objects stored after resourceVersion ``through`` (the
    CRD's) were defaulted by it already."""
    schema = compiled.schema
    api_version = f"{group}/{version}"
    selectable = [(f["jsonPath"], json_path(f["jsonPath"])) for f in crd_version.get("selectableFields") or ()
                  if isinstance(f, dict) and f.get("jsonPath")]

    def default(obj: Object) -> None:
        compiled.default(obj)

    def decorate(obj: Object) -> None:
        # Read from storage: "None" conversion only rewrites apiVersion; defaults apply on read too.
        obj["apiVersion"] = api_version
        compiled.default(obj)

    def validate(obj: Object) -> list[FieldError]:
        return (schemas.validate_instance(schema, obj, valid=compiled.valid)
                + schemas.validate_rules(schema, obj, None))

    def validate_update(new: Object, old: Object) -> list[FieldError]:
        # The rules see the old object: transition rules (oldSelf), and ratcheting of unchanged values.
        return (schemas.validate_instance(schema, new, valid=compiled.valid)
                + schemas.validate_rules(schema, new, old))

    def prepare_for_create(obj: Object) -> None:
        if status_enabled:
            obj.pop("status", None)  # the main resource never sets status when /status exists
        obj["metadata"]["generation"] = 1

    def prepare_for_update(new: Object, old: Object) -> None:
        if status_enabled:
            if "status" in old:
                new["status"] = old["status"]
            else:
                new.pop("status", None)
            _bump_generation(new, old, ("metadata", "status"))
        else:
            _bump_generation(new, old, ("metadata",))

    def selectable_fields(obj: Object) -> dict[str, str]:
        fields = selectable_metadata(obj)
        for text, path in selectable:
            value = meta.get_path(obj, path)
            fields[text.lstrip(".")] = "" if value is None else (
                str(value).lower() if isinstance(value, bool) else str(value))
        return fields

    return Strategy(default=default, validate=validate, validate_update=validate_update,
                    prepare_for_create=prepare_for_create, prepare_for_update=prepare_for_update,
                    selectable_fields=selectable_fields, decorate=decorate, decorated_through=through,
                    validate_update_alone=True)


def _keep_all_but_status(new: Object, old: Object) -> None:
    """customresource/status_strategy.go: /status changes status only; the managedFields written
    for the change are kept (built-ins also let /status set annotations, custom resources do not)."""
    status = new.get("status")
    managed = (new.get("metadata") or {}).get("managedFields")
    new.clear()
    new.update(meta.clone(old))
    new["metadata"].pop("managedFields", None)
    if managed is not None:
        new["metadata"]["managedFields"] = managed
    if status is None:
        new.pop("status", None)
    else:
        new["status"] = status


def _status_strategy(main: Strategy) -> Strategy:
    return replace(main, prepare_for_update=_keep_all_but_status)


# ---------------------------------------------------------------------------- printer and OpenAPI

def _printer(columns: list[Object]) -> Printer:
    definitions, cells = schemas.printer_columns(columns)
    table_columns = [NAME] + [Column(d["name"], d.get("type", "string"), d.get("description", ""),
                                     d.get("format", ""), int(d.get("priority", 0))) for d in definitions]

    def row(obj: Object, now: datetime) -> list[Any]:
        return [obj["metadata"].get("name", ""), *cells(obj, now)]

    return Printer(tuple(table_columns), row)


def _openapi(crd: Object, group: str, version: str, kind: str) -> OpenAPIDefinitions:
    name = schemas.definition_name(group, version, kind)
    list_name = schemas.list_definition_name(group, version, kind)
    metadata = crd.get("metadata") or {}
    # The documents are cached per resource set; a changed CRD (new generation) builds new ones.
    revision = f"{metadata.get('uid', '')}/{metadata.get('generation', '')}"
    return OpenAPIDefinitions(name, list_name, {name: schemas.openapi_schema(crd, version),
                                                list_name: schemas.openapi_list_schema(crd, version)}, revision)


def _deprecation(crd: Object, crd_version: Object) -> tuple[str, ...]:
    """The warning of a deprecated version (customresource_handler.go's defaultDeprecationWarning):
    its own ``deprecationWarning``, else which served, undeprecated, newer version to use."""
    if not crd_version.get("deprecated"):
        return ()
    if crd_version.get("deprecationWarning") is not None:
        return (str(crd_version["deprecationWarning"]),)
    spec = crd["spec"]
    group, kind, name = spec.get("group", ""), (spec.get("names") or {}).get("kind", ""), crd_version["name"]
    message = f"{group}/{name} {kind} is deprecated"
    newer = sorted((v["name"] for v in spec.get("versions") or ()
                    if v.get("served") and not v.get("deprecated")
                    and version_priority(v.get("name", "")) < version_priority(name)), key=version_priority)
    if newer:
        message += f"; use {group}/{newer[0]} {kind}"
    return (message,)


# ------------------------------------------------------------------------------------------ the rows

def custom_resource_types(crd: Object) -> list[ResourceType]:
    """The rows to serve for ``crd`` under its accepted names, preferred version first."""
    spec = crd.get("spec") or {}
    names = (crd.get("status") or {}).get("acceptedNames") or spec.get("names") or {}
    group, kind, plural = spec.get("group", ""), names.get("kind", ""), names.get("plural", "")
    versions = sorted((v for v in spec.get("versions") or () if v.get("served")),
                      key=lambda v: version_priority(v.get("name", "")))
    # Objects written after the CRD was (the stored form carries no resourceVersion: 0 = always).
    through = int((crd.get("metadata") or {}).get("resourceVersion") or 0) or 1 << 62
    rows: list[ResourceType] = []
    for crd_version in versions:
        version = crd_version["name"]
        subresources = crd_version.get("subresources") or {}
        status_enabled = "status" in subresources
        schema = (crd_version.get("schema") or {}).get("openAPIV3Schema") or {"type": "object"}
        compiled = schemas.compile_schema(schema)
        strategy = _strategy(group, version, compiled, crd_version, status_enabled, through)
        scale = None
        if isinstance(subresources.get("scale"), dict):
            spec_scale = subresources["scale"]
            scale = ScaleSpec(json_path(spec_scale.get("specReplicasPath", "")),
                              json_path(spec_scale.get("statusReplicasPath", "")),
                              json_path(spec_scale.get("labelSelectorPath") or ""))
        rows.append(ResourceType(
            group, version, kind, plural, spec.get("scope") == "Namespaced", strategy,
            tuple(names.get("shortNames") or ()), tuple(names.get("categories") or ()),
            status_strategy=_status_strategy(strategy) if status_enabled else None, scale=scale,
            schema=schemas.typed_schema(crd, version), prune=compiled.prune,  # ObjectMeta's unknown fields included
            printer=_printer(crd_version.get("additionalPrinterColumns") or []),
            openapi=_openapi(crd, group, version, kind), strategic_merge_patch=False,
            singular_name=names.get("singular", ""), list_kind_name=names.get("listKind", ""),
            warnings=_deprecation(crd, crd_version),
        ))
    return rows
