"""apiextensions.k8s.io/v1 CustomResourceDefinition: defaults, validation and create/update rules.

As ``apiextensions-apiserver/pkg/apis/apiextensions/v1/defaults.go``, ``.../validation/validation.go``
and ``pkg/registry/customresourcedefinition/strategy.go`` (Kubernetes 1.32). The structural-schema
and printer-column checks of each version are :mod:`pilothouse.machinery.apiextensions`'.
Serving the custom resources a CRD defines is the API server's CRD controller's job, not this
module's.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from pilothouse.machinery import apiextensions as schemas
from pilothouse.machinery.errors import FieldError
from pilothouse.machinery.kinds import vcommon as v
from pilothouse.machinery.kinds.types import Object, ResourceType, Strategy, keep_all_but_status, status_strategy

__all__ = ["CLEANUP_FINALIZER", "CRD", "CRD_STATUS", "RESOURCES", "condition", "storage_version"]

#: Held by a CRD being deleted until its custom resources are gone (kube's CustomResourceCleanupFinalizer).
CLEANUP_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"

_SCOPES = ("Cluster", "Namespaced")
_CONVERSIONS = ("None", "Webhook")


def condition(crd: Object, kind: str) -> dict[str, Any] | None:
    for item in (crd.get("status") or {}).get("conditions") or ():
        if item.get("type") == kind:
            return dict(item)
    return None


def storage_version(crd: Object) -> str | None:
    for version in (crd.get("spec") or {}).get("versions") or ():
        if version.get("storage"):
            return str(version.get("name", ""))
    return None


# ---------------------------------------------------------------------------------------- defaults

def _default(crd: Object) -> None:
    spec = crd.setdefault("spec", {})
    names = spec.setdefault("names", {})
    kind = names.get("kind")
    if kind and not names.get("singular"):
        names["singular"] = str(kind).lower()
    if kind and not names.get("listKind"):
        names["listKind"] = f"{kind}List"
    spec.setdefault("conversion", {"strategy": "None"})
    for version in spec.get("versions") or ():
        if isinstance(version, dict) and not version.get("additionalPrinterColumns"):
            # SetDefaults_CustomResourceDefinitionVersion: an Age column when none is given.
            version["additionalPrinterColumns"] = [
                {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]


# -------------------------------------------------------------------------------------- validation

def _dns1035(path: str, value: Any, detail_prefix: str = "", lower: bool = False) -> list[FieldError]:
    if not value:
        return []
    errs = v.is_dns1035_label(str(value).lower() if lower else str(value))
    return [v.invalid(path, value, detail_prefix + ",".join(errs))] if errs else []


def _validate_names(names: Object, path: str) -> list[FieldError]:
    """ValidateCustomResourceDefinitionNames."""
    errors = _dns1035(f"{path}.plural", names.get("plural"))
    errors += _dns1035(f"{path}.singular", names.get("singular"))
    mixed = "may have mixed case, but should otherwise match: "
    errors += _dns1035(f"{path}.kind", names.get("kind"), mixed, lower=True)
    errors += _dns1035(f"{path}.listKind", names.get("listKind"), mixed, lower=True)
    for index, short in enumerate(names.get("shortNames") or ()):
        errors += _dns1035(f"{path}.shortNames[{index}]", short)
    if names.get("kind") and names.get("kind") == names.get("listKind"):
        errors.append(v.invalid(f"{path}.listKind", names.get("listKind"), "kind and listKind may not be the same"))
    for index, category in enumerate(names.get("categories") or ()):
        errors += _dns1035(f"{path}.categories[{index}]", category)
    return errors


def _validate_schema(schema: Any, path: str) -> list[FieldError]:
    if not isinstance(schema, dict):
        return [v.required(path, "schemas are required")]
    return schemas.validate_crd_schema(schema, path)


def _validate_version(version: Object, path: str) -> list[FieldError]:
    errors = _dns1035(f"{path}.name", version.get("name"))
    if not version.get("name"):
        errors.append(v.required(f"{path}.name"))
    subresources = version.get("subresources") or {}
    schema = (version.get("schema") or {}).get("openAPIV3Schema")
    errors += _validate_schema(schema, f"{path}.schema.openAPIV3Schema")
    scale = subresources.get("scale")
    if isinstance(scale, dict):
        scale_path = f"{path}.subresources.scale"
        for key in ("specReplicasPath", "statusReplicasPath"):
            value = scale.get(key)
            under = ".spec" if key.startswith("spec") else ".status"
            if not value:
                errors.append(v.required(f"{scale_path}.{key}"))
            elif not str(value).startswith(under + "."):
                errors.append(v.invalid(f"{scale_path}.{key}", value, f"should be a json path under {under}"))
    errors += schemas.validate_selectable_fields(version.get("selectableFields"),
                                                 schema if isinstance(schema, dict) else None,
                                                 f"{path}.selectableFields")
    errors += schemas.validate_printer_columns(version.get("additionalPrinterColumns"),
                                               f"{path}.additionalPrinterColumns")
    return errors


def _go_versions(versions: list[Object]) -> v.GoValue:
    """``spec.Versions`` as Go's %#v starts printing it (the fields that decide these errors)."""
    items = ", ".join(f'apiextensions.CustomResourceDefinitionVersion{{Name:"{x.get("name", "")}", '
                      f'Served:{str(bool(x.get("served"))).lower()}, Storage:{str(bool(x.get("storage"))).lower()}}}'
                      for x in versions)
    return v.GoValue(versions, f"[]apiextensions.CustomResourceDefinitionVersion{{{items}}}")


