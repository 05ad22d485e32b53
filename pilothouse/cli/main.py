"""The ``pilothouse`` command: ``server``, ``kubectl``, and (as they land) the other components."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import shutil
import signal
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import platformdirs

from pilothouse.cli import backup, hostsetup
from pilothouse.cli.auditflags import audit_config, audit_options
from pilothouse.cli.authflags import auth_options, share_loopback_token
from pilothouse.cli.join import join_cluster, join_options
from pilothouse.cli.limitflags import limit_config, limit_options
from pilothouse.cli.token import token
from pilothouse.machinery.errors import StatusError
from pilothouse.store.interface import StoreError

if TYPE_CHECKING:  # the server's modules load only when a command needs them
    from pilothouse.apiserver.serve import ServerConfig
    from pilothouse.client.kubeconfig import ClientConfig
    from pilothouse.components.componentserver import ServingOptions

__all__ = ["main"]


def _run(coroutine: Coroutine[Any, Any, None]) -> None:
    """``asyncio.run`` on uvloop when it is installed: the same asyncio API, with the event loop and
    the socket I/O in C (measured by bench/api.py: see docs/decisions/event-loop.md)."""
    _tune_gc()
    try:
        import uvloop
    except ImportError:
        asyncio.run(coroutine)
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(coroutine)


#: Allocations between young-generation collections (Python's default is 700).
GC_GEN0_THRESHOLD = 10_000


def _tune_gc() -> None:
    """Collect cycles less often, and never re-scan what was loaded at startup.

    Our garbage is almost all acyclic (decoded JSON), freed by reference counting; the cyclic
    collector at Python's default thresholds found nothing in most of its runs yet took ~8% of
    the API server's CPU under a create load, with 20-40 ms full collections walking the schemas
    and caches (measured with gc.callbacks; numbers in docs/decisions/event-loop.md).
    """
    gc.collect()
    gc.freeze()  # imported modules and their tables: permanent, out of every later collection
    gc.set_threshold(GC_GEN0_THRESHOLD, 20, 20)


def _server_config(data_dir: Path, bind_address: str, port: int, datastore_endpoint: str, etcd_servers: str,
                   etcd_cafile: str | None, etcd_certfile: str | None, etcd_keyfile: str | None,
                   service_cluster_ip_range: str, compaction_interval: float) -> ServerConfig:
    """The API server's configuration from the ``server_options`` flags (``server`` and ``up``)."""
    from pilothouse.apiserver.serve import ServerConfig

    if etcd_servers:
        from pilothouse.store import etcd_endpoint_from_servers

        datastore_endpoint = etcd_endpoint_from_servers(etcd_servers)
    secure, tls = _tls_config()
    return ServerConfig(data_dir=data_dir, bind_address=bind_address, port=port,
                        datastore_endpoint=datastore_endpoint, service_cluster_ip_range=service_cluster_ip_range,
                        compaction_interval=compaction_interval, etcd_cafile=etcd_cafile,
                        etcd_certfile=etcd_certfile, etcd_keyfile=etcd_keyfile, secure=secure, tls=tls,
                        runtime_config=click.get_current_context().meta.get("pilothouse.runtime_config", ""),
                        limits=limit_config(), audit=audit_config(),
                        event_ttl=click.get_current_context().meta.get("pilothouse.event_ttl", 3600),
                        **_insecure_port())


def default_data_dir() -> Path:
    # Like k3s's /var/lib/rancher/k3s for root and ~/.rancher for users: the user's state dir.
    return Path(platformdirs.user_state_dir("pilothouse"))


def _setup_logging(verbose: int) -> None:
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@click.group()
@click.version_option(package_name="pilothouse")
def main() -> None:
    """pilothouse: a container orchestrator that speaks the Kubernetes API."""


main.add_command(token)


