"""Bootstrap tokens (``plugin/pkg/auth/authenticator/token/bootstrap``).

A token ``<token-id>.<token-secret>`` names the Secret ``kube-system/bootstrap-token-<token-id>`` of
type ``bootstrap.kubernetes.io/token``; it authenticates as ``system:bootstrap:<token-id>`` in
``system:bootstrappers`` (and the Secret's ``auth-extra-groups``) while the Secret says
``usage-bootstrap-authentication: "true"``, holds the same secret and has not expired. The Secret is
read from the store at each use, so deleting or expiring it ends the token at once.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from datetime import UTC, datetime

from pilothouse.apiserver.auth import UserInfo
from pilothouse.apiserver.objects import decode_stored
from pilothouse.machinery.kinds.types import Object
from pilothouse.store.interface import Store

__all__ = ["BootstrapTokens"]

_TOKEN = re.compile(r"^([a-z0-9]{6})\.([a-z0-9]{16})$")
SECRET_TYPE = "bootstrap.kubernetes.io/token"
BOOTSTRAP_GROUP = "system:bootstrappers"


def _data(secret: Object, key: str) -> str:
    value = (secret.get("data") or {}).get(key)
    if value is not None:
        try:
            return base64.b64decode(value).decode()
        except (binascii.Error, UnicodeDecodeError):
            return ""
    return str((secret.get("stringData") or {}).get(key, ""))


def _expired(secret: Object) -> bool:
    expiration = _data(secret, "expiration")
    if not expiration:
        return False
    try:
        when = datetime.fromisoformat(expiration.replace("Z", "+00:00"))
    except ValueError:
        return True  # an unreadable expiration is treated as expired, as Kubernetes does
    return when <= datetime.now(UTC)


class BootstrapTokens:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def authenticate_token(self, token: str, audiences: tuple[str, ...] = ()) -> UserInfo | None:
        match = _TOKEN.match(token)
        if match is None:
            return None
        token_id, token_secret = match.groups()
        kv = await self.store.get(f"/registry/core/secrets/kube-system/bootstrap-token-{token_id}")
        if kv is None:
            return None
        secret = decode_stored(kv)
        if secret.get("type") != SECRET_TYPE or secret["metadata"].get("deletionTimestamp"):
            return None
        if _data(secret, "token-id") != token_id or not hmac.compare_digest(_data(secret, "token-secret"),
                                                                           token_secret):
            return None
        if _expired(secret) or _data(secret, "usage-bootstrap-authentication") != "true":
            return None
        extra = [g.strip() for g in _data(secret, "auth-extra-groups").split(",") if g.strip()]
        if any(not g.startswith(BOOTSTRAP_GROUP + ":") for g in extra):
            return None
        return UserInfo(f"system:bootstrap:{token_id}", (BOOTSTRAP_GROUP, *extra))
