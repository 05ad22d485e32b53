"""The agent's port over TLS, authenticated and authorised as kubelet's is.

kubelet serves ``:10250`` over HTTPS with ``--tls-cert-file`` or, without one, a self-signed
certificate it makes for its host; it asks for a client certificate and verifies one if given
(``VerifyClientCertIfGiven``) against ``--client-ca-file``, falls back to a bearer token checked by a
TokenReview (``--authentication-token-webhook``), and authorises every request but ``/healthz`` with a
SubjectAccessReview on ``nodes/<subresource>`` named for the node (``--authorization-mode=Webhook``).
The API server reaches it with its ``kube-apiserver-kubelet-client`` certificate, whose group
``system:masters`` passes that review; anybody else needs ``nodes/proxy`` granted by RBAC.
"""

from __future__ import annotations

import datetime
import os
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography import x509

from pilothouse.components.componentserver import peer_identity
from pilothouse.machinery import pki

__all__ = ["Authenticator", "Authorizer", "Reviews", "auth_middleware", "self_signed_serving", "server_context"]

#: (bearer token) → (user, groups) or None when the token does not authenticate.
Authenticator = Callable[[str], Awaitable[tuple[str, tuple[str, ...]] | None]]
#: (user, groups, verb, subresource) → allowed.
Authorizer = Callable[[str, tuple[str, ...], str, str], Awaitable[bool]]

# kubelet's server/auth.go: the request method names the API verb.
_VERBS = {"POST": "create", "GET": "get", "HEAD": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def self_signed_serving(directory: Path, node_name: str, addresses: list[str]) -> tuple[Path, Path]:
    """``<root-dir>/pki/kubelet.crt`` and ``.key``: kubelet's self-signed serving certificate (a CA
    ``<host>-ca@<time>`` of its own and a certificate for the host signed by it), kept across restarts
    and remade when due. Nobody verifies it by default: kube-apiserver dials agents without
    ``--kubelet-certificate-authority``, and serving CSRs are never auto-approved in Kubernetes."""
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "kubelet.crt", directory / "kubelet.key"
    now = datetime.datetime.now(datetime.UTC)
    if cert_path.exists() and key_path.exists():
        current = x509.load_pem_x509_certificate(cert_path.read_bytes())
        if not pki.needs_renewal(current, now):
            return cert_path, key_path
    ca = pki.new_ca(f"{node_name}-ca@{int(now.timestamp())}", now)
    serving = pki.issue_serving(ca, f"{node_name}@{int(now.timestamp())}", [node_name, "localhost"],
                                [a for a in addresses if a not in ("0.0.0.0", "::")] or ["127.0.0.1"], now)
    _write(cert_path, serving.cert_pem + ca.cert_pem, 0o644)
    _write(key_path, serving.key_pem, 0o600)
    return cert_path, key_path


def server_context(cert_path: Path, key_path: Path, client_ca_pem: bytes) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_path, key_path)
    context.load_verify_locations(cadata=client_ca_pem.decode())
    # VerifyClientCertIfGiven: a certificate from another CA fails the handshake; none at all goes on
    # to the bearer token, then 401.
    context.verify_mode = ssl.CERT_OPTIONAL
    return context


def _subresource(path: str) -> str:
    # kubelet: /stats → stats, /metrics → metrics, /logs → log; everything else (containerLogs, exec,
    # attach, portForward, run) is nodes/proxy.
    for prefix, subresource in (("/stats", "stats"), ("/metrics", "metrics"), ("/logs", "log")):
        if path == prefix or path.startswith(prefix + "/"):
            return subresource
    return "proxy"


def auth_middleware(authenticate_token: Authenticator, authorize: Authorizer) -> Any:
    @web.middleware
    async def middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                         ) -> web.StreamResponse:
        if request.path == "/healthz":
            return await handler(request)
        identity = peer_identity(request)
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if identity is None and scheme.lower() == "bearer" and token.strip():
            identity = await authenticate_token(token.strip())
        if identity is None:
            return web.Response(status=401, text="Unauthorized", content_type="text/plain")
        user, groups = identity
        verb, subresource = _VERBS.get(request.method, request.method.lower()), _subresource(request.path)
        if not await authorize(user, groups, verb, subresource):
            return web.Response(status=403, content_type="text/plain",
                                text=f"Forbidden (user={user}, verb={verb}, resource=nodes, "
                                     f"subresource={subresource})")
        return await handler(request)

    return middleware


class Reviews:
    """TokenReview and SubjectAccessReview against the API server, as the agent's own client (kubelet's
    ``--authentication-token-webhook`` and ``--authorization-mode=Webhook``)."""

    def __init__(self, client: Any, node_name: str) -> None:
        self.client = client
        self.node_name = node_name

    async def authenticate(self, token: str) -> tuple[str, tuple[str, ...]] | None:
        review = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}}
        answer = await self.client.request("POST", "/apis/authentication.k8s.io/v1/tokenreviews", body=review)
        status = (answer or {}).get("status") or {}
        if not status.get("authenticated"):
            return None
        user = status.get("user") or {}
        return str(user.get("username", "")), tuple(user.get("groups") or ())

    async def authorize(self, user: str, groups: tuple[str, ...], verb: str, subresource: str) -> bool:
        review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                  "spec": {"user": user, "groups": list(groups),
                           "resourceAttributes": {"verb": verb, "resource": "nodes", "subresource": subresource,
                                                  "name": self.node_name}}}
        answer = await self.client.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews",
                                           body=review)
        return bool(((answer or {}).get("status") or {}).get("allowed"))
