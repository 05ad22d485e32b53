"""Which name format each kind requires (Kubernetes' per-kind ``ValidateName`` choice)."""

from __future__ import annotations

from pilothouse.machinery.validation import names

__all__ = ["name_rule"]

# Most kinds take a DNS-1123 subdomain. Namespaces are DNS-1123 labels (they appear inside other
# names); Services are DNS-1035 labels (they become DNS names and environment variables, so they
# must start with a letter).

_RULES: dict[tuple[str, str], names.NameValidator] = {
    ("", "Namespace"): names.name_is_dns_label,
    ("", "Service"): names.name_is_dns1035_label,
    # RBAC names only have to be one URL path segment (system:node, system:controller:...).
    **{("rbac.authorization.k8s.io", kind): names.name_is_path_segment
       for kind in ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")},
    ("apiregistration.k8s.io", "APIService"): names.name_is_path_segment,
}


def name_rule(group: str, kind: str) -> names.NameValidator:
    return _RULES.get((group, kind), names.name_is_dns_subdomain)
