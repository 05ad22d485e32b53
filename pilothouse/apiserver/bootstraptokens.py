"""Bootstrap tokens (``plugin/pkg/auth/authenticator/token/bootstrap``).

A token ``<token-id>.<token-secret>`` names the Secret ``kube-system/bootstrap-token-<token-id>`` of
type ``bootstrap.kubernetes.io/token``; it authenticates as ``system:bootstrap:<token-id>`` in
``system:bootstrappers`` (and the Secret's ``auth-extra-groups``) while the Secret says
``usage-bootstrap-authentication: "true"``, holds the same secret and has not expired. The Secret is
read from the store at each use not answered by ``tokencache.py`` (10 s, as upstream), so deleting
or expiring it ends the token within that.
"""

from __future__ import annotations

import hmac

from pilothouse.apiserver.auth import UserInfo
from pilothouse.apiserver.objects import decode_stored
from pilothouse.machinery.bootstraptoken import BOOTSTRAP_GROUP, SECRET_TYPE, TOKEN_RE, expired, secret_data
from pilothouse.store.interface import Store

__all__ = ["BootstrapTokens"]


class BootstrapTokens:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def authenticate_token(self, token: str, audiences: tuple[str, ...] = ()) -> UserInfo | None:
        match = TOKEN_RE.match(token)
        if match is None:
            return None
        token_id, token_secret = match.groups()
        kv = await self.store.get(f"/registry/core/secrets/kube-system/bootstrap-token-{token_id}")
        if kv is None:
            return None
        secret = decode_stored(kv)
        if secret.get("type") != SECRET_TYPE or secret["metadata"].get("deletionTimestamp"):
            return None
        if secret_data(secret, "token-id") != token_id or not hmac.compare_digest(
                secret_data(secret, "token-secret"), token_secret):
            return None
        if expired(secret) or secret_data(secret, "usage-bootstrap-authentication") != "true":
            return None
        extra = [g.strip() for g in secret_data(secret, "auth-extra-groups").split(",") if g.strip()]
        if any(not g.startswith(BOOTSTRAP_GROUP + ":") for g in extra):
            return None
        return UserInfo(f"system:bootstrap:{token_id}", (BOOTSTRAP_GROUP, *extra))
