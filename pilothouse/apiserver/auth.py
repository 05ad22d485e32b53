"""Authentication and authorization as one layer in front of every handler.

The chain is kube-apiserver's (``pkg/kubeapiserver/authenticator/config.go`` and
``staging/.../endpoints/filters``): request authenticators (x509, then the bearer token
authenticators) joined as a union, ``system:authenticated`` added to whoever they name, anonymous
last and only when nothing was presented (a bad token is a 401, never anonymous); then
impersonation (``Impersonate-*`` headers, checked as the ``impersonate`` verb); then the
authorizers, first to allow wins. The default is still the loopback model: every caller is
``system:admin`` and everything is allowed (``apiserver/authchain.py`` builds the real chain from
the server's flags).

Every route (discovery, OpenAPI, /version, /healthz included) passes :meth:`AuthLayer.middleware`;
the caller is recorded on the request (:data:`CALLER`, what the review APIs answer from) and in a
context variable (:data:`CURRENT_USER`) that the write path reads (privilege-escalation checks).
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import web

from pilothouse.apiserver.requestinfo import RequestInfo, parse_request_info
from pilothouse.machinery.errors import StatusError, forbidden

if TYPE_CHECKING:
    from pilothouse.apiserver.satokens import ServiceAccountTokens
    from pilothouse.apiserver.tokencache import TokenCache

__all__ = [
    "ALL_AUTHENTICATED",
    "ALL_UNAUTHENTICATED",
    "ANONYMOUS",
    "AUTHENTICATED",
    "CALLER",
    "CURRENT_USER",
    "DECISION",
    "REQUEST_INFO",
    "SYSTEM_MASTERS",
    "AllowAll",
    "AlwaysDeny",
    "Anonymous",
    "AuthLayer",
    "Authenticator",
    "Authorizer",
    "BearerToken",
    "Caller",
    "TokenAuthenticator",
    "TokenError",
    "UnionAuthorizer",
    "UserInfo",
    "aggregate",
    "forbidden_error",
    "go_quoted",
    "unauthorized",
    "with_authenticated_group",
]

SYSTEM_MASTERS = "system:masters"
ALL_AUTHENTICATED = "system:authenticated"
ALL_UNAUTHENTICATED = "system:unauthenticated"
ANONYMOUS = "system:anonymous"


@dataclass(frozen=True)
class UserInfo:
    name: str
    groups: tuple[str, ...] = ()
    extra: dict[str, tuple[str, ...]] = field(default_factory=dict)
    uid: str = ""

    def key(self) -> tuple[Any, ...]:
        """Hashable identity for caching decisions about this user."""
        return self._key

    # Both once per UserInfo, as nothing changes one once made: the token file's users and the one
    # x509 keeps per TLS connection are the same objects request after request, so the RBAC cache
    # key and the system:authenticated copy are not rebuilt for every request (a few µs each).
    @cached_property
    def _key(self) -> tuple[Any, ...]:
        return self.name, self.groups, tuple(sorted(self.extra.items())), self.uid

    @cached_property
    def authenticated(self) -> UserInfo:
        """This user in ``system:authenticated`` as well."""
        return UserInfo(self.name, (*self.groups, ALL_AUTHENTICATED), self.extra, self.uid)


class Authenticator(Protocol):
    async def authenticate(self, request: web.Request) -> UserInfo | None:
        """The caller, or None when this authenticator cannot tell (the next one is asked).
        Raises a 401 :class:`StatusError` for credentials it recognises as invalid."""


class TokenAuthenticator(Protocol):
    async def authenticate_token(self, token: str, audiences: tuple[str, ...] = ()) -> UserInfo | None:
        """The user a bearer token stands for (None: not one of ours). ``audiences``: those the
        token must be meant for (TokenReview's ``spec.audiences``); empty means the server's own."""


class Authorizer(Protocol):
    async def authorize(self, user: UserInfo, info: RequestInfo) -> tuple[bool, str]:
        """(allowed, reason)."""


def unauthorized() -> StatusError:
    return StatusError(401, "Unauthorized", "Unauthorized")


class TokenError(Exception):
    """A token authenticator recognised the token as one of its own, and it is not valid: the
    message is what TokenReview's ``status.error`` says (a request with it is a 401 all the same)."""


def go_quoted(items: list[str]) -> str:
    """Go's ``%q`` of a ``[]string``: ``["a" "b"]``."""
    return "[" + " ".join('"' + item.replace("\\", "\\\\").replace('"', '\\"') + '"' for item in items) + "]"


def aggregate(errors: list[str]) -> str:
    """``utilerrors.NewAggregate(...).Error()``: one error as it is, several in brackets."""
    return errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]"


