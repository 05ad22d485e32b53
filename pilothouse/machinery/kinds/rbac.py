"""rbac.authorization.k8s.io/v1: Role, ClusterRole, RoleBinding, ClusterRoleBinding.

Defaults as ``pkg/apis/rbac/v1/defaults.go`` (a binding's ``roleRef.apiGroup``, a subject's
``apiGroup`` by kind), validation as ``pkg/apis/rbac/validation/validation.go`` (with its messages
verbatim: kubectl prints them), strategies as ``pkg/registry/rbac/<kind>/strategy.go``: no status,
PUT may create (``AllowCreateOnUpdate`` is true for all four), a binding's roleRef never changes.
Names are checked by :mod:`~pilothouse.machinery.kinds.naming` (one URL path segment).
"""

from __future__ import annotations

from typing import Any

from pilothouse.machinery.errors import FieldError
from pilothouse.machinery.kinds.fields import cluster_metadata_fields
from pilothouse.machinery.kinds.types import Object, ResourceType, Strategy
from pilothouse.machinery.kinds.vcommon import (
    GoValue,
    go_string_list,
    invalid,
    not_supported,
    required,
    validate_label_selector,
)
from pilothouse.machinery.validation.names import name_is_dns_subdomain, name_is_path_segment

__all__ = [
    "CLUSTERROLE",
    "CLUSTERROLEBINDING",
    "GROUP",
    "RESOURCES",
    "ROLE",
    "ROLEBINDING",
    "default_binding",
    "default_role",
    "validate_binding_update",
    "validate_clusterrole",
    "validate_clusterrolebinding",
    "validate_role",
    "validate_rolebinding",
]

GROUP = "rbac.authorization.k8s.io"

_SUBJECT_KINDS = ("ServiceAccount", "User", "Group")


# -- defaults ------------------------------------------------------------------------------------

def default_binding(binding: Object) -> None:
    """SetDefaults_RoleBinding / SetDefaults_ClusterRoleBinding / SetDefaults_Subject."""
    ref = binding.get("roleRef")
    if isinstance(ref, dict) and not ref.get("apiGroup"):
        ref["apiGroup"] = GROUP
    for subject in binding.get("subjects") or ():
        if isinstance(subject, dict) and not subject.get("apiGroup"):
            if subject.get("kind") in ("User", "Group"):
                subject["apiGroup"] = GROUP
            else:
                # A ServiceAccount's group is the core one, "": Subject.APIGroup is omitempty, so
                # the JSON has no key at all (and client-side apply's last-applied matches it).
                subject.pop("apiGroup", None)


def default_role(role: Object) -> None:
    """``Rules`` is the one field of Role and ClusterRole without ``omitempty``: a role made
    without rules reads back ``"rules": null``, which ``kubectl get -o yaml`` prints."""
    role.setdefault("rules", None)


# -- roles ---------------------------------------------------------------------------------------

def _validate_rule(rule: dict[str, Any], namespaced: bool, path: str) -> list[FieldError]:
    """ValidatePolicyRule."""
    errors: list[FieldError] = []
    if not rule.get("verbs"):
        errors.append(required(f"{path}.verbs", "verbs must contain at least one value"))
    urls = rule.get("nonResourceURLs") or []
    if urls:
        shown = go_string_list(urls)
        if namespaced:
            errors.append(invalid(f"{path}.nonResourceURLs", shown,
                                  "namespaced rules cannot apply to non-resource URLs"))
        if rule.get("apiGroups") or rule.get("resources") or rule.get("resourceNames"):
            errors.append(invalid(f"{path}.nonResourceURLs", shown,
                                  "rules cannot apply to both regular resources and non-resource URLs"))
        return errors
    if not rule.get("apiGroups"):
        errors.append(required(f"{path}.apiGroups", "resource rules must supply at least one api group"))
    if not rule.get("resources"):
        errors.append(required(f"{path}.resources", "resource rules must supply at least one resource"))
    return errors


def _validate_rules(role: Object, namespaced: bool) -> list[FieldError]:
    errors: list[FieldError] = []
    for i, rule in enumerate(role.get("rules") or []):
        errors += _validate_rule(rule or {}, namespaced, f"rules[{i}]")
    return errors


def validate_role(role: Object) -> list[FieldError]:
    return _validate_rules(role, namespaced=True)


