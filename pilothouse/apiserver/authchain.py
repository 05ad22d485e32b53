"""The authentication and authorization chain, built from the server's flags.

The CLI's defaults (HTTPS, ``--authorization-mode=Node,RBAC``) give kube-apiserver's chain: x509 (the
tls work's authenticator, passed in), bearer tokens (the server's own loopback token, the token file,
service-account JWTs, bootstrap tokens), anonymous when ``--anonymous-auth``, impersonation, then the
``--authorization-mode`` authorizers in order. The opt-out (``--secure=false
--authorization-mode=AlwaysAllow``, no ``--token-auth-file``) is the loopback model: every request is
``system:admin`` and everything is allowed. The service-account token issuer and the token
authenticators exist in both, so TokenRequest (``kubectl create token``) and TokenReview work either way.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pilothouse.apiserver import impersonation
from pilothouse.apiserver.auth import (
    SYSTEM_MASTERS,
    AllowAll,
    AlwaysDeny,
    Anonymous,
    Authenticator,
    AuthLayer,
    Authorizer,
    BearerToken,
    TokenAuthenticator,
    UnionAuthorizer,
    UserInfo,
)
from pilothouse.apiserver.bootstraptokens import BootstrapTokens
from pilothouse.apiserver.nodeauthz import NodeAuthorizer
from pilothouse.apiserver.rbacauthz import RBACAuthorizer
from pilothouse.apiserver.satokens import (
    DEFAULT_ISSUER,
    ServiceAccountTokens,
    load_or_create_signing_key,
    load_public_keys,
)
from pilothouse.apiserver.tokencache import SUCCESS_TTL, TokenCache
from pilothouse.apiserver.tokenfile import TokenFile
from pilothouse.store.interface import Store

__all__ = ["AUTHORIZATION_MODES", "AuthOptions", "build_auth"]

AUTHORIZATION_MODES = ("AlwaysAllow", "AlwaysDeny", "Node", "RBAC")
#: kube-apiserver's loopback client identity (``system:apiserver`` in ``system:masters``).
LOOPBACK_USER = "system:apiserver"


@dataclass
class AuthOptions:
    token_auth_file: str | None = None
    #: Comma list of AUTHORIZATION_MODES; "" is AlwaysAllow. The CLI's default is "Node,RBAC".
    authorization_mode: str = ""
    anonymous_auth: bool = True
    service_account_key_files: list[str] = field(default_factory=list)
    service_account_signing_key_file: str | None = None
    service_account_issuer: str = DEFAULT_ISSUER
    #: Authenticators ahead of the bearer tokens (the x509 client-certificate authenticator).
    request_authenticators: list[Authenticator] = field(default_factory=list)
    #: Serving HTTPS (``--secure``): nobody is trusted for being on loopback.
    tls: bool = False
    #: The loopback token, when given rather than made: ``server --workers`` shares one across workers.
    loopback_token: str = ""
    #: kube-apiserver's ``TokenSuccessCacheTTL`` (no flag there either); 0 turns the cache off.
    token_success_cache_ttl: float = SUCCESS_TTL

    @property
    def secure(self) -> bool:
        """False: the loopback model (plain HTTP, AlwaysAllow alone, no token file, anonymous on), where
        every caller is system:admin: ``--secure=false --authorization-mode=AlwaysAllow``, the opt-out."""
        return bool(self.token_auth_file or self.tls or not self.anonymous_auth or self.modes() != ["AlwaysAllow"])

    def modes(self) -> list[str]:
        modes = [m.strip() for m in (self.authorization_mode or "AlwaysAllow").split(",") if m.strip()]
        unknown = [m for m in modes if m not in AUTHORIZATION_MODES]
        if unknown:
            raise ValueError(f"authorization-mode {unknown[0]!r} is not a valid mode; "
                             f"choose from {', '.join(AUTHORIZATION_MODES)}")
        if len(set(modes)) != len(modes):
            raise ValueError(f"authorization-mode {self.authorization_mode!r} has a mode specified more than once")
        return modes


def _authorizer(options: AuthOptions, store: Store) -> tuple[Authorizer, RBACAuthorizer | None, list[Any]]:
    authorizers: list[Authorizer] = []
    rbac = None
    components: list[Any] = []
    for mode in options.modes():
        if mode == "AlwaysAllow":
            authorizers.append(AllowAll())
        elif mode == "AlwaysDeny":
            authorizers.append(AlwaysDeny())
        elif mode == "Node":
            node = NodeAuthorizer(store)
            authorizers.append(node)
            components.append(node)
        else:
            rbac = RBACAuthorizer(store)
            authorizers.append(rbac)
    chain: Authorizer = authorizers[0] if len(authorizers) == 1 else UnionAuthorizer(authorizers)
    if rbac is not None:
        rbac.chain = chain
        components.append(rbac)
    return chain, rbac, components


def build_auth(options: AuthOptions, store: Store, data_dir: Path) -> AuthLayer:
    """The server's :class:`AuthLayer`; ``layer.loopback_token`` is for its own components."""
    signing_key = load_or_create_signing_key(Path(options.service_account_signing_key_file)
                                             if options.service_account_signing_key_file
                                             else data_dir / "pki" / "sa.key")
    extra_keys = [key for path in options.service_account_key_files for key in load_public_keys(Path(path))]
    service_accounts = ServiceAccountTokens(store, signing_key, options.service_account_issuer, extra_keys)
    loopback_token = options.loopback_token or secrets.token_urlsafe(32)
    token_authenticators: list[TokenAuthenticator] = [
        TokenFile({loopback_token: UserInfo(LOOPBACK_USER, (SYSTEM_MASTERS,), {}, str(uuid.uuid4()))})]
    if options.token_auth_file:
        token_authenticators.append(TokenFile.load(options.token_auth_file))
    static = len(token_authenticators)
    token_authenticators += [service_accounts, BootstrapTokens(store)]
    tokens = BearerToken(token_authenticators, TokenCache(options.token_success_cache_ttl), static)
    if not options.secure:
        # Impersonation too: the loopback admin may act as anyone (``auth whoami --as`` says so).
        layer = AuthLayer([*options.request_authenticators, Anonymous()], AllowAll(), tokens=tokens,
                          impersonate=impersonation.impersonate, service_accounts=service_accounts)
    else:
        authorizer, _, components = _authorizer(options, store)
        layer = AuthLayer([*options.request_authenticators, tokens], authorizer,
                          anonymous=options.anonymous_auth, tokens=tokens,
                          impersonate=impersonation.impersonate, service_accounts=service_accounts,
                          components=components)
    layer.loopback_token = loopback_token
    return layer