class Anonymous:
    """The loopback model (the default until TLS lands): every caller is the cluster administrator."""

    async def authenticate(self, request: web.Request) -> UserInfo | None:
        return UserInfo("system:admin", (SYSTEM_MASTERS, ALL_AUTHENTICATED))


class BearerToken:
    """``Authorization: Bearer <token>`` through the token authenticators (token file, service
    account JWTs, bootstrap tokens), as ``bearertoken.New`` over a union: a token none of them
    accepts is a 401, so that a bad token never falls through to anonymous."""

    def __init__(self, authenticators: list[TokenAuthenticator], cache: TokenCache | None = None,
                 static: int = 0) -> None:
        self.authenticators = authenticators
        #: kube-apiserver's 10 s success cache over the union (``apiserver/tokencache.py``).
        self.cache = cache
        #: The first ``static`` authenticators are token files, asked ahead of the cache. Upstream
        #: caches them too, but their answer is a map lookup that cannot change, so asking them first
        #: gives what the cache would and costs less than the cache's hash (the benchmark's path).
        self.static = static

    async def authenticate(self, request: web.Request) -> UserInfo | None:
        header = request.headers.get("Authorization", "").strip()
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer":
            return None
        token = token.strip()
        user, _ = await self.review(token) if token else (None, [])
        if user is None:
            raise unauthorized()
        return user

    async def review(self, token: str, audiences: tuple[str, ...] = ()) -> tuple[UserInfo | None, list[str]]:
        """The union of token authenticators: (the first user one of them names, the errors of those
        that recognised the token and refused it)."""
        errors: list[str] = []
        key = None
        for index, authenticator in enumerate(self.authenticators):
            if index == self.static and self.cache is not None:
                key = self.cache.key(token, audiences)
                cached = self.cache.get(key)
                if cached is not None:
                    return cached, []
            try:
                user = await authenticator.authenticate_token(token, audiences)
            except TokenError as error:
                errors.append(str(error))
                continue
            if user is not None:
                if key is not None and self.cache is not None:
                    self.cache.put(key, user)  # successes only: TokenFailureCacheTTL is 0
                return user, []
        return None, errors


def with_authenticated_group(user: UserInfo) -> UserInfo:
    """``group.NewAuthenticatedGroupAdder``: everyone a credential named is in ``system:authenticated``."""
    if user.name == ANONYMOUS or ALL_AUTHENTICATED in user.groups or ALL_UNAUTHENTICATED in user.groups:
        return user
    return user.authenticated


Rules = tuple[list[dict[str, Any]], list[str]]
_EVERYTHING = [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}, {"verbs": ["*"], "nonResourceURLs": ["*"]}]


class AllowAll:
    async def authorize(self, user: UserInfo, info: RequestInfo) -> tuple[bool, str]:
        return True, ""

    def rules_for(self, user: UserInfo, namespace: str) -> Rules:
        """The rules a user holds (SelfSubjectRulesReview): everything, and no errors."""
        return list(_EVERYTHING), []


class AlwaysDeny:
    async def authorize(self, user: UserInfo, info: RequestInfo) -> tuple[bool, str]:
        return False, "Everything is forbidden."

    def rules_for(self, user: UserInfo, namespace: str) -> Rules:
        return [], []


class UnionAuthorizer:
    """``--authorization-mode=A,B``: the first to allow wins; otherwise the reasons, joined."""

    def __init__(self, authorizers: list[Authorizer]) -> None:
        self.authorizers = authorizers

    async def authorize(self, user: UserInfo, info: RequestInfo) -> tuple[bool, str]:
        reasons = []
        for authorizer in self.authorizers:
            allowed, reason = await authorizer.authorize(user, info)
            if allowed:
                return True, reason
            if reason:
                reasons.append(reason)
        return False, ", ".join(reasons)

    def rules_for(self, user: UserInfo, namespace: str) -> Rules:
        """The union rule resolver: every authorizer's rules and errors, concatenated."""
        rules: list[dict[str, Any]] = []
        errors: list[str] = []
        for authorizer in self.authorizers:
            resolve = getattr(authorizer, "rules_for", None)
            if resolve is None:
                errors.append(f"{type(authorizer).__name__} cannot list the rules of a user")
                continue
            more, more_errors = resolve(user, namespace)
            rules += more
            errors += more_errors
        return rules, errors


