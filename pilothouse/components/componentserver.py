"""The component server: ``/healthz``, ``/livez``, ``/readyz`` and ``/metrics`` for the scheduler and
the controller manager, served as kube-scheduler (``:10259``) and kube-controller-manager
(``:10257``) serve theirs.

Like theirs it speaks HTTPS only, with ``--tls-cert-file``/``--tls-private-key-file`` or else a
self-signed certificate made in memory at start, and it delegates security to the API server: a
client certificate signed by ``--client-ca-file`` (default: the kubeconfig's cluster CA) is its CN and
O, a bearer token is checked with a TokenReview (neither: ``system:anonymous``), and every path but the
health checks (``--authorization-always-allow-paths``) with a SubjectAccessReview of the
non-resource URL, so RBAC's ``system:monitoring`` role (``get`` on ``/metrics``) is what a scraper
needs. Decisions are cached for ten seconds, as the delegating authenticator and authorizer do by
default. Reviews go through the component's own client (kubeadm passes the component's kubeconfig
as ``--authentication-kubeconfig`` and ``--authorization-kubeconfig`` alike).

The address defaults to loopback, kubeadm's ``--bind-address=127.0.0.1`` (kube's own default is all
interfaces). Metrics are the process's prometheus-client registry: a component is a process.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import ssl
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from cryptography import x509
from prometheus_client import REGISTRY, disable_created_metrics
from prometheus_client.exposition import choose_encoder

from pilothouse.client.kubeconfig import ClientConfig
from pilothouse.client.rest import APIClient
from pilothouse.machinery import pki
from pilothouse.machinery.errors import StatusError

__all__ = ["ALWAYS_ALLOW_PATHS", "ComponentServer", "DelegatedAuth", "ServingOptions", "metrics_response",
           "peer_identity"]

log = logging.getLogger("pilothouse.componentserver")

# Kubernetes' pages carry no ``*_created`` series next to every counter and histogram.
disable_created_metrics()  # type: ignore[no-untyped-call]

#: ``--authorization-always-allow-paths``' default.
ALWAYS_ALLOW_PATHS = frozenset(("/healthz", "/readyz", "/livez"))
#: The delegating authenticator's and authorizer's cache lifetimes (10 s, allowed and denied alike).
CACHE_TTL = 10.0

#: (user, groups) of a request; None when it could not be authenticated.
Identity = tuple[str, tuple[str, ...]]


@dataclass(frozen=True)
class ServingOptions:
    """``--bind-address``, ``--secure-port`` (0: serve nothing) and the serving certificate."""

    secure_port: int
    bind_address: str = "127.0.0.1"
    tls_cert_file: str | None = None
    tls_private_key_file: str | None = None
    #: ``--client-ca-file``: client certificates signed by it authenticate as CN (user) and O (groups);
    #: default: the CA of the component's kubeconfig (the cluster CA, which signs clients in kubeadm)
    client_ca_file: str | None = None


def metrics_response(request: web.Request) -> web.Response:
    """The process's registry in the text format the scraper asks for (Prometheus 0.0.4, or
    OpenMetrics when its Accept prefers it)."""
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return web.Response(body=encoder(REGISTRY), headers={"Content-Type": content_type})


def _status_response(error: StatusError) -> web.Response:
    return web.Response(status=error.code, body=orjson.dumps(error.to_status()), content_type="application/json")


class _TTLCache:
    def __init__(self, ttl: float = CACHE_TTL, limit: int = 4096) -> None:
        self.ttl, self.limit = ttl, limit
        self._entries: dict[Any, tuple[float, Any]] = {}

    def get(self, key: Any) -> tuple[bool, Any]:
        entry = self._entries.get(key)
        if entry is None or entry[0] < time.monotonic():
            return False, None
        return True, entry[1]

    def put(self, key: Any, value: Any) -> None:
        if len(self._entries) >= self.limit:
            self._entries.clear()  # a burst of distinct callers: start over rather than grow
        self._entries[key] = (time.monotonic() + self.ttl, value)


class DelegatedAuth:
    """TokenReview and SubjectAccessReview against the API server (``DelegatingAuthenticationOptions``
    and ``DelegatingAuthorizationOptions``), cached."""

    def __init__(self, client: APIClient) -> None:
        self.client = client
        self._tokens = _TTLCache()
        self._decisions = _TTLCache()

    async def authenticate(self, request: web.Request) -> Identity | None:
        """A verified client certificate first (the TLS handshake checked it against the client CA),
        then a bearer token through a TokenReview; neither is ``system:anonymous``."""
        identity = peer_identity(request)
        if identity is not None:
            return identity
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return "system:anonymous", ("system:unauthenticated",)
        found, identity = self._tokens.get(token)
        if not found:
            review = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}}
            answer = await self.client.request("POST", "/apis/authentication.k8s.io/v1/tokenreviews", body=review)
            status = (answer or {}).get("status") or {}
            user = status.get("user") or {}
            identity = (str(user.get("username", "")), tuple(user.get("groups") or ())) \
                if status.get("authenticated") else None
            self._tokens.put(token, identity)
        return identity

    async def authorize(self, identity: Identity, method: str, path: str) -> bool:
        verb = {"GET": "get", "HEAD": "get", "POST": "create", "PUT": "update", "PATCH": "patch",
                "DELETE": "delete"}.get(method, method.lower())
        key = (identity, verb, path)
        found, allowed = self._decisions.get(key)
        if not found:
            user, groups = identity
            review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                      "spec": {"user": user, "groups": list(groups),
                               "nonResourceAttributes": {"path": path, "verb": verb}}}
            answer = await self.client.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews",
                                               body=review)
            allowed = bool(((answer or {}).get("status") or {}).get("allowed"))
            self._decisions.put(key, allowed)
        return bool(allowed)


def peer_identity(request: web.Request) -> Identity | None:
    """The (user, groups) of the request's verified client certificate (CN and O), if it sent one."""
    transport = request.transport
    ssl_object: Any = transport.get_extra_info("ssl_object") if transport is not None else None
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    if not der:
        return None
    return pki.client_identity(x509.load_der_x509_certificate(der))


