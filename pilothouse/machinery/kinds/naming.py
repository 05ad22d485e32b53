"""Which name format each kind requires (Kubernetes' per-kind ``ValidateName`` choice)."""

from __future__ import annotations

from pilothouse.machinery.validation import names

__all__ = ["name_rule"]

# Most kinds take a DNS-1123 subdomain. Namespaces are DNS-1123 labels (they appear inside other
# names); Services are DNS-1035 labels (they become DNS names and environment variables, so they
# must start with a letter).
def name_is_path_segment(name: str, prefix: bool) -> list[str]:
    """``path.IsValidPathSegmentName``: APIServices are named ``<version>.<group>``, and the core
    group's is ``v1.``, which is no DNS subdomain."""
    if name in (".", ".."):
        return [f"may not be '{name}'"]
    return [f"may not contain '{char}'" for char in "/%" if char in name]


_RULES: dict[tuple[str, str], names.NameValidator] = {
    ("", "Namespace"): names.name_is_dns_label,
    ("", "Service"): names.name_is_dns1035_label,
    ("apiregistration.k8s.io", "APIService"): name_is_path_segment,
}


def name_rule(group: str, kind: str) -> names.NameValidator:
    return _RULES.get((group, kind), names.name_is_dns_subdomain)