def forbidden_error(user: UserInfo, info: RequestInfo, reason: str = "") -> StatusError:
    """``responsewriters.Forbidden``: ``forbiddenMessage`` wrapped in ``NewForbidden`` (resource,
    group and name of the request)."""
    if not info.is_resource_request:
        message = f'User "{user.name}" cannot {info.verb} path "{info.path}"'
    else:
        resource = f"{info.resource}/{info.subresource}" if info.subresource else info.resource
        message = (f'User "{user.name}" cannot {info.verb} resource "{resource}" in API group "{info.group}" '
                   + (f'in the namespace "{info.namespace}"' if info.namespace else "at the cluster scope"))
    if reason:
        message += f": {reason}"
    if not info.is_resource_request:
        return StatusError(403, "Forbidden", f"forbidden: {message}", {})
    return forbidden(info.resource, info.group, info.name, message)


@dataclass(frozen=True)
class Caller:
    """Who sent a request and who decides for them: the review APIs (SelfSubjectAccessReview,
    SelfSubjectReview, TokenReview, TokenRequest) answer from these, so they follow whatever chain
    the server runs."""

    user: UserInfo
    authorizer: Authorizer
    layer: AuthLayer | None = None


CALLER = web.RequestKey("pilothouse.caller", Caller)
REQUEST_INFO = web.RequestKey("pilothouse.requestinfo", RequestInfo)
#: For the audit log: who authenticated (before impersonation) and the authorizer's (allowed, reason).
AUTHENTICATED = web.RequestKey("pilothouse.authenticated", UserInfo)
DECISION = web.RequestKey("pilothouse.decision", tuple)
#: The user of the request being served (each aiohttp request runs in a task of its own, so this is
#: per request); None outside a request (bootstrap writes the server makes itself).
CURRENT_USER: contextvars.ContextVar[UserInfo | None] = contextvars.ContextVar("pilothouse_user", default=None)

Impersonator = Callable[[web.Request, UserInfo, "Authorizer"], Awaitable[UserInfo]]


class AuthComponent(Protocol):
    """A part of the chain with state to keep (the RBAC authorizer's watch caches) and hooks on the
    writes of some kinds (its escalation checks)."""

    def start(self) -> None: ...

    async def close(self) -> None: ...

    def storage_hooks(self) -> dict[tuple[str, str], Any]: ...


class AuthLayer:
    def __init__(self, authenticators: list[Authenticator] | None = None,
                 authorizer: Authorizer | None = None, *, anonymous: bool = False,
                 tokens: BearerToken | None = None, impersonate: Impersonator | None = None,
                 service_accounts: ServiceAccountTokens | None = None,
                 components: list[AuthComponent] | None = None) -> None:
        self.authenticators = authenticators or [Anonymous()]
        self.authorizer = authorizer or AllowAll()
        self.anonymous = anonymous
        #: The bearer-token authenticators, which TokenReview asks.
        self.tokens = tokens or BearerToken([])
        self.impersonate = impersonate
        #: The service-account token issuer (TokenRequest), when the chain has one.
        self.service_accounts = service_accounts
        #: Parts with watch caches or storage hooks to start with the server (the RBAC authorizer).
        self.components = components or []
        #: The bearer token of the server's own components (``system:apiserver``, ``system:masters``).
        self.loopback_token = ""

    def start(self) -> None:
        for component in self.components:
            component.start()

    async def close(self) -> None:
        for component in self.components:
            await component.close()

    def storage_hooks(self) -> dict[tuple[str, str], Any]:
        """Hooks keyed as APIServer's hooks are: the requester recorded on CSRs, escalation checks
        on the RBAC kinds' writes."""
        from pilothouse.apiserver.requester import REQUESTER_HOOKS  # it imports this module

        hooks: dict[tuple[str, str], Any] = dict(REQUESTER_HOOKS)
        for component in self.components:
            hooks.update(component.storage_hooks())
        return hooks

    async def authenticate(self, request: web.Request) -> UserInfo:
        for authenticator in self.authenticators:
            user = await authenticator.authenticate(request)
            if user is not None:
                return with_authenticated_group(user)
        if self.anonymous:
            return UserInfo(ANONYMOUS, (ALL_UNAUTHENTICATED,))
        raise unauthorized()

    async def check(self, request: web.Request, info: RequestInfo) -> UserInfo:
        user = request[AUTHENTICATED] = await self.authenticate(request)
        if self.impersonate is not None:
            user = await self.impersonate(request, user, self.authorizer)
        request[CALLER] = Caller(user, self.authorizer, self)
        CURRENT_USER.set(user)
        allowed, reason = request[DECISION] = await self.authorizer.authorize(user, info)
        if not allowed:
            raise forbidden_error(user, info, reason)
        return user

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Every route through the chain; the parsed request info is kept for the REST handler."""
        info = parse_request_info(request.method, request.path, request.query)
        request[REQUEST_INFO] = info
        await self.check(request, info)
        return await handler(request)  # type: ignore[no-any-return]
