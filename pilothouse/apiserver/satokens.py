"""Service-account tokens: JWTs this server signs, and the authenticator that accepts them.

As kube-apiserver (``pkg/serviceaccount/claims.go``, ``jwt.go``): RS256 or ES256 with the key of
``--service-account-signing-key-file`` (default ``<data-dir>/pki/sa.key``, an RSA key made on first
start), ``kid`` the SHA-256 of the public key, the claims ``iss``, ``sub``
(``system:serviceaccount:<ns>:<name>``), ``aud``, ``exp``, ``iat``, ``nbf``, ``jti`` and
``kubernetes.io`` {namespace, serviceaccount, pod, secret, node}. A token is accepted only while its
ServiceAccount (and the Pod or Secret it is bound to) exists with the same uid, read from the store,
so deleting the account revokes its tokens (within the 10 s of ``tokencache.py``, as upstream).
PyJWT (over ``cryptography``) does the signing
and the signature check, a well-kept implementation of the JOSE details (algorithm pinning); the
audience and time checks are Kubernetes' own, in its order and with its error texts, which
TokenReview reports.
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

from pilothouse.apiserver.auth import TokenError, UserInfo, go_quoted
from pilothouse.apiserver.objects import decode_stored
from pilothouse.machinery.kinds.types import Object
from pilothouse.store.interface import Store

__all__ = ["DEFAULT_ISSUER", "ServiceAccountTokens", "key_id", "load_or_create_signing_key", "load_public_keys"]

DEFAULT_ISSUER = "https://kubernetes.default.svc.cluster.local"
_EXTRA = "authentication.kubernetes.io/"
_MAX_VERIFIED = 10_000
#: jwt.DefaultLeeway: clock skew allowed on exp and nbf.
_LEEWAY = 60
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
        #: token -> claims whose signature verified: an RSA verification costs more than the rest of a GET.
        self._verified: dict[str, dict[str, Any]] = {}

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

    async def authenticate_token(self, token: str, audiences: tuple[str, ...] = ()) -> UserInfo | None:
        """The token's account, None when it is not a token of this issuer, or :class:`TokenError`
        with ``jwt.go``'s and ``claims.go``'s words when it is one but is not valid."""
        if token.count(".") != 2:
            return None
        claims = self._verified.get(token)
        if claims is None:
            claims = self._verify_signature(token)
            if claims is None:
                return None
            if len(self._verified) >= _MAX_VERIFIED:
                self._verified.clear()
            self._verified[token] = claims
        # Only the signature is cached: audiences, times and whether the account (and the object
        # the token is bound to) still exist are checked at every use.
        self._check_audiences(claims, audiences)
        now = time.time()
        if claims.get("exp", 0) + _LEEWAY < now:
            raise TokenError("service account token has expired")
        if claims.get("nbf", 0) - _LEEWAY > now:
            raise TokenError("service account token is not valid yet")
        return await self._user(claims)

    def _verify_signature(self, token: str) -> dict[str, Any] | None:
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            return None
        if unverified.get("iss") != self.issuer or "kubernetes.io" not in unverified:
            return None  # someone else's JWT: let the next authenticator try
        key = self._verify_keys.get(header.get("kid", ""))
        errors = []
        for candidate in [key] if key is not None else list(self._verify_keys.values()):
            try:
                return dict(jwt.decode(token, candidate, algorithms=[_algorithm(candidate)],
                                       options={"verify_exp": False, "verify_nbf": False, "verify_iat": False,
                                                "verify_aud": False}))
            except jwt.PyJWTError:
                errors.append("go-jose/go-jose: error in cryptographic primitive")
        raise TokenError(errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]")

    def _check_audiences(self, claims: dict[str, Any], audiences: tuple[str, ...]) -> None:
        aud = claims.get("aud") or []
        token_audiences = [aud] if isinstance(aud, str) else list(aud)
        wanted = list(audiences or self.api_audiences)
        if not set(token_audiences or self.api_audiences) & set(wanted):
            raise TokenError(f"token audiences {go_quoted(token_audiences)} is invalid for the target audiences "
                             f"{go_quoted(wanted)}")

    async def _get(self, key: str) -> Object | None:
        kv = await self.store.get(key)
        return None if kv is None else decode_stored(kv)

    async def _user(self, claims: dict[str, Any]) -> UserInfo:
        """``validator.Validate``: the account, and the pod or secret the token is bound to, must
        still exist with the uids the token names."""
        private = claims.get("kubernetes.io") or {}
        namespace = private.get("namespace", "")
        account = private.get("serviceaccount") or {}
        name = account.get("name", "")
        found = await self._get(f"/registry/core/serviceaccounts/{namespace}/{name}")
        if found is None:
            raise TokenError(f'serviceaccounts "{name}" not found')
        if found["metadata"].get("deletionTimestamp"):
            raise TokenError(f"service account {namespace}/{name} has been deleted")
        if found["metadata"].get("uid") != account.get("uid"):
            raise TokenError(f"service account UID ({found['metadata'].get('uid')}) does not match claim "
                             f"({account.get('uid')})")
        extra: dict[str, tuple[str, ...]] = {}
        for label, plural in (("secret", "secrets"), ("pod", "pods")):
            bound = private.get(label)
            if bound is None:
                continue
            obj = await self._get(f"/registry/core/{plural}/{namespace}/{bound.get('name')}")
            if obj is None or obj["metadata"].get("deletionTimestamp"):
                raise TokenError("service account token has been invalidated")
            if obj["metadata"].get("uid") != bound.get("uid"):
                raise TokenError(f"{label} UID ({obj['metadata'].get('uid')}) does not match service account "
                                 f"{label} ref claim ({bound.get('uid')})")
            if label == "pod":
                extra[_EXTRA + "pod-name"] = (bound["name"],)
                extra[_EXTRA + "pod-uid"] = (bound["uid"],)
        node = private.get("node")
        if node is not None:
            extra[_EXTRA + "node-name"] = (node["name"],)
            extra[_EXTRA + "node-uid"] = (node["uid"],)
        if claims.get("jti"):
            extra[_EXTRA + "credential-id"] = (f"JTI={claims['jti']}",)
        groups = ("system:serviceaccounts", f"system:serviceaccounts:{namespace}")
        return UserInfo(f"system:serviceaccount:{namespace}:{name}", groups, extra, account.get("uid", ""))