def validate_clusterrole(role: Object) -> list[FieldError]:
    errors = _validate_rules(role, namespaced=False)
    rule = role.get("aggregationRule")
    if rule is not None:
        selectors = rule.get("clusterRoleSelectors") or []
        path = "aggregationRule.clusterRoleSelectors"
        if not selectors:
            errors.append(required(path, "at least one clusterRoleSelector required if aggregationRule "
                                         "is non-nil"))
        for i, selector in enumerate(selectors):
            errors += validate_label_selector(selector, f"{path}[{i}]")
    return errors


# -- bindings ------------------------------------------------------------------------------------

def _validate_subject(subject: dict[str, Any], namespaced: bool, path: str) -> list[FieldError]:
    """ValidateRoleBindingSubject."""
    errors: list[FieldError] = []
    name = subject.get("name") or ""
    api_group = subject.get("apiGroup") or ""
    kind = subject.get("kind") or ""
    if not name:
        errors.append(required(f"{path}.name"))
    if kind == "ServiceAccount":
        if name:
            errors += [invalid(f"{path}.name", name, msg) for msg in name_is_dns_subdomain(name, False)]
        if api_group:
            errors.append(not_supported(f"{path}.apiGroup", api_group, ("",)))
        if not namespaced and not subject.get("namespace"):
            errors.append(required(f"{path}.namespace"))
    elif kind in ("User", "Group"):
        if api_group != GROUP:
            errors.append(not_supported(f"{path}.apiGroup", api_group, (GROUP,)))
    else:
        errors.append(not_supported(f"{path}.kind", kind, _SUBJECT_KINDS))
    return errors


def _validate_binding(binding: Object, namespaced: bool) -> list[FieldError]:
    errors: list[FieldError] = []
    ref = binding.get("roleRef") or {}
    if (ref.get("apiGroup") or "") != GROUP:
        errors.append(not_supported("roleRef.apiGroup", ref.get("apiGroup") or "", (GROUP,)))
    kinds = ("Role", "ClusterRole") if namespaced else ("ClusterRole",)
    if ref.get("kind") not in kinds:
        errors.append(not_supported("roleRef.kind", ref.get("kind") or "", kinds))
    name = ref.get("name") or ""
    if not name:
        errors.append(required("roleRef.name"))
    else:
        errors += [invalid("roleRef.name", name, msg) for msg in name_is_path_segment(name, False)]
    for i, subject in enumerate(binding.get("subjects") or []):
        errors += _validate_subject(subject or {}, namespaced, f"subjects[{i}]")
    return errors


def validate_rolebinding(binding: Object) -> list[FieldError]:
    return _validate_binding(binding, namespaced=True)


def validate_clusterrolebinding(binding: Object) -> list[FieldError]:
    return _validate_binding(binding, namespaced=False)


def _go_role_ref(ref: dict[str, Any]) -> GoValue:
    # Kubernetes prints the internal struct with %#v.
    fields = ", ".join(f'{go}:"{ref.get(key) or ""}"'
                       for go, key in (("APIGroup", "apiGroup"), ("Kind", "kind"), ("Name", "name")))
    return GoValue(ref, f"rbac.RoleRef{{{fields}}}")


def validate_binding_update(new: Object, old: Object) -> list[FieldError]:
    """A binding's roleRef is immutable: to point at another role, delete and recreate it."""
    ref = new.get("roleRef") or {}
    if ref != (old.get("roleRef") or {}):
        return [invalid("roleRef", _go_role_ref(ref), "cannot change roleRef")]
    return []


ROLE = Strategy(default=default_role, validate=validate_role, allow_create_on_update=True)
CLUSTERROLE = Strategy(default=default_role, validate=validate_clusterrole, allow_create_on_update=True,
                       selectable_fields=cluster_metadata_fields)
ROLEBINDING = Strategy(default=default_binding, validate=validate_rolebinding,
                       validate_update=validate_binding_update, allow_create_on_update=True)
CLUSTERROLEBINDING = Strategy(default=default_binding, validate=validate_clusterrolebinding,
                              validate_update=validate_binding_update, allow_create_on_update=True,
                              selectable_fields=cluster_metadata_fields)

RESOURCES: tuple[ResourceType, ...] = (
    ResourceType(GROUP, "v1", "ClusterRoleBinding", "clusterrolebindings", False, CLUSTERROLEBINDING),
    ResourceType(GROUP, "v1", "ClusterRole", "clusterroles", False, CLUSTERROLE),
    ResourceType(GROUP, "v1", "RoleBinding", "rolebindings", True, ROLEBINDING),
    ResourceType(GROUP, "v1", "Role", "roles", True, ROLE),
)