def _collect_runtime_config(ctx: click.Context, param: click.Parameter, value: str) -> None:
    from pilothouse.apiserver.legacyapi import parse_runtime_config

    try:
        parse_runtime_config(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None
    ctx.meta["pilothouse.runtime_config"] = value


def _collect_event_ttl(ctx: click.Context, param: click.Parameter, value: str) -> None:
    from pilothouse.apiserver.requestlimits import parse_go_duration

    try:
        # Whole seconds, as kube-apiserver passes int64(ttl.Seconds()) to etcd.
        ctx.meta["pilothouse.event_ttl"] = int(float(value) if value.isdigit() else parse_go_duration(value))
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


def server_options(function: click.decorators.FC) -> click.decorators.FC:
    options = [
        click.option("--data-dir", type=click.Path(path_type=Path), default=default_data_dir,
                     show_default="user state dir", help="Where state and the kubeconfig live."),
        click.option("--bind-address", default="127.0.0.1", show_default=True),
        click.option("--port", type=int, default=6443, show_default=True),
        click.option("--datastore-endpoint", default="",
                     help="sqlite:///path/state.db (default: sqlite://<data-dir>/state.db) or "
                          "etcd://host:2379,host:2379 (etcd+https:// for TLS)."),
        click.option("--etcd-servers", default="",
                     help="kube-apiserver's spelling: http://10.1.0.1:2379,http://10.1.0.2:2379."),
        click.option("--etcd-cafile", default=None, help="CA bundle for TLS to etcd."),
        click.option("--etcd-certfile", default=None, help="Client certificate for TLS to etcd."),
        click.option("--etcd-keyfile", default=None, help="Client key for TLS to etcd."),
        click.option("--service-cluster-ip-range", default="10.96.0.0/12", show_default=True,
                     help="CIDR that Service cluster IPs are allocated from."),
        click.option("--compaction-interval", type=float, default=300.0, show_default=True,
                     help="Seconds between compactions of the store's history."),
        click.option("--runtime-config", default="", expose_value=False, callback=_collect_runtime_config,
                     help="API versions to turn on: api/v1beta1=true serves the legacy v1beta1 Minion "
                          "(the seed's register_node.sh)."),
        click.option("--event-ttl", default="1h0m0s", show_default=True, expose_value=False,
                     callback=_collect_event_ttl,
                     help="How long an Event is kept after its last write (a Go duration; 0: forever)."),
        click.option("-v", "--verbose", count=True),
    ]
    function = audit_options(limit_options(tls_options(function)))  # listed after these in --help
    for option in reversed(options):
        function = option(function)
    return function


# --- TLS serving flags (kube-apiserver's names); collected into ctx.meta so that every command taking
# server_options gets them without another dozen parameters. ---
_TLS_META = "pilothouse.tls"


def _collect_tls(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    ctx.meta.setdefault(_TLS_META, {})[param.name] = value


def tls_options(function: click.decorators.FC) -> click.decorators.FC:
    options = [
        # pflag's bool syntax (--secure, --secure=false), as kube-apiserver users spell booleans. On by
        # default (issue 11: closed like kubeadm and k3s); --secure=false serves plain HTTP.
        click.option("--secure", type=click.BOOL, default=True, is_flag=False, flag_value=True, show_default=True,
                     expose_value=False, callback=_collect_tls,
                     help="Serve HTTPS with the cluster CA in <data-dir>/pki (created on first start) and "
                          "authenticate x509 client certificates; the written kubeconfig embeds an admin "
                          "certificate. --secure=false: plain HTTP (with --authorization-mode=AlwaysAllow, "
                          "every caller is system:admin, for a throwaway cluster on loopback)."),
        click.option("--tls-cert-file", default=None, expose_value=False, callback=_collect_tls,
                     help="Serving certificate (PEM, may hold its chain) instead of one signed by the cluster CA."),
        click.option("--tls-private-key-file", default=None, expose_value=False, callback=_collect_tls,
                     help="The key of --tls-cert-file."),
        click.option("--client-ca-file", default=None, expose_value=False, callback=_collect_tls,
                     help="CA bundle to verify client certificates against (default: the cluster CA)."),
        click.option("--insecure-port", type=int, default=0, expose_value=False, callback=_collect_tls,
                     help="Also serve plain HTTP on this port with NO authentication or authorization "
                          "(kube-apiserver 1.x's insecure port; 0: off)."),
        click.option("--insecure-bind-address", default="127.0.0.1", expose_value=False, callback=_collect_tls,
                     help="Address of --insecure-port."),
        click.option("--advertise-address", default="", expose_value=False, callback=_collect_tls,
                     help="The address the kubernetes Service's endpoints name (default: --bind-address, or "
                          "this host's address when that is 0.0.0.0)."),
        click.option("--tls-san", multiple=True, expose_value=False, callback=_collect_tls,
                     help="Another name or address for the serving certificate (repeatable)."),
        click.option("--cluster-pki-from", default=None, expose_value=False, callback=_collect_tls,
                     help="Another API server's pki directory (or a copy of its ca.crt, ca.key and sa.key): share "
                          "its CA and service-account key, as kubeadm join --control-plane does, so kubeconfigs "
                          "and tokens work against every server over one datastore."),
        click.option("--upload-certs", is_flag=True, expose_value=False, callback=_collect_tls,
                     help="Store the cluster's CA and service-account key, encrypted with --certificate-key (one is "
                          "made and printed if not given), in Secret kube-system/kubeadm-certs, as kubeadm does."),
        click.option("--certificate-key", default="", expose_value=False, callback=_collect_tls,
                     help="The key of --upload-certs; without it, a new server's CA and service-account key are "
                          "read from that Secret in the datastore (kubeadm join --control-plane --certificate-key)."),
        # Tests shorten the serving certificate's life to watch it renewed.
        click.option("--tls-serving-cert-validity", type=float, default=None, hidden=True, expose_value=False,
                     callback=_collect_tls),
        click.option("--tls-renewal-check-interval", type=float, default=3600.0, hidden=True,
                     expose_value=False, callback=_collect_tls),
        click.option("--etcd-count-metric-poll-period", type=float, default=60.0, show_default=True,
                     expose_value=False, callback=_collect_tls,
                     help="Seconds between counts of each resource's stored objects (apiserver_storage_objects); "
                          "0: never."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _tls_config() -> tuple[bool, Any]:
    """(secure, TLSOptions) from the current command's TLS flags."""
    import datetime

    from pilothouse.apiserver.pkidir import TLSOptions

    flags = click.get_current_context().meta.get(_TLS_META, {})
    options = TLSOptions(tls_cert_file=flags.get("tls_cert_file"),
                         tls_private_key_file=flags.get("tls_private_key_file"),
                         client_ca_file=flags.get("client_ca_file"), tls_sans=tuple(flags.get("tls_san") or ()),
                         check_interval=flags.get("tls_renewal_check_interval") or 3600.0,
                         cluster_pki_from=flags.get("cluster_pki_from"),
                         upload_certs=bool(flags.get("upload_certs")),
                         certificate_key=flags.get("certificate_key") or "")
    if flags.get("tls_serving_cert_validity"):
        options.serving_validity = datetime.timedelta(seconds=flags["tls_serving_cert_validity"])
    if bool(options.tls_cert_file) != bool(options.tls_private_key_file):
        raise click.BadParameter("give --tls-cert-file and --tls-private-key-file together")
    # Bringing a certificate or a client CA means serving HTTPS.
    secure = bool(flags.get("secure") or options.tls_cert_file or options.client_ca_file)
    return secure, options


def _insecure_port() -> dict[str, Any]:
    """ServerConfig's insecure port, advertise address and count_metric_poll_period from their flags."""
    flags = click.get_current_context().meta.get(_TLS_META, {})
    return {"insecure_port": flags.get("insecure_port") or 0,
            "insecure_bind_address": flags.get("insecure_bind_address") or "127.0.0.1",
            "advertise_address": flags.get("advertise_address") or "",
            "count_metric_poll_period": flags.get("etcd_count_metric_poll_period", 60.0)}
# --- end of TLS serving flags ---


EMBEDDED = ("scheduler", "controller-manager")
HPA_FLAGS = {"horizontal_pod_autoscaler_sync_period": 15.0, "horizontal_pod_autoscaler_tolerance": 0.1,
             "horizontal_pod_autoscaler_downscale_stabilization": 300.0}


def hpa_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """kube-controller-manager's HPA flags (seconds where kube takes a duration), gathered in ``hpa``;
    ``pilothouse server`` hands them to its embedded controller manager."""
    helps = {"horizontal_pod_autoscaler_sync_period": "How often every HPA is reconciled, seconds.",
             "horizontal_pod_autoscaler_tolerance": "The usage/target ratio change below which an HPA does not scale.",
             "horizontal_pod_autoscaler_downscale_stabilization":
                 "Seconds of recommendations an HPA without spec.behavior looks back over before scaling down."}

    def gather(ctx: click.Context, param: click.Parameter, value: float) -> float:
        ctx.params.setdefault("hpa", {})[str(param.name)] = value
        return value

    for name, default in reversed(HPA_FLAGS.items()):
        command = click.option(f"--{name.replace('_', '-')}", name, type=float, default=default, show_default=True,
                               expose_value=False, callback=gather, help=helps[name])(command)
    return command


def hpa_args(hpa: dict[str, float]) -> list[str]:
    """The HPA flags given other than by default, as controller-manager arguments."""
    return [arg for name, value in hpa.items() if value != HPA_FLAGS[name]
            for arg in (f"--{name.replace('_', '-')}", str(value))]


@main.command()
@server_options
@auth_options
@click.option("--disable", default="", help="Embedded components not to run: scheduler,controller-manager.")
@click.option("--leader-elect-lease-duration", type=float, default=15.0, show_default=True,
              help="Lease duration of the embedded components' leader election (renew deadline and retry "
                   "period scale with it).")
@click.option("--encryption-provider-config", default="",
              help="An apiserver.config.k8s.io/v1 EncryptionConfiguration: which resources are encrypted at "
                   "rest, and how.")
@click.option("--encryption-provider-config-automatic-reload", is_flag=True,
              help="Reload the encryption configuration when its file changes (checked once a minute).")
@click.option("--cluster-cidr", default="",
              help="Pod range of the cluster: the embedded controller manager gives every Node a part of it "
                   "(node IPAM, --allocate-node-cidrs), which agents run with --pod-cidr auto use.")
@click.option("--node-cidr-mask-size", type=int, default=24, show_default=True, help="Prefix length of a Node's range.")
@click.option("--cluster-signing-duration", default="",
              help="The embedded controller manager's: the longest life of a certificate the CSR signer issues "
                   "(a Go duration; default a year).")
@hpa_options
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Request-serving processes over the embedded SQLite store (one per core; see "
                   "docs/decisions/server-workers.md).")
@click.option("--worker-index", type=int, default=0, hidden=True)
def server(data_dir: Path, bind_address: str, port: int, datastore_endpoint: str, etcd_servers: str,
           etcd_cafile: str | None, etcd_certfile: str | None, etcd_keyfile: str | None,
           service_cluster_ip_range: str, compaction_interval: float, verbose: int, disable: str,
           leader_elect_lease_duration: float, encryption_provider_config: str,
           encryption_provider_config_automatic_reload: bool, cluster_cidr: str, node_cidr_mask_size: int,
           cluster_signing_duration: str, hpa: dict[str, float], auth: Any, workers: int,
           worker_index: int) -> None:
    """Run the API server, with the scheduler and the controller manager embedded."""
    _setup_logging(max(verbose, 1))
    disabled = {name.strip() for name in disable.split(",") if name.strip()}
    unknown = disabled - set(EMBEDDED)
    if unknown:
        raise click.BadParameter(f"unknown component(s) {sorted(unknown)}; choose from {list(EMBEDDED)}")
    if etcd_servers and datastore_endpoint:
        raise click.BadParameter("give --datastore-endpoint or --etcd-servers, not both")
    config = _server_config(data_dir, bind_address, port, datastore_endpoint, etcd_servers, etcd_cafile,
                            etcd_certfile, etcd_keyfile, service_cluster_ip_range, compaction_interval)
    config.auth = auth
    config.workers, config.worker_index = workers, worker_index
    if not worker_index:
        click.echo(f"pilothouse API server on {config.url}; kubeconfig: {config.kubeconfig_path}", err=True)
    try:
        config.store_options()
    except ValueError as error:
        raise click.BadParameter(str(error)) from None
    config.encryption_provider_config = encryption_provider_config
    config.encryption_provider_config_automatic_reload = encryption_provider_config_automatic_reload
    _check_encryption_config(encryption_provider_config)
    if worker_index:
        from pilothouse.cli.workers import serve_worker

        _run(serve_worker(config, _wait_for_signal))
        return
    try:
        node_ipam = ["--allocate-node-cidrs", "--cluster-cidr", cluster_cidr, "--node-cidr-mask-size",
                     str(node_cidr_mask_size)] if cluster_cidr else []
        signing = ["--cluster-signing-duration", cluster_signing_duration] if cluster_signing_duration else []
        _run(_serve_with_components(config, [c for c in EMBEDDED if c not in disabled], verbose,
                                    leader_election_child_args(leader_elect_lease_duration),
                                    {"controller-manager": node_ipam + hpa_args(hpa) + signing}))
    except (StatusError, StoreError, OSError) as error:
        # The store unreachable, the port taken: one line, not a traceback.
        raise click.ClickException(f"cannot start the API server: {error}") from None


def _check_encryption_config(path: str) -> None:
    """A bad file stops the server before it opens anything, in one line with Kubernetes' message."""
    if path:
        from pilothouse.apiserver.encryption.config import load_config

        try:
            load_config(path)
        except ValueError as error:
            raise click.ClickException(f"cannot start the API server: {error}") from None


async def _serve_with_components(config: Any, components: list[str], verbose: int,
                                 extra_args: list[str] | None = None,
                                 own_args: dict[str, list[str]] | None = None) -> None:
    from pilothouse.apiserver.serve import start_server
    from pilothouse.cli.supervisor import Supervisor, component_args, component_connection
    from pilothouse.cli.workers import add_workers

    running = await start_server(config)
    share_loopback_token(running)
    supervisor = Supervisor()
    for component in components:
        supervisor.add(component, component, *component_connection(running, component),
                       *(extra_args or []), *(["-v"] * verbose), *component_args(component, config),
                       *(own_args or {}).get(component, []))
    add_workers(supervisor, running)
    await supervisor.start()
    try:
        await _wait_for_signal()
    finally:
        await supervisor.stop()
        await running.stop()


async def _wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


# --- leader election for the scheduler and the controller manager (pilothouse/client/leaderelection.py) ---
# kube-scheduler's and kube-controller-manager's flags and defaults. ``pilothouse server`` scales the
# three together from its own --leader-elect-lease-duration (15/10/2 keeps client-go's constraints).


def leader_election_options(function: click.decorators.FC) -> click.decorators.FC:
    options = [
        # pflag's bool syntax: --leader-elect, --leader-elect=true, --leader-elect=false.
        click.option("--leader-elect", type=click.BOOL, default=True, is_flag=False, flag_value=True,
                     show_default=True,
                     help="Take a Lease in kube-system before acting, so only one copy of the component works."),
        click.option("--leader-elect-lease-duration", type=float, default=15.0, show_default=True,
                     help="Seconds a standby waits after the last renewal it saw before taking the lease."),
        click.option("--leader-elect-renew-deadline", type=float, default=10.0, show_default=True,
                     help="Seconds the leader keeps retrying a renewal before it gives up leading."),
        click.option("--leader-elect-retry-period", type=float, default=2.0, show_default=True,
                     help="Seconds between attempts to acquire or renew."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def leader_election_child_args(lease_duration: float) -> list[str]:
    """Flags for an embedded component: renew deadline and retry period scaled from the lease duration."""
    return ["--leader-elect-lease-duration", f"{lease_duration:g}",
            "--leader-elect-renew-deadline", f"{lease_duration * 2 / 3:g}",
            "--leader-elect-retry-period", f"{lease_duration * 2 / 15:g}"]


def serving_options(secure_port: int) -> Callable[[click.decorators.FC], click.decorators.FC]:
    """kube-scheduler's and kube-controller-manager's serving flags (their /healthz and /metrics)."""
    def decorate(function: click.decorators.FC) -> click.decorators.FC:
        options = [
            click.option("--bind-address", default="127.0.0.1", show_default=True,
                         help="Address of the HTTPS /healthz and /metrics endpoint (kubeadm's; kube's default "
                              "is 0.0.0.0)."),
            click.option("--secure-port", type=int, default=secure_port, show_default=True,
                         help="Port of that endpoint (0: do not serve)."),
            click.option("--tls-cert-file", default=None,
                         help="Its serving certificate (default: a self-signed one made at start)."),
            click.option("--tls-private-key-file", default=None, help="The key of --tls-cert-file."),
            click.option("--client-ca-file", default=None,
                         help="Client certificates signed by this CA authenticate (CN: user, O: groups); "
                              "default: the kubeconfig's cluster CA."),
        ]
        for option in reversed(options):
            function = option(function)
        return function
    return decorate


def _serving(bind_address: str, secure_port: int, tls_cert_file: str | None,
             tls_private_key_file: str | None, client_ca_file: str | None = None) -> ServingOptions:
    from pilothouse.components.componentserver import ServingOptions

    if bool(tls_cert_file) != bool(tls_private_key_file):
        raise click.BadParameter("give --tls-cert-file and --tls-private-key-file together")
    return ServingOptions(secure_port, bind_address, tls_cert_file, tls_private_key_file, client_ca_file)


async def _with_component_server(name: str, serving: ServingOptions, target: ClientConfig,
                                 work: Coroutine[Any, Any, None]) -> None:
    """``work`` with the component's /healthz and /metrics served from before leader election (a
    standby answers health checks too). A taken port is logged, not fatal: several embedded copies
    on one host (tests, a second ``pilothouse server``) keep scheduling without their endpoint."""
    from pilothouse.components.componentserver import ComponentServer

    server = ComponentServer(name, serving, target)
    try:
        await server.start()
    except OSError as error:
        logging.getLogger("pilothouse.cli").error("%s: cannot serve on %s:%d: %s", name, serving.bind_address,
                                                  serving.secure_port, error)
    try:
        await work
    finally:
        await server.stop()


def _run_component(lease_name: str, target: ClientConfig, run: Callable[[], Coroutine[Any, Any, None]],
                   leader_elect: bool, lease_duration: float, renew_deadline: float, retry_period: float,
                   serving: ServingOptions) -> None:
    from pilothouse.cli.supervisor import exit_with_supervisor

    exit_with_supervisor()
    if not leader_elect:
        _run_until_signal(_with_component_server(lease_name, serving, target, run()))
        return

    from pilothouse.client.leaderelection import LeaderElectionLost, LeaderElector
    from pilothouse.client.rest import APIClient

    async def elected() -> None:
        async with APIClient(target, user_agent=f"{lease_name}/leader-election",
                             timeout=renew_deadline) as client:
            elector = LeaderElector(client, name=lease_name, lease_duration=lease_duration,
                                    renew_deadline=renew_deadline, retry_period=retry_period)
            await elector.run(run)

    try:
        _run_until_signal(_with_component_server(lease_name, serving, target, elected()))
    except LeaderElectionLost:
        # klog.Fatalf("leaderelection lost"): what was built while leading cannot be trusted; the
        # supervisor (or systemd) starts a fresh process that campaigns again.
        logging.getLogger("pilothouse.cli").error("leaderelection lost")
        sys.exit(1)


def connection_options(function: click.decorators.FC) -> click.decorators.FC:
    """``--server`` and ``--kubeconfig``, as Kubernetes' components take them."""
    function = click.option("--kubeconfig", default=None,
                            help="kubeconfig with the server, its CA and this component's credentials.")(function)
    return click.option("--server", "server_url", default=None,
                        help="API server URL, e.g. https://127.0.0.1:6443 (overrides the kubeconfig's).")(function)


def _go_duration(text: str, flag: str) -> float:
    """A Go duration flag (``8760h0m0s``, ``90s``) in seconds, or a usage error naming the flag."""
    from pilothouse.apiserver.requestlimits import parse_go_duration

    try:
        return parse_go_duration(text)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint=flag) from None


def _target(server_url: str | None, kubeconfig: str | None) -> ClientConfig:
    from pilothouse.client.kubeconfig import client_config

    try:
        return client_config(server_url, kubeconfig)
    except (ValueError, OSError) as error:
        raise click.BadParameter(str(error)) from None


@main.command()
@connection_options
@leader_election_options
@serving_options(10259)
@click.option("-v", "--verbose", count=True)
def scheduler(server_url: str | None, kubeconfig: str | None, leader_elect: bool, leader_elect_lease_duration: float,
              leader_elect_renew_deadline: float, leader_elect_retry_period: float, bind_address: str,
              secure_port: int, tls_cert_file: str | None, tls_private_key_file: str | None,
              client_ca_file: str | None, verbose: int) -> None:
    """Run the scheduler against an API server."""
    from pilothouse.components.scheduler import run_scheduler

    _setup_logging(verbose)
    target = _target(server_url, kubeconfig)
    _run_component("kube-scheduler", target, lambda: run_scheduler(target), leader_elect,
                   leader_elect_lease_duration, leader_elect_renew_deadline, leader_elect_retry_period,
                   _serving(bind_address, secure_port, tls_cert_file, tls_private_key_file, client_ca_file))


@main.command("controller-manager")
@connection_options
@click.option("--controllers", default="", help="Comma-separated subset of controllers (default: all).")
@click.option("--node-monitor-grace-period", type=float, default=40.0, show_default=True,
              help="Seconds without a node heartbeat before the node is marked Unknown.")
@click.option("--pod-eviction-timeout", type=float, default=300.0, show_default=True,
              help="Default toleration (seconds) of pods for unreachable/not-ready nodes.")
@click.option("--root-ca-file", default="",
              help="CA bundle published to every namespace as the kube-root-ca.crt ConfigMap.")
@click.option("--cluster-signing-cert-file", default="", help="CA certificate the CSR signer signs with.")
@click.option("--cluster-signing-key-file", default="", help="Its private key.")
@click.option("--cluster-signing-duration", default="8760h0m0s", show_default=True,
              help="The longest life of a certificate the CSR signer issues (a Go duration).")
@click.option("--use-service-account-credentials", type=click.BOOL, default=True, is_flag=False, flag_value=True,
              show_default=True, help="Each controller acts as its own service account in kube-system (as kubeadm "
                                      "runs kube-controller-manager); false: all act as this component's identity.")
@click.option("--allocate-node-cidrs", is_flag=True,
              help="Give every Node a pod range (spec.podCIDR) of --cluster-cidr, as kube-controller-manager does.")
@click.option("--cluster-cidr", default="10.244.0.0/16", show_default=True, help="The cluster's pod range.")
@click.option("--node-cidr-mask-size", type=int, default=24, show_default=True, help="Prefix length of a Node's range.")
@hpa_options
@leader_election_options
@serving_options(10257)
@click.option("-v", "--verbose", count=True)
def controller_manager(server_url: str | None, kubeconfig: str | None, controllers: str,
                       node_monitor_grace_period: float, pod_eviction_timeout: float, root_ca_file: str,
                       cluster_signing_cert_file: str, cluster_signing_key_file: str, cluster_signing_duration: str,
                       use_service_account_credentials: bool, allocate_node_cidrs: bool, cluster_cidr: str,
                       node_cidr_mask_size: int, hpa: dict[str, float], leader_elect: bool,
                       leader_elect_lease_duration: float, leader_elect_renew_deadline: float,
                       leader_elect_retry_period: float, bind_address: str, secure_port: int,
                       tls_cert_file: str | None, tls_private_key_file: str | None, client_ca_file: str | None,
                       verbose: int) -> None:
    """Run the controller manager against an API server."""
    from pilothouse.components.controllers.manager import ControllerManager

    _setup_logging(verbose)
    names = [c.strip() for c in controllers.split(",") if c.strip()] or None
    target = _target(server_url, kubeconfig)
    manager = ControllerManager(target, controllers=names, options={
        "node_monitor_grace_period": node_monitor_grace_period,
        "pod_eviction_timeout": pod_eviction_timeout,
        "root_ca_file": root_ca_file,
        "cluster_signing_cert_file": cluster_signing_cert_file,
        "cluster_signing_key_file": cluster_signing_key_file,
        "cluster_signing_duration": _go_duration(cluster_signing_duration, "--cluster-signing-duration"),
        "allocate_node_cidrs": allocate_node_cidrs, "cluster_cidr": cluster_cidr,
        "node_cidr_mask_size": node_cidr_mask_size, **hpa,
    }, use_service_account_credentials=use_service_account_credentials)
    _run_component("kube-controller-manager", target, manager.run, leader_elect,
                   leader_elect_lease_duration, leader_elect_renew_deadline, leader_elect_retry_period,
                   _serving(bind_address, secure_port, tls_cert_file, tls_private_key_file, client_ca_file))

# --- end of leader election wiring ---


def _run_until_signal(coroutine: Coroutine[Any, Any, None]) -> None:
    async def main_task() -> None:
        task = asyncio.create_task(coroutine)
        waiter = asyncio.create_task(_wait_for_signal())
        done, _ = await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        for pending in (task, waiter):
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pending
        for finished in done:
            if finished is task and not finished.cancelled() and finished.exception():
                raise finished.exception()  # type: ignore[misc]

    _run(main_task())


@main.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False,
                                "help_option_names": []})
@click.option("--data-dir", type=click.Path(path_type=Path), default=default_data_dir)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def kubectl(data_dir: Path, args: tuple[str, ...]) -> None:
    """Run kubectl against this machine's pilothouse cluster."""
    binary = shutil.which("kubectl")
    if binary is None:
        raise click.ClickException("kubectl is not installed")
    env = dict(os.environ)
    env["KUBECONFIG"] = str(data_dir / "kubeconfig.yaml")
    os.execve(binary, [binary, *args], env)


@main.command("kubeconfig")
@click.option("--data-dir", type=click.Path(path_type=Path), default=default_data_dir,
              show_default="user state dir", help="The server's data dir (its pki/ holds the cluster CA).")
@click.option("--user", "user", required=True, help="The user name (the certificate's CN).")
@click.option("--group", "groups", multiple=True, help="A group (the certificate's O); repeatable.")
@click.option("--server", "server_url", default=None, help="API server URL (default: the data dir's kubeconfig's).")
def kubeconfig_command(data_dir: Path, user: str, groups: tuple[str, ...], server_url: str | None) -> None:
    """Print a kubeconfig for USER with a new client certificate signed by the cluster CA (as
    ``kubeadm kubeconfig user`` does)."""
    import yaml

    from pilothouse.apiserver.pkidir import ClusterPKI
    from pilothouse.machinery.kubeconfig import build_kubeconfig

    cluster_pki = ClusterPKI(data_dir / "pki")
    try:
        if server_url is None:
            written = yaml.safe_load((data_dir / "kubeconfig.yaml").read_text()) or {}
            server_url = str(written["clusters"][0]["cluster"]["server"])
        credentials = cluster_pki.issue_client(user, groups)
        ca_pem = cluster_pki.ca_cert_path.read_bytes()
    except (OSError, KeyError, IndexError, RuntimeError) as error:
        raise click.ClickException(f"no secure cluster in {data_dir} (start `pilothouse server` there "
                                   f"first, without --secure=false): {error}") from None
    document = build_kubeconfig(server_url, user=user, ca_pem=ca_pem, cert_pem=credentials.cert_pem,
                                key_pem=credentials.key_pem)
    click.echo(yaml.safe_dump(document, sort_keys=False), nl=False)


from pilothouse.cli.cluster.commands import cluster as _cluster_group  # noqa: E402 - after main is defined

main.add_command(_cluster_group)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


def proxy_options(function: click.decorators.FC) -> click.decorators.FC:
    """The service proxy's flags, shared by ``pilothouse proxy`` and the agent that embeds it."""
    from pilothouse.cli.proxyflags import proxy_tuning_options

    function = proxy_tuning_options(function)
    function = click.option("--proxy-table", default="pilothouse", show_default=True, hidden=True,
                            help="The nftables table (ip family) the proxy owns.")(function)
    return click.option("--service-cluster-ip-range", default="10.96.0.0/12", show_default=True,
                        help="The Services' range: traffic to an address no Service holds is rejected.")(function)


def _cluster_range(pod_cidr: str) -> str:
    from pilothouse.components.agent.podrange import AUTO, DEFAULT_CLUSTER_CIDR

    return DEFAULT_CLUSTER_CIDR if pod_cidr == AUTO else pod_cidr


def _proxy_config(node_name: str, cluster_cidr: str, service_range: str, table: str) -> Any:
    from pilothouse.cli.proxyflags import proxy_tuning
    from pilothouse.components.proxy import ProxyConfig

    return ProxyConfig(node_name=node_name, cluster_cidr=cluster_cidr, table=table,
                       service_cidrs=tuple(c.strip() for c in service_range.split(",") if c.strip()),
                       **proxy_tuning())


@main.command()
@connection_options
@click.option("--node-name", default="", help="This node's name (default: the hostname): for Local traffic policies.")
@click.option("--cluster-cidr", default="10.244.0.0/16", show_default=True,
              help="The pods' range: ClusterIP traffic from elsewhere is masqueraded.")
@proxy_options
@click.option("--cleanup", is_flag=True, help="Remove the proxy's nftables table and exit.")
@click.option("--metrics-bind-address", default="127.0.0.1:10249", show_default=True,
              help="Where kube-proxy's metrics (/metrics, /healthz, /proxyMode) are served; 0 turns it off.")
@click.option("-v", "--verbose", count=True)
def proxy(server_url: str | None, kubeconfig: str | None, node_name: str, cluster_cidr: str,
          service_cluster_ip_range: str, proxy_table: str, cleanup: bool, metrics_bind_address: str,
          verbose: int) -> None:
    """Run the service proxy (kube-proxy's nftables mode) for this node."""
    import socket

    from pilothouse.components.netkernel.nft import Nft
    from pilothouse.components.proxy import start_proxy
    from pilothouse.components.proxy.metrics import start_metrics_server
    from pilothouse.components.proxy.rules import FAMILY

    _setup_logging(verbose)
    config = _proxy_config(node_name or socket.gethostname().lower(), cluster_cidr, service_cluster_ip_range,
                           proxy_table)
    if cleanup:
        _run(Nft().delete_table(FAMILY, proxy_table))
        return
    target = _target(server_url, kubeconfig)

    async def run() -> None:
        proxier = await start_proxy(target, config)
        if proxier is None:
            raise SystemExit(1)
        metrics = await start_metrics_server(metrics_bind_address)
        try:
            await _wait_for_signal()
        finally:
            if metrics is not None:
                await metrics.cleanup()
            await proxier.stop()
            await proxier.client.close()

    _run(run())


@main.command()
@connection_options
@click.option("--node-name", default="", help="Node name (default: the hostname).")
@click.option("--node-labels", default="", help="Labels to register the node with: k=v,k2=v2.")
@click.option("--register-with-taints", default="",
              help="Taints to register the node with: k=v:NoSchedule,k2:NoExecute.")
@click.option("--register-node", type=bool, default=True, show_default=True,
              help="false: wait for a Node registered by hand (the seed's manual registration) and adopt it.")
@click.option("--pod-manifest-path", "--manifests-dir", "manifests_dir", default=None,
              help="Static pod manifests (kubelet's staticPodPath; the seed: /etc/kubernetes/manifests).")
@click.option("--address", default="127.0.0.1", show_default=True, help="Address the agent serves logs/exec on.")
@click.option("--port", type=int, default=10250, show_default=True)
@click.option("--node-ip", default=None, help="The node's InternalIP (default: --address).")
@click.option("--runtime", type=click.Choice(["docker", "simulated"]), default="docker", show_default=True)
@click.option("--runtime-endpoint", default=None,
              help="Docker API socket, e.g. unix:///run/podman/podman.sock (default: start podman's service).")
@click.option("--simulate", type=int, default=0, help="Host this many simulated nodes (implies --runtime simulated).")
@click.option("--simulate-watch", type=click.Choice(["per-node", "shared"]), default="per-node", show_default=True,
              help="Simulated nodes' pod watches: one per node filtered by spec.nodeName, as kubelets; or one shared.")
@click.option("--simulate-token-file", default=None,
              help="Static token file (the server's --token-auth-file format) with a token for each simulated "
                   "node's user system:node:<name>: each node speaks as its own kubelet.")
@click.option("--root-dir", default=None, help="Agent state (volumes, engine socket); default under the state dir.")
@click.option("--image-credentials-file", default=None, help="Node-wide registry credentials (.dockercfg).")
@click.option("--stop-pods-on-exit", is_flag=True, help="Stop every pod's containers when the agent exits.")
@click.option("--pod-network", type=click.Choice(["agent", "engine"]), default="agent", show_default=True,
              help="agent: pods get addresses on the agent's bridge (pilothouse0); engine: the engine's network.")
@click.option("--pod-cidr", default="10.244.0.0/16", show_default=True,
              help="Pod addresses on this host's bridge (shared by every agent on the host); auto: the range "
                   "node IPAM gives the Node (controller-manager --allocate-node-cidrs), with routes to the "
                   "other Nodes' ranges.")
@click.option("--cluster-cidr", default="",
              help="Every Node's pods: reached without masquerade (default: --pod-cidr; 10.244.0.0/16 with auto).")
@click.option("--pod-routes", type=click.Choice(["auto", "vxlan", "direct", "none"]), default="auto",
              show_default=True, help="With --pod-cidr auto: direct routes to Nodes on a shared subnet and VXLAN to "
                                      "the others (auto), VXLAN to all, direct only, or none.")
@click.option("--bootstrap-kubeconfig", default=None,
              help="kubeconfig with a bootstrap token: obtain a client certificate through a CSR and write "
                   "--kubeconfig (default <root-dir>/kubelet.conf) when it is missing or expired.")
@proxy_options
@click.option("--disable", default="", help="Embedded components not to run: proxy (bring your own service proxy), "
                                          "network-policy (bring your own NetworkPolicy enforcement).")
@click.option("--network-policy-kubeconfig", default=None,
              help="The embedded NetworkPolicy controller's credentials (default: the agent's); under RBAC one "
                   "that may list and watch pods, namespaces and networkpolicies.")
@click.option("--proxy-kubeconfig", default=None,
              help="The embedded proxy's credentials (default: the agent's). Under RBAC, a system:kube-proxy "
                   "kubeconfig (pilothouse kubeconfig --user system:kube-proxy), as k3s gives its kube-proxy.")
@click.option("--cluster-dns", default="",
              help="Nameservers of ClusterFirst pods, IP[,IP] (default: the agent serves cluster DNS on its pod "
                   "bridge's gateway).")
@click.option("--cluster-domain", default="cluster.local", show_default=True, help="The cluster's DNS domain.")
@click.option("--resolv-conf", default="/etc/resolv.conf", show_default=True,
              help="Resolver configuration for dnsPolicy Default pods, and the cluster DNS's upstreams.")
@join_options
@click.option("-v", "--verbose", count=True)
def agent(server_url: str | None, kubeconfig: str | None, node_name: str, node_labels: str, register_with_taints: str,
          register_node: bool,
          manifests_dir: str | None,
          address: str, port: int, node_ip: str | None, runtime: str, runtime_endpoint: str | None, simulate: int,
          simulate_watch: str, simulate_token_file: str | None,
          root_dir: str | None, image_credentials_file: str | None, stop_pods_on_exit: bool, pod_network: str,
          pod_cidr: str, cluster_cidr: str, pod_routes: str, bootstrap_kubeconfig: str | None,
          service_cluster_ip_range: str, proxy_table: str,
          disable: str, network_policy_kubeconfig: str | None, proxy_kubeconfig: str | None, cluster_dns: str,
          cluster_domain: str, resolv_conf: str, token: str | None, discovery_timeout: float, verbose: int) -> None:
    """Run the node agent: register the node and run the pods bound to it."""
    import socket

    from pilothouse.client.errors import APIError
    from pilothouse.components.agent.agent import Agent, AgentOptions, parse_labels, parse_taints
    from pilothouse.components.agent.bootstrap import BootstrapError, bootstrap_client_certificate

    _setup_logging(verbose)
    try:
        taints = parse_taints(register_with_taints)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--register-with-taints") from None
    root_dir = root_dir or str(default_data_dir() / "agent")
    node_name = node_name or socket.gethostname().lower()
    if token:
        kubeconfig, bootstrap_kubeconfig = join_cluster(server_url, kubeconfig, token, discovery_timeout, root_dir)
    if bootstrap_kubeconfig:
        kubeconfig = kubeconfig or str(Path(root_dir) / "kubelet.conf")
        try:
            _run(bootstrap_client_certificate(bootstrap_kubeconfig, Path(kubeconfig), Path(root_dir), node_name))
        except (BootstrapError, APIError) as error:  # the token refused, the CSR denied: one line, exit 1
            raise click.ClickException(f"TLS bootstrap failed: {error}") from None
    _target(server_url, kubeconfig)  # refuse a missing or unreadable kubeconfig here, with the flag's name
    options = AgentOptions(
        server=server_url or "", kubeconfig=kubeconfig, node_name=node_name, node_labels=parse_labels(node_labels),
        node_taints=taints, register_node=register_node, manifests_dir=manifests_dir, port=port, address=address,
        node_ip=node_ip,
        runtime="simulated" if simulate else runtime, runtime_endpoint=runtime_endpoint, simulate=simulate,
        simulate_watch=simulate_watch, simulate_token_file=simulate_token_file, root_dir=root_dir,
        image_credentials_file=image_credentials_file,
        pod_network=pod_network, pod_cidr=pod_cidr, cluster_cidr=cluster_cidr, pod_routes=pod_routes,
        routes_kubeconfig=proxy_kubeconfig,
        cluster_dns=[ip for ip in cluster_dns.split(",") if ip],
        cluster_domain=cluster_domain, resolv_conf=resolv_conf)

    disabled = {name.strip() for name in disable.split(",") if name.strip()}
    embeddable = {"proxy", "network-policy"}
    if disabled - embeddable:
        raise click.BadParameter(f"unknown components {sorted(disabled - embeddable)}", param_hint="--disable")
    # the proxy runs inside the agent, as k3s embeds kube-proxy; not for simulated nodes (no kernel of theirs)
    embed_proxy = "proxy" not in disabled and not simulate and runtime != "simulated"
    embed_netpol = "network-policy" not in disabled and not simulate and runtime != "simulated"

    async def run() -> None:
        from pilothouse.components.proxy import start_proxy

        node_agent = Agent(options)
        await node_agent.start()
        proxy_target = _target(server_url, proxy_kubeconfig) if proxy_kubeconfig else node_agent.target
        proxy = (await start_proxy(proxy_target, _proxy_config(node_name, cluster_cidr or _cluster_range(pod_cidr),
                                                               service_cluster_ip_range,
                                                               proxy_table)) if embed_proxy else None)
        netpol = await _start_network_policy(server_url, network_policy_kubeconfig, node_agent.target, node_name,
                                             embed_netpol)
        try:
            await _wait_for_signal()
        finally:
            if netpol is not None:
                await netpol.stop()
                if stop_pods_on_exit:
                    await netpol.cleanup()
                await netpol.client.close()
            if proxy is not None:
                await proxy.stop()
                if stop_pods_on_exit:  # the node goes away whole (pilothouse up): so do its Service rules
                    await proxy.cleanup()
                await proxy.client.close()
            await node_agent.stop(stop_containers=stop_pods_on_exit)

    _run(run())


async def _start_network_policy(server_url: str | None, kubeconfig: str | None, agent_target: Any, node_name: str,
                                enabled: bool) -> Any:
    """The agent's embedded NetworkPolicy controller (k3s embeds kube-router's), or None."""
    if not enabled:
        return None
    from pilothouse.components.netpolicy import start_network_policy

    return await start_network_policy(_target(server_url, kubeconfig) if kubeconfig else agent_target, node_name)


@main.command()
@server_options
@auth_options
@click.option("--node-name", default="", help="This machine's node name (default: the hostname).")
@click.option("--node-labels", default="", help="Labels for this machine's node: k=v,k2=v2.")
@click.option("--agent-port", type=int, default=0, help="The node agent's port (default: a free one).")
@click.option("--pod-cidr", default="10.244.0.0/16", show_default=True,
              help="Pod addresses on this host's bridge (shared by every agent on the host).")
def up(data_dir: Path, bind_address: str, port: int, datastore_endpoint: str, etcd_servers: str,
       etcd_cafile: str | None, etcd_certfile: str | None, etcd_keyfile: str | None, service_cluster_ip_range: str,
       compaction_interval: float, verbose: int, node_name: str, node_labels: str, agent_port: int,
       pod_cidr: str, auth: Any) -> None:
    """Bring up a whole cluster on this machine: API server, scheduler, controllers and a node agent."""
    from pilothouse.cli.up import bring_up

    _setup_logging(verbose)
    config = _server_config(data_dir, bind_address, port, datastore_endpoint, etcd_servers, etcd_cafile,
                            etcd_certfile, etcd_keyfile, service_cluster_ip_range, compaction_interval)
    config.auth = auth
    _run(bring_up(config, node_name=node_name, node_labels=node_labels, agent_port=agent_port,
                         verbose=verbose, pod_cidr=pod_cidr))


for _command in (*hostsetup.COMMANDS, *backup.COMMANDS):  # cloud-config, install, uninstall; backup, restore
    main.add_command(_command)


from pilothouse.cli.dnscmd import dns_command  # noqa: E402  (it uses the helpers above)

main.add_command(dns_command)

from pilothouse.cli.podroutescmd import pod_routes_command  # noqa: E402  (it uses the helpers above)

main.add_command(pod_routes_command)
