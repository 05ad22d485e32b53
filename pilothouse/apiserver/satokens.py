"""Service-account tokens: JWTs this server signs, and the authenticator that accepts them.

As kube-apiserver (``pkg/serviceaccount/claims.go``, ``jwt.go``): RS256 or ES256 with the key of
``--service-account-signing-key-file`` (default ``<data-dir>/pki/sa.key``, an RSA key made on first
start), ``kid`` the SHA-256 of the public key, the claims ``iss``, ``sub``
(``system:serviceaccount:<ns>:<name>``), ``aud``, ``exp``, ``iat``, ``nbf``, ``jti`` and
``kubernetes.io`` {namespace, serviceaccount, pod, secret, node}. A token is accepted only while its
ServiceAccount (and the Pod or Secret it is bound to) exists with the same uid, read from the store,
so deleting the account revokes its tokens at once. PyJWT (over ``cryptography``) does the signing
and verification: a well-kept implementation of the JOSE details (algorithm pinning, time claims).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from pilothouse.apiserver.auth import UserInfo
from pilothouse.apiserver.objects import decode_stored
from pilothouse.machinery.kinds.types import Object
from pilothouse.store.interface import Store

__all__ = ["DEFAULT_ISSUER", "ServiceAccountTokens", "key_id", "load_or_create_signing_key", "load_public_keys"]

DEFAULT_ISSUER = "https://kubernetes.default.svc.cluster.local"
_EXTRA = "authentication.kubernetes.io/"
_MAX_VERIFIED = 10_000
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z ]+)-----.*?-----END \1-----", re.S)

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


def load_or_create_signing_key(path: Path) -> PrivateKey:
    """The PEM private key at ``path``, made (RSA 2048, mode 0600) when there is none."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
        tmp.replace(path)
    loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(loaded, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise ValueError(f"{path}: service account signing key must be RSA or ECDSA")
    return loaded


def load_public_keys(path: Path) -> list[PublicKey]:
    """``--service-account-key-file``: PEM public keys (or private keys, whose public half is used)."""
    keys: list[PublicKey] = []
    for match in _PEM_BLOCK.finditer(path.read_bytes()):
        pem, label = match.group(0), match.group(1)
        loaded: Any = (serialization.load_pem_private_key(pem, password=None).public_key() if b"PRIVATE" in label
                       else serialization.load_pem_public_key(pem))
        if isinstance(loaded, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)):
            keys.append(loaded)
    if not keys:
        raise ValueError(f"{path}: no RSA or ECDSA key found")
    return keys


def key_id(public: PublicKey) -> str:
    """``keyIDFromPublicKey``: base64url(SHA-256(PKIX DER)), unpadded."""
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).decode().rstrip("=")


def _algorithm(key: PrivateKey | PublicKey) -> str:
    return "RS256" if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)) else "ES256"


