"""Authentication and authorization as one layer in front of every handler.

Today the server listens on loopback over plain HTTP (kubectl sends no credentials over http:// at
all), so the chain holds one authenticator that names every caller ``system:admin`` and an
authorizer that allows everything. TLS client certificates, bearer tokens and RBAC arrive as further
:class:`Authenticator` and :class:`Authorizer` implementations, with no handler changing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from aiohttp import web

from pilothouse.apiserver.requestinfo import RequestInfo
from pilothouse.machinery.errors import StatusError

__all__ = ["CALLER", "AllowAll", "Anonymous", "AuthLayer", "Authenticator", "Authorizer", "Caller", "UserInfo"]


@dataclass(frozen=True)
class UserInfo:
    name: str
    groups: tuple[str, ...] = ()
    extra: dict[str, tuple[str, ...]] = field(default_factory=dict)


class Authenticator(Protocol):
    async def authenticate(self, request: web.Request) -> UserInfo | None:
        """The caller, or None when this authenticator cannot tell (the next one is asked)."""


class Authorizer(Protocol):
    async def authorize(self, user: UserInfo, info: RequestInfo) -> tuple[bool, str]:
        """(allowed, reason)."""


class Anonymous:
    """Trusts the loopback listener: every caller is the cluster administrator."""

    async def authenticate(self, request: web.Request) -> UserInfo | None:
        return UserInfo("system:admin", ("system:masters", "system:authenticated"))


class AllowAll:
    async def authorize(self, user: UserInfo, info: RequestInfo) -> tuple[bool, str]:
        return True, ""


@dataclass(frozen=True)
class Caller:
    """Who sent a request and who decides for them: the review APIs (SelfSubjectAccessReview,
    SelfSubjectReview, ...) answer from these, so they follow whatever chain the server runs."""

    user: UserInfo
    authorizer: Authorizer


CALLER = web.RequestKey("pilothouse.caller", Caller)


class AuthLayer:
    def __init__(self, authenticators: list[Authenticator] | None = None,
                 authorizer: Authorizer | None = None) -> None:
        self.authenticators = authenticators or [Anonymous()]
        self.authorizer = authorizer or AllowAll()

    async def check(self, request: web.Request, info: RequestInfo) -> UserInfo:
        user = None
        for authenticator in self.authenticators:
            user = await authenticator.authenticate(request)
            if user is not None:
                break
        if user is None:
            raise StatusError(401, "Unauthorized", "Unauthorized")
        request[CALLER] = Caller(user, self.authorizer)
        allowed, reason = await self.authorizer.authorize(user, info)
        if not allowed:
            target = info.resource if info.is_resource_request else info.path
            raise StatusError(403, "Forbidden",
                              f'{target} is forbidden: User "{user.name}" cannot {info.verb} resource '
                              f'"{info.resource}" in API group "{info.group}"'
                              + (f' in the namespace "{info.namespace}"' if info.namespace else "")
                              + (f": {reason}" if reason else ""))
        return user
