"""Which FlowSchema a request matches: ``staging/src/k8s.io/apiserver/pkg/util/flowcontrol/rule.go``.

A schema matches when one of its rules does; a rule matches when one of its subjects is the user and,
for a resource request, one of its resource rules, else one of its non-resource rules, covers the
request. ``*`` matches anything in every list; a namespaced request needs its namespace (or ``*``) in
``namespaces``, a cluster-scoped one needs ``clusterScope``; a non-resource URL ending in ``*`` is a
prefix.
"""

from __future__ import annotations

from typing import Any

from pilothouse.apiserver.auth import UserInfo
from pilothouse.apiserver.requestinfo import RequestInfo
from pilothouse.machinery.meta import Object

__all__ = ["flow_distinguisher", "matches_flowschema"]

_SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"


def _contains(wanted: str, items: list[str] | None) -> bool:
    return bool(items) and ("*" in items or wanted in items)  # type: ignore[operator]


def _matches_subject(user: UserInfo, subject: dict[str, Any]) -> bool:
    kind = subject.get("kind")
    if kind == "User":
        name = (subject.get("user") or {}).get("name")
        return name == "*" or name == user.name
    if kind == "Group":
        name = (subject.get("group") or {}).get("name")
        return name == "*" or name in user.groups
    if kind == "ServiceAccount":
        account = subject.get("serviceAccount") or {}
        prefix = f"{_SERVICE_ACCOUNT_PREFIX}{account.get('namespace')}:"
        if account.get("name") == "*":
            return user.name.startswith(prefix)
        return user.name == f"{prefix}{account.get('name')}"
    return False


def _matches_resource_rule(info: RequestInfo, rule: dict[str, Any]) -> bool:
    resource = f"{info.resource}/{info.subresource}" if info.subresource else info.resource
    if not (_contains(info.verb, rule.get("verbs")) and _contains(info.group, rule.get("apiGroups"))
            and _contains(resource, rule.get("resources"))):
        return False
    if not info.namespace:
        return bool(rule.get("clusterScope"))
    return _contains(info.namespace, rule.get("namespaces"))


def _matches_url(path: str, urls: list[str]) -> bool:
    return any(url in ("*", path) or (url.endswith("*") and path.startswith(url[:-1])) for url in urls)


def _matches_non_resource_rule(info: RequestInfo, rule: dict[str, Any]) -> bool:
    return _contains(info.verb, rule.get("verbs")) and _matches_url(info.path, rule.get("nonResourceURLs") or [])


def matches_flowschema(schema: Object, user: UserInfo, info: RequestInfo) -> bool:
    for rule in (schema.get("spec") or {}).get("rules") or ():
        if not any(_matches_subject(user, subject) for subject in rule.get("subjects") or ()):
            continue
        if info.is_resource_request:
            if any(_matches_resource_rule(info, r) for r in rule.get("resourceRules") or ()):
                return True
        elif any(_matches_non_resource_rule(info, r) for r in rule.get("nonResourceRules") or ()):
            return True
    return False


def flow_distinguisher(schema: Object, user: UserInfo, info: RequestInfo) -> str:
    """``computeFlowDistinguisher``: the user's name (ByUser), the request's namespace (ByNamespace),
    or nothing: all of the schema's requests are one flow."""
    method = ((schema.get("spec") or {}).get("distinguisherMethod") or {}).get("type")
    if method == "ByUser":
        return user.name
    if method == "ByNamespace":
        return info.namespace or ""
    return ""