def _self_signed_context(bind_address: str, name: str) -> ssl.SSLContext:
    """kube's ``MaybeDefaultWithSelfSignedCerts`` without ``--cert-dir``: a CA and a serving
    certificate for ``localhost`` and the bind address, made now and kept in memory only (Python's
    ssl loads a chain from files, so they pass through a private temporary directory)."""
    now = datetime.datetime.now(datetime.UTC)
    ca = pki.new_ca(f"{name}-ca@{int(now.timestamp())}", now)
    addresses = [a for a in (bind_address, "127.0.0.1") if a not in ("0.0.0.0", "::", "")]
    serving = pki.issue_serving(ca, f"{name}@{int(now.timestamp())}", ["localhost"], addresses, now)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    with tempfile.TemporaryDirectory(prefix="pilothouse-serving-") as directory:
        cert, key = Path(directory) / "tls.crt", Path(directory) / "tls.key"
        cert.write_bytes(serving.cert_pem + ca.cert_pem)
        key.write_bytes(serving.key_pem)
        context.load_cert_chain(cert, key)
    return context


class ComponentServer:
    """One component's health and metrics endpoint."""

    def __init__(self, name: str, options: ServingOptions, target: ClientConfig | None = None, *,
                 ready: Callable[[], bool] = lambda: True) -> None:
        self.name = name
        self.options = options
        self._target = target
        self._ready = ready
        self._client: APIClient | None = None
        self._auth: DelegatedAuth | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0

    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._authorize])
        app.router.add_get("/healthz", self._ok)
        app.router.add_get("/livez", self._ok)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        return app

    def _ssl_context(self) -> ssl.SSLContext:
        if self.options.tls_cert_file and self.options.tls_private_key_file:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.load_cert_chain(self.options.tls_cert_file, self.options.tls_private_key_file)
        else:
            context = _self_signed_context(self.options.bind_address, self.name)
        client_ca = self._client_ca()
        if client_ca:
            context.load_verify_locations(cadata=client_ca.decode())
            # kube's VerifyClientCertIfGiven: a certificate from another CA fails the handshake; none
            # at all goes on to the bearer token, then anonymous
            context.verify_mode = ssl.CERT_OPTIONAL
        return context

    def _client_ca(self) -> bytes | None:
        if self.options.client_ca_file:
            return Path(self.options.client_ca_file).read_bytes()
        # only with delegated authorization: without it, nothing is checked anyway
        return self._target.ca_pem if self._target is not None else None

    async def start(self) -> None:
        """Listen (raises OSError when the port is taken); nothing with ``--secure-port 0``."""
        if self.options.secure_port == 0:
            return
        if self._target is not None:
            self._client = APIClient(self._target, user_agent=f"{self.name}/delegated-auth", timeout=10.0)
            self._auth = DelegatedAuth(self._client)
        runner = web.AppRunner(self.build_app(), access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.options.bind_address, self.options.secure_port,
                           ssl_context=self._ssl_context(), reuse_address=True)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        server: Any = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self.options.secure_port
        log.info("%s serving /healthz and /metrics on https://%s:%d", self.name, self.options.bind_address, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            with contextlib.suppress(Exception):
                await self._runner.cleanup()
            self._runner = None
        if self._client is not None:
            await self._client.close()
            self._client = None

    @web.middleware
    async def _authorize(self, request: web.Request,
                         handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        if request.path in ALWAYS_ALLOW_PATHS or self._auth is None:
            return await handler(request)
        try:
            identity = await self._auth.authenticate(request)
            if identity is None:
                return _status_response(StatusError(401, "Unauthorized", "Unauthorized"))
            if not await self._auth.authorize(identity, request.method, request.path):
                verb = "get" if request.method in ("GET", "HEAD") else request.method.lower()
                return _status_response(StatusError(
                    403, "Forbidden", f'forbidden: User "{identity[0]}" cannot {verb} path "{request.path}"'))
        except Exception as error:  # the API server unreachable: kube answers 500 with the reason
            log.warning("%s: delegated authorization failed: %s", self.name, error)
            return _status_response(StatusError(500, "InternalError", f"Internal error occurred: {error}"))
        return await handler(request)

    async def _ok(self, request: web.Request) -> web.Response:
        return web.Response(text="ok", content_type="text/plain")

    async def _readyz(self, request: web.Request) -> web.Response:
        if not self._ready():
            return web.Response(text="not ready", status=500, content_type="text/plain")
        return web.Response(text="ok", content_type="text/plain")

    async def _metrics(self, request: web.Request) -> web.Response:
        return metrics_response(request)
