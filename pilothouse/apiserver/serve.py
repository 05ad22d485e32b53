"""Running the API server: open the store, bootstrap, listen, write a kubeconfig, stop cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml
from aiohttp import web

from pilothouse.apiserver import audit, authtrust, memdump, uploadcerts
from pilothouse.apiserver.app import APIServer
from pilothouse.apiserver.authchain import AuthOptions, build_auth
from pilothouse.apiserver.datadir import prepare_data_dir
from pilothouse.apiserver.encryption import wrap_store
from pilothouse.apiserver.flowcontrol.controller import PriorityAndFairness
from pilothouse.apiserver.insecure import start_insecure
from pilothouse.apiserver.legacyapi import enable_runtime_config
from pilothouse.apiserver.masterendpoints import advertise_address
from pilothouse.apiserver.pkidir import ClusterPKI, TLSOptions
from pilothouse.apiserver.requestlimits import RequestLimitOptions
from pilothouse.apiserver.requestlimits import install as install_request_limits
from pilothouse.apiserver.x509auth import X509Authenticator
from pilothouse.machinery.kubeconfig import build_kubeconfig
from pilothouse.machinery.pki import CertKey
from pilothouse.store import open_store
from pilothouse.store.interface import Store
from pilothouse.store.metrics import InstrumentedStore

__all__ = ["RunningServer", "ServerConfig", "freebind_socket", "start_server", "write_kubeconfig"]

log = logging.getLogger("pilothouse.apiserver")
#: linux/in.h; the socket module names it only from Python 3.12
_IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)


@dataclass
class ServerConfig:
    data_dir: Path
    bind_address: str = "127.0.0.1"
    port: int = 6443
    datastore_endpoint: str = ""
    service_cluster_ip_range: str = "10.96.0.0/12"
    #: Seconds between store compactions (kube-apiserver's --etcd-compaction-interval, 5m).
    compaction_interval: float = 300.0
    #: TLS to etcd (kube-apiserver's --etcd-cafile/--etcd-certfile/--etcd-keyfile).
    etcd_cafile: str | None = None
    etcd_certfile: str | None = None
    etcd_keyfile: str | None = None
    #: kube-apiserver's --encryption-provider-config (and its -automatic-reload): Secrets at rest.
    encryption_provider_config: str = ""
    encryption_provider_config_automatic_reload: bool = False
    #: Authentication and authorization (``--token-auth-file``, ``--authorization-mode``, ...).
    auth: AuthOptions = field(default_factory=AuthOptions)
    #: HTTPS with the cluster CA in <data-dir>/pki and x509 client certificates (issue 11); plain
    #: HTTP on loopback, everyone system:admin, when False.
    secure: bool = False
    tls: TLSOptions = field(default_factory=TLSOptions)
    #: kube-apiserver 1.x's ``--insecure-port`` (0: none) and ``--insecure-bind-address``: plain HTTP
    #: without authentication or authorization (apiserver/insecure.py).
    insecure_port: int = 0
    insecure_bind_address: str = "127.0.0.1"
    #: kube-apiserver's --advertise-address: the endpoint of the ``kubernetes`` Service (default from
    #: the bind address, see apiserver/masterendpoints.py)
    advertise_address: str = ""
    #: more addresses to serve on, bound even before they exist on the host (``IP_FREEBIND``): ``up``
    #: adds its pod bridge's gateway, which the agent creates later (see cli/podfacing.py)
    extra_bind_addresses: tuple[str, ...] = ()
    #: kube-apiserver's ``--runtime-config``; ``api/v1beta1=true`` serves the seed's legacy Minion.
    runtime_config: str = ""
    #: --max-requests-inflight, --max-mutating-requests-inflight, --request-timeout, --min-request-timeout
    limits: RequestLimitOptions = field(default_factory=RequestLimitOptions)
    #: kube-apiserver's --etcd-count-metric-poll-period: seconds between counts of each resource's
    #: objects for apiserver_storage_objects (0: never).
    count_metric_poll_period: float = 60.0
    #: kube-apiserver's --audit-* flags (off unless a log path and a policy file are both given).
    audit: audit.AuditLogOptions = field(default_factory=audit.AuditLogOptions)
    #: ``server --workers``: request-serving processes over one SQLite file, this one's index (0 is the
    #: leader: compaction, the insecure port, extra addresses, the kubeconfig; see cli/workers.py).
    workers: int = 1
    worker_index: int = 0
    #: kube-apiserver's --event-ttl in seconds: how long an Event lives after its last write (0: forever).
    event_ttl: int = 3600

    def store_options(self) -> dict[str, object]:
        options: dict[str, object] = {"compact_interval": self.compaction_interval if not self.worker_index else 0}
        if self.workers > 1:
            if not self.endpoint().startswith("sqlite:"):
                raise ValueError("--workers needs the embedded SQLite store")
            options.update(workers=self.workers, worker_index=self.worker_index)
            if self.worker_index:
                options["sweep_interval"] = 0  # the leader deletes the expired keys for all
        tls = {"ca_file": self.etcd_cafile, "cert_file": self.etcd_certfile, "key_file": self.etcd_keyfile}
        if any(tls.values()) and not self.endpoint().startswith("etcd+https:"):
            raise ValueError("--etcd-cafile/--etcd-certfile/--etcd-keyfile need an https etcd endpoint "
                             "(etcd+https://host:2379 or --etcd-servers https://host:2379)")
        if not self.endpoint().startswith("sqlite:"):
            options.update(tls)
        return options

    def endpoint(self) -> str:
        return self.datastore_endpoint or f"sqlite://{self.data_dir / 'state.db'}"

    @property
    def kubeconfig_path(self) -> Path:
        return self.data_dir / "kubeconfig.yaml"

    @property
    def url(self) -> str:
        host = self.bind_address
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        return f"{'https' if self.secure else 'http'}://{host}:{self.port}"


@dataclass
class RunningServer:
    config: ServerConfig
    store: Store
    api: APIServer
    runner: web.AppRunner
    port: int
    pki: ClusterPKI | None = None
    renewal: asyncio.Task[None] | None = None
    #: Keeps kube-system/extension-apiserver-authentication current (:mod:`authtrust`).
    auth_trust: asyncio.Task[None] | None = None
    insecure: web.AppRunner | None = None
    audit: audit.LogBackend | None = None

    @property
    def url(self) -> str:
        host = self.config.bind_address
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        return f"{'https' if self.config.secure else 'http'}://{host}:{self.port}"

    def component_kubeconfig(self, name: str, user: str, groups: Iterable[str] = ()) -> Path:
        """``<data-dir>/<name>.conf`` for a component that reaches this server (kubeadm's
        ``scheduler.conf``, ``controller-manager.conf``, ``kubelet.conf``): the CA and a client
        certificate for ``user`` when serving HTTPS, the bare URL otherwise."""
        path = self.config.data_dir / f"{name}.conf"
        credentials = self.pki.issue_client(user, groups) if self.pki is not None else None
        write_kubeconfig(path, self.url, ca_pem=self.pki.ca_bundle() if self.pki else None,
                         credentials=credentials, user=user if credentials else "admin")
        return path

    async def stop(self) -> None:
        for task in (self.renewal, self.auth_trust):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        with contextlib.suppress(Exception):
            await self.runner.cleanup()
        if self.insecure is not None:
            with contextlib.suppress(Exception):
                await self.insecure.cleanup()
        await self.api.close()
        if self.audit is not None:
            await self.audit.close()
        await self.store.close()


def write_kubeconfig(path: Path, server_url: str, cluster_name: str = "pilothouse", *,
                     ca_pem: bytes | None = None, credentials: CertKey | None = None, user: str = "admin") -> None:
    """A kubeconfig like kubeadm's admin.conf: one cluster, one user, one current context, the CA and
    the client certificate embedded when the server speaks HTTPS."""
    config = build_kubeconfig(server_url, cluster=cluster_name, user=user, ca_pem=ca_pem,
                              cert_pem=credentials.cert_pem if credentials else None,
                              key_pem=credentials.key_pem if credentials else None)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(config, sort_keys=False))
    os.chmod(tmp, 0o600)
    tmp.replace(path)


def _secure_pki(config: ServerConfig) -> ClusterPKI:
    """The cluster PKI, created or renewed as needed, before anything listens."""
    network = ipaddress.ip_network(config.service_cluster_ip_range, strict=False)
    cluster_pki = ClusterPKI(config.data_dir / "pki", config.tls)
    cluster_pki.ensure(config.bind_address, str(network.network_address + 1))
    return cluster_pki


def _certificate_key(config: ServerConfig) -> str:
    """``--certificate-key``, or a new one printed for the operator, as ``kubeadm init --upload-certs``."""
    if not config.tls.certificate_key:
        config.tls.certificate_key = uploadcerts.new_key()
        log.warning("[upload-certs] Using certificate key:\n%s", config.tls.certificate_key)
    return config.tls.certificate_key


def freebind_socket(address: str, port: int) -> socket.socket:
    """A listening TCP socket on ``address:port`` that may be bound before the address is configured
    (Linux's ``IP_FREEBIND``): the pod bridge's gateway appears when the agent creates the bridge."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_IP, _IP_FREEBIND, 1)
        sock.bind((address, port))
        sock.listen(1024)
    except BaseException:
        sock.close()
        raise
    return sock


def worker_header(index: int) -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
    """``X-Pilothouse-Worker: <index>`` on every response of ``server --workers``: which process
    answered (for diagnosis and the tests of cli/workers.py, since the kernel picks the worker)."""
    async def add(request: web.Request, response: web.StreamResponse) -> None:
        response.headers["X-Pilothouse-Worker"] = str(index)
    return add


def flow_control(limits: RequestLimitOptions, store: Store) -> PriorityAndFairness | None:
    """Priority and fairness over ``--max-requests-inflight`` + ``--max-mutating-requests-inflight``
    seats (kube-apiserver's server concurrency limit), unless turned off; with both limits 0 there
    are no seats to share, and no limit, as with the max-in-flight filter."""
    seats = limits.max_requests_inflight + limits.max_mutating_requests_inflight
    if not limits.enable_priority_and_fairness or seats <= 0:
        return None
    return PriorityAndFairness(store, seats)


async def start_server(config: ServerConfig) -> RunningServer:
    memdump.install()  # PILOTHOUSE_TRACEMALLOC: a diagnostic, off by default
    prepare_data_dir(config.data_dir)  # refuses a newer format, migrates an older one
    if config.secure and config.tls.certificate_key and not config.tls.upload_certs \
            and not (config.data_dir / "pki" / "ca.crt").exists():
        await uploadcerts.download(config.endpoint(), config.store_options(), config.encryption_provider_config,
                                   config.tls.certificate_key, config.data_dir / "pki")
    cluster_pki = _secure_pki(config) if config.secure else None
    if cluster_pki is not None:
        # Over HTTPS nobody is trusted for being on loopback: a client certificate names the user, then
        # the bearer tokens; anything else is anonymous.
        config.auth.request_authenticators = [X509Authenticator(cluster_pki.client_cas())]
        config.auth.tls = True
    # Timed below the encryption, as kube-apiserver times its etcd calls without the transformers.
    store = wrap_store(InstrumentedStore(open_store(config.endpoint(), **config.store_options())),
                       config.encryption_provider_config, config.encryption_provider_config_automatic_reload)
    api = APIServer(store, build_auth(config.auth, store, config.data_dir),
                    service_cluster_ip_range=config.service_cluster_ip_range,
                    advertise_port=config.port,
                    advertise_address=advertise_address(config.bind_address, config.advertise_address),
                    event_ttl=config.event_ttl)
    enable_runtime_config(api, config.runtime_config)
    api.object_counts.period = config.count_metric_poll_period
    if cluster_pki is not None:
        api.rest.kubelet_tls = cluster_pki.kubelet_client_context()  # type: ignore[attr-defined]
    try:
        await store.start()
        await api.bootstrap()
        if cluster_pki is not None and config.tls.upload_certs:
            await uploadcerts.upload(api.storage, cluster_pki.directory, _certificate_key(config))
    except BaseException:
        await api.close()
        await store.close()
        raise
    app = api.build_app()
    install_request_limits(app, config.limits, flow_control=flow_control(config.limits, store))
    audit_log = audit.install(app, _worker_audit_options(config), errors=api.error_middleware,
                              auth=api.auth.middleware)
    if config.workers > 1:
        app.on_response_prepare.append(worker_header(config.worker_index))
    # Bootstrap loaded the kind schemas and built the routes: long-lived, so out of every later
    # cyclic collection (see pilothouse.cli.main._tune_gc).
    gc.collect()
    gc.freeze()
    # Idle connections (and ones trickling their headers) closed after kube-apiserver's IdleTimeout,
    # 90s, longer than clients keep theirs (client-go 90s, aiohttp 15s); access logs off (they cost ~10% per
    # request and the seed's systemd units run the server with logs to stderr anyway).
    # handler_cancellation: a handler whose client disconnected is cancelled (Go cancels the request's
    # context): a watch ends at once instead of at its next write, a read stops (requestlimits.py).
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0,
                           keepalive_timeout=config.limits.idle_timeout, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, config.bind_address, config.port, reuse_address=True, backlog=1024,
                       reuse_port=config.workers > 1 or None,
                       ssl_context=cluster_pki.ssl_context() if cluster_pki else None)
    await site.start()
    port = config.port
    server = site._server
    if port == 0 and server is not None:
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            port = sockets[0].getsockname()[1]
    if config.worker_index:  # a sibling worker serves the main port only; the leader does the rest
        return RunningServer(config, store, api, runner, port, cluster_pki)
    for address in config.extra_bind_addresses:
        await web.SockSite(runner, freebind_socket(address, port), backlog=1024,
                           ssl_context=cluster_pki.ssl_context() if cluster_pki else None).start()
    running = RunningServer(config, store, api, runner, port, cluster_pki, audit=audit_log)
    if config.insecure_port:
        running.insecure = await start_insecure(api, config.insecure_bind_address, config.insecure_port,
                                                config.limits)
    if cluster_pki is None:
        write_kubeconfig(config.kubeconfig_path, running.url)
    else:
        write_kubeconfig(config.kubeconfig_path, running.url, ca_pem=cluster_pki.ca_bundle(),
                         credentials=cluster_pki.issue_client("kubernetes-admin", ["system:masters"]))
        running.renewal = asyncio.create_task(cluster_pki.keep_fresh(), name="serving-cert-renewal")
        running.auth_trust = asyncio.create_task(authtrust.keep_current(api.storage, cluster_pki.client_ca_path),
                                                 name="cluster-authentication-trust")
    log.info("API server listening on %s (datastore %s)", running.url, config.endpoint())
    return running


def _worker_audit_options(config: ServerConfig) -> audit.AuditLogOptions:
    """A sibling worker writes its own audit log beside the leader's (``<path>.worker-N``).

    Each worker is an API server of its own, as each kube-apiserver of an HA control plane keeps its own
    log: two processes appending to and rotating one file would interleave partial batches and lose
    rotations. Standard output (``-``) is shared as is: each event is one line written whole.
    """
    options = config.audit
    if config.worker_index and options.path not in ("", "-"):
        return replace(options, path=f"{options.path}.worker-{config.worker_index}")
    return options
