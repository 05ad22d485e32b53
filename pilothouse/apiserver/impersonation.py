"""Impersonation (``apiserver/pkg/endpoints/filters/impersonation.go``): ``kubectl --as``.

``Impersonate-User`` (a user, or ``system:serviceaccount:<ns>:<name>``), ``Impersonate-Group``
(repeatable), ``Impersonate-Uid`` and ``Impersonate-Extra-<key>`` each need the ``impersonate``
verb on users, groups, serviceaccounts, uids or userextras; a refusal is the same 403 Status as any
other, about the impersonation (``users "bob" is forbidden: User "alice" cannot impersonate ...``).
"""

from __future__ import annotations

from urllib.parse import unquote

from aiohttp import web

from pilothouse.apiserver.auth import (
    ALL_AUTHENTICATED,
    ALL_UNAUTHENTICATED,
    ANONYMOUS,
    Authorizer,
    UserInfo,
    forbidden_error,
)
from pilothouse.apiserver.requestinfo import RequestInfo
from pilothouse.machinery.errors import bad_request

__all__ = ["impersonate"]

_SA_PREFIX = "system:serviceaccount:"
_EXTRA_PREFIX = "impersonate-extra-"


def _attributes(user_name: str) -> RequestInfo:
    if user_name.startswith(_SA_PREFIX) and user_name.count(":") == 3:
        namespace, name = user_name[len(_SA_PREFIX):].split(":")
        return RequestInfo(True, "", "impersonate", "", "", namespace, "serviceaccounts", name)
    return RequestInfo(True, "", "impersonate", "", "", None, "users", user_name)


async def impersonate(request: web.Request, user: UserInfo, authorizer: Authorizer) -> UserInfo:
    """The user to act as: ``user`` itself when no ``Impersonate-*`` header is present."""
    headers = request.headers
    if not any(header[:12].lower() == "impersonate-" for header in headers):
        return user  # the common case, decided in one pass over the header names
    name = headers.get("Impersonate-User", "")
    groups = tuple(headers.getall("Impersonate-Group", []))
    uid = headers.get("Impersonate-Uid", "")
    extra: dict[str, tuple[str, ...]] = {}
    for header in headers:
        if header.lower().startswith(_EXTRA_PREFIX):
            key = unquote(header[len(_EXTRA_PREFIX):]).lower()
            extra[key] = tuple(headers.getall(header))
    if not name and not groups and not uid and not extra:
        return user
    if not name:
        raise bad_request("requested impersonation, but no Impersonate-User was given")
    checks = [_attributes(name)]
    checks += [RequestInfo(True, "", "impersonate", "", "", None, "groups", group) for group in groups]
    if uid:
        checks.append(RequestInfo(True, "", "impersonate", "authentication.k8s.io", "", None, "uids", uid))
    for key, values in extra.items():
        checks += [RequestInfo(True, "", "impersonate", "authentication.k8s.io", "", None, "userextras", value, key)
                   for value in values]
    for info in checks:
        allowed, reason = await authorizer.authorize(user, info)
        if not allowed:
            raise forbidden_error(user, info, reason)
    if not groups and name.startswith(_SA_PREFIX) and name.count(":") == 3:
        namespace = name.split(":")[2]
        groups = ("system:serviceaccounts", f"system:serviceaccounts:{namespace}")
    if name != ANONYMOUS and ALL_AUTHENTICATED not in groups and ALL_UNAUTHENTICATED not in groups:
        groups = (*groups, ALL_AUTHENTICATED)
    return UserInfo(name, groups, extra, uid)