class ServiceAccountTokens:
    """Issues tokens (TokenRequest) and authenticates them (bearer tokens, TokenReview)."""

    def __init__(self, store: Store, signing_key: PrivateKey, issuer: str = DEFAULT_ISSUER,
                 extra_public_keys: Sequence[PublicKey] = (), api_audiences: Sequence[str] = ()) -> None:
        self.store = store
        self.signing_key = signing_key
        self.issuer = issuer
        self.api_audiences = tuple(api_audiences) or (issuer,)
        publics = [signing_key.public_key(), *extra_public_keys]
        self._verify_keys = {key_id(public): public for public in publics}
        self._kid = key_id(signing_key.public_key())
        #: (token, audiences) -> verified claims: an RSA verification costs more than the rest of a GET.
        self._verified: dict[tuple[str, tuple[str, ...]], dict[str, Any]] = {}

    # ------------------------------------------------------------------ issue

    def issue(self, service_account: Object, audiences: Sequence[str], expiration_seconds: int,
              pod: Object | None = None, secret: Object | None = None, node: Object | None = None) -> tuple[str, int]:
        """(token, expiry as a unix time): ``token.Claims`` signed."""
        now = int(time.time())
        metadata = service_account["metadata"]
        namespace = metadata["namespace"]
        private: dict[str, Any] = {"namespace": namespace,
                                   "serviceaccount": {"name": metadata["name"], "uid": metadata["uid"]}}
        for label, bound in (("pod", pod), ("secret", secret), ("node", node)):
            if bound is not None:
                private[label] = {"name": bound["metadata"]["name"], "uid": bound["metadata"]["uid"]}
        claims = {"aud": list(audiences), "exp": now + expiration_seconds, "iat": now, "iss": self.issuer,
                  "jti": str(uuid.uuid4()), "kubernetes.io": private, "nbf": now,
                  "sub": f"system:serviceaccount:{namespace}:{metadata['name']}"}
        token = jwt.encode(claims, self.signing_key, algorithm=_algorithm(self.signing_key),
                           headers={"kid": self._kid})
        return token, now + expiration_seconds

    # ------------------------------------------------------------- validate

    async def _get(self, key: str) -> Object | None:
        kv = await self.store.get(key)
        return None if kv is None else decode_stored(kv)

    async def _live(self, key: str, uid: str) -> Object | None:
        """The object at ``key`` if it exists with ``uid`` and is not being deleted."""
        obj = await self._get(key)
        if obj is None or obj["metadata"].get("uid") != uid or obj["metadata"].get("deletionTimestamp"):
            return None
        return obj

    async def authenticate_token(self, token: str, audiences: tuple[str, ...] = ()) -> UserInfo | None:
        if token.count(".") != 2:
            return None
        key = (token, audiences)
        claims = self._verified.get(key)
        if claims is None or claims["exp"] <= time.time():
            claims = self._verify(token, audiences)
            if claims is None:
                return None
            if len(self._verified) >= _MAX_VERIFIED:
                self._verified.clear()
            self._verified[key] = claims
        # The signature and times are settled; whether the account (and bound object) still exist is
        # asked at every use, so that deleting them revokes the token at once.
        return await self._user(claims)

    def _verify(self, token: str, audiences: tuple[str, ...]) -> dict[str, Any] | None:
        """The claims of a token this server signed for one of ``audiences``, or None."""
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            return None
        if unverified.get("iss") != self.issuer or "kubernetes.io" not in unverified:
            return None  # someone else's JWT: let the next authenticator try
        key = self._verify_keys.get(header.get("kid", ""))
        for candidate in [key] if key is not None else list(self._verify_keys.values()):
            try:
                return dict(jwt.decode(token, candidate, algorithms=[_algorithm(candidate)],
                                       audience=list(audiences or self.api_audiences), issuer=self.issuer,
                                       options={"require": ["exp", "iat", "sub"]}, leeway=60))
            except jwt.PyJWTError:
                continue
        return None

    async def _user(self, claims: dict[str, Any]) -> UserInfo | None:
        private = claims.get("kubernetes.io") or {}
        namespace = private.get("namespace", "")
        account = private.get("serviceaccount") or {}
        if await self._live(f"/registry/core/serviceaccounts/{namespace}/{account.get('name')}",
                            account.get("uid", "")) is None:
            return None
        extra: dict[str, tuple[str, ...]] = {}
        for label, plural in (("pod", "pods"), ("secret", "secrets")):
            bound = private.get(label)
            if bound is None:
                continue
            key = f"/registry/core/{plural}/{namespace}/{bound.get('name')}"
            if await self._live(key, bound.get("uid", "")) is None:
                return None
            if label == "pod":
                extra[_EXTRA + "pod-name"] = (bound["name"],)
                extra[_EXTRA + "pod-uid"] = (bound["uid"],)
        node = private.get("node")
        if node is not None:
            extra[_EXTRA + "node-name"] = (node["name"],)
            extra[_EXTRA + "node-uid"] = (node["uid"],)
        if claims.get("jti"):
            extra[_EXTRA + "credential-id"] = (f"JTI={claims['jti']}",)
        return UserInfo(f"system:serviceaccount:{namespace}:{account.get('name')}",
                        ("system:serviceaccounts", f"system:serviceaccounts:{namespace}"), extra,
                        account.get("uid", ""))