def _validate_spec(spec: Object) -> list[FieldError]:
    errors: list[FieldError] = []
    group = spec.get("group") or ""
    if not group:
        errors.append(v.required("spec.group"))
    elif errs := v.is_dns1123_subdomain(group):
        errors.append(v.invalid("spec.group", group, ",".join(errs)))
    elif len(group.split(".")) < 2:
        errors.append(v.invalid("spec.group", group, "should be a domain with at least one dot"))
    scope = spec.get("scope") or ""
    if not scope:
        errors.append(v.required("spec.scope"))
    elif scope not in _SCOPES:
        errors.append(v.not_supported("spec.scope", scope, _SCOPES))
    versions = [x for x in spec.get("versions") or () if isinstance(x, dict)]
    # Each version's own errors first, then those of the list (as the Go loop reports them).
    for index, version in enumerate(versions):
        errors += _validate_version(version, f"spec.versions[{index}]")
    names_seen = [x.get("name") for x in versions]
    shown = _go_versions(versions)
    if len(set(names_seen)) != len(names_seen):
        errors.append(v.invalid("spec.versions", shown, "must contain unique version names"))
    if sum(1 for x in versions if x.get("storage")) != 1:
        errors.append(v.invalid("spec.versions", shown, "must have exactly one version marked as storage "
                                "version"))
    names = spec.get("names") or {}
    for key in ("plural", "singular", "kind", "listKind"):
        if not names.get(key):
            errors.append(v.required(f"spec.names.{key}"))
    errors += _validate_names(names, "spec.names")
    strategy = (spec.get("conversion") or {}).get("strategy", "None")
    if strategy not in _CONVERSIONS:
        errors.append(v.not_supported("spec.conversion.strategy", strategy, _CONVERSIONS))
    elif strategy == "Webhook":
        # pilothouse calls no conversion webhooks: refuse rather than serve unconverted objects.
        errors.append(v.forbidden("spec.conversion.strategy", "Webhook conversion is not supported by this "
                                  "server; use None"))
    return errors


def _validate(crd: Object) -> list[FieldError]:
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    name = crd["metadata"].get("name", "")
    errors: list[FieldError] = []
    if name != f"{names.get('plural', '')}.{spec.get('group', '')}":
        errors.append(v.invalid("metadata.name", name, 'must be spec.names.plural+"."+spec.group'))
    errors += _validate_spec(spec)
    errors += _validate_names((crd.get("status") or {}).get("acceptedNames") or {}, "status.acceptedNames")
    return errors


