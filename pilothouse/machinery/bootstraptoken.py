"""Bootstrap tokens and the join token built on them: pure data, shared by the API server (which
authenticates them), the bootstrap signer (which signs ``cluster-info`` with them), ``pilothouse token``
(which makes them) and the joining agent (which checks the server with them).

* A bootstrap token is ``<token-id>.<token-secret>`` (``[a-z0-9]{6}.[a-z0-9]{16}``), held by the Secret
  ``kube-system/bootstrap-token-<token-id>`` of type ``bootstrap.kubernetes.io/token``
  (``k8s.io/cluster-bootstrap/token/api``).
* The ``kube-public/cluster-info`` ConfigMap holds a kubeconfig with the cluster's CA under
  ``kubeconfig`` and, per signing token, ``jws-kubeconfig-<token-id>``: a detached JWS (HS256 keyed by
  the token secret, ``kid`` the token id) of that kubeconfig. A joiner that reads it anonymously and
  finds its token's signature valid knows the server holds the token (kubeadm's token discovery).
* The join token is k3s's secure form ``K10<ca-hash>::<token-id>.<token-secret>``, where ``<ca-hash>``
  is kubeadm's ``--discovery-token-ca-cert-hash`` without its ``sha256:`` prefix: the hex SHA-256 of
  the CA certificate's DER SubjectPublicKeyInfo (it survives re-encoding of the PEM and a CA re-issued
  with the same key, where k3s's hash of the bundle's bytes would not). A bare ``<id>.<secret>`` is a
  join token without a CA pin, for a plain-HTTP server.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
import string
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pilothouse.machinery.meta import Object

__all__ = [
    "BOOTSTRAP_GROUP",
    "CLUSTER_INFO",
    "DEFAULT_GROUP",
    "JWS_PREFIX",
    "SECRET_PREFIX",
    "SECRET_TYPE",
    "TOKEN_RE",
    "JoinToken",
    "ca_cert_hash",
    "cluster_info_ca",
    "cluster_info_kubeconfig",
    "detached_signature",
    "expiration",
    "expired",
    "generate_token",
    "secret_data",
    "signature_valid",
    "token_secret",
]

SECRET_TYPE = "bootstrap.kubernetes.io/token"
SECRET_PREFIX = "bootstrap-token-"
BOOTSTRAP_GROUP = "system:bootstrappers"
#: The group kubeadm puts its join tokens in; the join RBAC bindings name it.
DEFAULT_GROUP = "system:bootstrappers:kubeadm:default-node-token"
CLUSTER_INFO = "cluster-info"  # kube-public
JWS_PREFIX = "jws-kubeconfig-"
TOKEN_RE = re.compile(r"^([a-z0-9]{6})\.([a-z0-9]{16})$")
_JOIN_RE = re.compile(r"^K10([0-9a-f]{64})::([a-z0-9]{6}\.[a-z0-9]{16})$")
_ALPHABET = string.ascii_lowercase + string.digits



def generate_token() -> str:
    """A fresh ``<id>.<secret>`` from the token alphabet (kubeadm's GenerateBootstrapToken)."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(6)) + "." + \
        "".join(secrets.choice(_ALPHABET) for _ in range(16))


def secret_data(secret: Object, key: str) -> str:
    """A key of a bootstrap-token Secret, from ``data`` (base64) or ``stringData``."""
    value = (secret.get("data") or {}).get(key)
    if value is not None:
        try:
            return base64.b64decode(value).decode()
        except (binascii.Error, UnicodeDecodeError):
            return ""
    return str((secret.get("stringData") or {}).get(key, ""))


def expiration(secret: Object) -> datetime | None:
    """When the token expires (None: never). An unreadable value counts as long expired, as Kubernetes
    treats it."""
    value = secret_data(secret, "expiration")
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)


def expired(secret: Object, now: datetime | None = None) -> bool:
    when = expiration(secret)
    return when is not None and when <= (now or datetime.now(UTC))


