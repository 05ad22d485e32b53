"""Running the API server: open the store, bootstrap, listen, write a kubeconfig, stop cleanly."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from aiohttp import web

from pilothouse.apiserver.app import APIServer
from pilothouse.apiserver.authchain import AuthOptions, build_auth
from pilothouse.apiserver.encryption import wrap_store
from pilothouse.store import open_store
from pilothouse.store.interface import Store

__all__ = ["RunningServer", "ServerConfig", "start_server", "write_kubeconfig"]

log = logging.getLogger("pilothouse.apiserver")


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

    def store_options(self) -> dict[str, object]:
        options: dict[str, object] = {"compact_interval": self.compaction_interval}
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
        return f"http://{host}:{self.port}"


@dataclass
class RunningServer:
    config: ServerConfig
    store: Store
    api: APIServer
    runner: web.AppRunner
    port: int

    @property
    def url(self) -> str:
        host = self.config.bind_address
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        return f"http://{host}:{self.port}"

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await self.runner.cleanup()
        await self.api.close()
        await self.store.close()


def write_kubeconfig(path: Path, server_url: str, cluster_name: str = "pilothouse") -> None:
    """A kubeconfig like k3s writes: one cluster, one user, one current context."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster_name, "cluster": {"server": server_url}}],
        "users": [{"name": "admin", "user": {}}],
        "contexts": [{"name": cluster_name, "context": {"cluster": cluster_name, "user": "admin",
                                                        "namespace": "default"}}],
        "current-context": cluster_name,
        "preferences": {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(config, sort_keys=False))
    os.chmod(tmp, 0o600)
    tmp.replace(path)


async def start_server(config: ServerConfig) -> RunningServer:
    config.data_dir.mkdir(parents=True, exist_ok=True)
    store = wrap_store(open_store(config.endpoint(), **config.store_options()), config.encryption_provider_config,
                       config.encryption_provider_config_automatic_reload)
    api = APIServer(store, build_auth(config.auth, store, config.data_dir),
                    service_cluster_ip_range=config.service_cluster_ip_range,
                    advertise_port=config.port)
    try:
        await store.start()
        await api.bootstrap()
    except BaseException:
        await api.close()
        await store.close()
        raise
    app = api.build_app()
    # Bootstrap loaded the kind schemas and built the routes: long-lived, so out of every later
    # cyclic collection (see pilothouse.cli.main._tune_gc).
    gc.collect()
    gc.freeze()
    # Keep-alive long enough for informers' connection reuse; access logs off (they cost ~10% per
    # request and the seed's systemd units run the server with logs to stderr anyway).
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, config.bind_address, config.port, reuse_address=True, backlog=1024)
    await site.start()
    port = config.port
    server = site._server
    if port == 0 and server is not None:
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            port = sockets[0].getsockname()[1]
    running = RunningServer(config, store, api, runner, port)
    write_kubeconfig(config.kubeconfig_path, running.url)
    log.info("API server listening on %s (datastore %s)", running.url, config.endpoint())
    return running