def _established(crd: Object) -> bool:
    found = condition(crd, "Established")
    return found is not None and found.get("status") == "True"


def _validate_update(new: Object, old: Object) -> list[FieldError]:
    spec, old_spec = new.get("spec") or {}, old.get("spec") or {}
    errors: list[FieldError] = []
    immutable = [("spec.group", ("group",)), ("spec.names.plural", ("names", "plural"))]
    if _established(old):
        immutable += [("spec.scope", ("scope",)), ("spec.names.kind", ("names", "kind"))]
    for path, keys in immutable:
        now, before = _get(spec, keys), _get(old_spec, keys)
        if now != before:
            errors.append(v.invalid(path, now, "field is immutable"))
    stored = ((new.get("status") or {}).get("storedVersions")) or []
    served = {x.get("name") for x in spec.get("versions") or ()}
    for index, version in enumerate(stored):
        if version not in served:
            errors.append(v.invalid(f"status.storedVersions[{index}]", version, "must appear in spec.versions"))
    return errors


def _get(obj: Object, keys: tuple[str, ...]) -> Any:
    value: Any = obj
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value


# ------------------------------------------------------------------------------ create/update rules

def _add_stored_version(crd: Object) -> None:
    version = storage_version(crd)
    status = crd.setdefault("status", {})
    stored = status.setdefault("storedVersions", [])
    if version and version not in stored:
        stored.append(version)


def _prepare_create(crd: Object) -> None:
    crd["status"] = {"acceptedNames": {"plural": "", "kind": ""}, "storedVersions": []}
    crd["metadata"]["generation"] = 1
    _add_stored_version(crd)


def _prepare_update(new: Object, old: Object) -> None:
    new["status"] = old.get("status") or {}
    generation = old["metadata"].get("generation", 1)
    new["metadata"]["generation"] = generation + 1 if new.get("spec") != old.get("spec") else generation
    _add_stored_version(new)


def _prepare_status_update(new: Object, old: Object) -> None:
    keep_all_but_status(new, old)


def _on_delete_requested(crd: Object) -> None:
    """The first delete holds the CRD until its custom resources are gone (registry/.../etcd.go)."""
    finalizers = crd["metadata"].setdefault("finalizers", [])
    if CLEANUP_FINALIZER not in finalizers:
        finalizers.append(CLEANUP_FINALIZER)
    conditions = [c for c in (crd.setdefault("status", {}).get("conditions") or ()) if c.get("type") != "Terminating"]
    conditions.append({"type": "Terminating", "status": "True", "reason": "InstanceDeletionPending",
                       "message": "CustomResourceDefinition marked for deletion; CustomResource deletion will "
                                  "begin soon", "lastTransitionTime": crd["metadata"].get("deletionTimestamp")})
    crd["status"]["conditions"] = conditions


CRD = Strategy(
    default=_default,
    validate=_validate,
    validate_update=_validate_update,
    prepare_for_create=_prepare_create,
    prepare_for_update=_prepare_update,
    on_delete_requested=_on_delete_requested,
    # Every first delete waits (for the cleanup finalizer above); once marked, finalizers decide.
    deletion_blocked=lambda crd: not crd["metadata"].get("deletionTimestamp")
    or CLEANUP_FINALIZER in (crd["metadata"].get("finalizers") or ()),
)
CRD_STATUS = replace(status_strategy(CRD), prepare_for_update=_prepare_status_update,
                     validate_update=lambda new, _old: _validate_names(
                         (new.get("status") or {}).get("acceptedNames") or {}, "status.acceptedNames"),
                     validate=lambda _crd: [])

RESOURCES: tuple[ResourceType, ...] = (
    ResourceType("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions", False,
                 CRD, ("crd", "crds"), ("api-extensions",), status_strategy=CRD_STATUS),
)