def token_secret(token: str, ttl: timedelta | None, *, description: str = "",
                 groups: tuple[str, ...] = (DEFAULT_GROUP,), now: datetime | None = None) -> Object:
    """The Secret ``kubeadm token create`` writes: usable to authenticate and to sign cluster-info."""
    match = TOKEN_RE.match(token)
    if match is None:
        raise ValueError(f"{token!r} is not a bootstrap token ([a-z0-9]{{6}}.[a-z0-9]{{16}})")
    token_id, secret = match.groups()
    data = {"token-id": token_id, "token-secret": secret, "usage-bootstrap-authentication": "true",
            "usage-bootstrap-signing": "true", "auth-extra-groups": ",".join(groups)}
    if description:
        data["description"] = description
    if ttl:
        data["expiration"] = ((now or datetime.now(UTC)) + ttl).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"apiVersion": "v1", "kind": "Secret", "type": SECRET_TYPE,
            "metadata": {"name": SECRET_PREFIX + token_id, "namespace": "kube-system"},
            "data": {key: base64.b64encode(value.encode()).decode() for key, value in data.items()}}


def detached_signature(content: str, token_id: str, secret: str) -> str:
    """The compact JWS of ``content`` without its payload (``header..signature``), as
    ``k8s.io/cluster-bootstrap/token/jws.ComputeDetachedSignature`` makes it (go-jose's header JSON:
    sorted keys, no spaces). HS256 by hand rather than PyJWT: PyJWT warns on every call about the
    16-byte key, which is what the bootstrap-token format fixes."""
    header = _b64url(json.dumps({"alg": "HS256", "kid": token_id}, separators=(",", ":")).encode())
    payload = _b64url(content.encode())
    mac = hmac.new(secret.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}..{_b64url(mac)}"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signature_valid(content: str, signature: str, token_id: str, secret: str) -> bool:
    return hmac.compare_digest(detached_signature(content, token_id, secret), signature)


def ca_cert_hash(ca_pem: bytes) -> str:
    """kubeadm's ``sha256:<hex>`` pin of the first certificate of ``ca_pem`` (its SubjectPublicKeyInfo)."""
    cert = x509.load_pem_x509_certificate(ca_pem)
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(spki).hexdigest()


def cluster_info_kubeconfig(server: str, ca_pem: bytes | None) -> str:
    """The kubeconfig cluster-info carries (kubeadm's: one cluster named "", no users)."""
    cluster: Object = {"server": server}
    if ca_pem:
        cluster["certificate-authority-data"] = base64.b64encode(ca_pem).decode()
    return yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "clusters": [{"name": "", "cluster": cluster}],
                           "contexts": None, "current-context": "", "preferences": {}, "users": None},
                          sort_keys=False)


def cluster_info_ca(cluster_info: Object) -> bytes | None:
    """The CA certificate(s) in a cluster-info ConfigMap's kubeconfig, or None."""
    document = yaml.safe_load((cluster_info.get("data") or {}).get("kubeconfig") or "") or {}
    cluster = ((document.get("clusters") or [{}])[0] or {}).get("cluster") or {}
    data = cluster.get("certificate-authority-data")
    return base64.b64decode(data) if data else None


@dataclass(frozen=True)
class JoinToken:
    token_id: str
    secret: str
    #: ``sha256:<hex>`` or "" (no CA pin: only for a plain-HTTP server).
    ca_hash: str = ""

    @property
    def bootstrap_token(self) -> str:
        return f"{self.token_id}.{self.secret}"

    def __str__(self) -> str:
        if not self.ca_hash:
            return self.bootstrap_token
        return f"K10{self.ca_hash.removeprefix('sha256:')}::{self.bootstrap_token}"

    @classmethod
    def parse(cls, text: str) -> JoinToken:
        text = text.strip()
        ca_hash = ""
        joined = _JOIN_RE.match(text)
        if joined is not None:
            ca_hash, text = "sha256:" + joined.group(1), joined.group(2)
        match = TOKEN_RE.match(text)
        if match is None:
            raise ValueError("the token is neither K10<sha256 of the CA>::<id>.<secret> nor <id>.<secret> "
                             "(as `pilothouse token create` prints it)")
        return cls(match.group(1), match.group(2), ca_hash)
