"""The ``pilothouse`` command: ``server``, ``kubectl``, and (as they land) the other components."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import click
import platformdirs

__all__ = ["main"]


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
        click.option("-v", "--verbose", count=True),
    ]
    for option in reversed(options):
        function = option(function)
    return function


EMBEDDED = ("scheduler", "controller-manager")


@main.command()
@server_options
@click.option("--disable", default="", help="Embedded components not to run: scheduler,controller-manager.")
def server(data_dir: Path, bind_address: str, port: int, datastore_endpoint: str, etcd_servers: str,
           etcd_cafile: str | None, etcd_certfile: str | None, etcd_keyfile: str | None,
           service_cluster_ip_range: str, compaction_interval: float, verbose: int, disable: str) -> None:
    """Run the API server, with the scheduler and the controller manager embedded."""
    from pilothouse.apiserver.serve import ServerConfig

    _setup_logging(max(verbose, 1))
    disabled = {name.strip() for name in disable.split(",") if name.strip()}
    unknown = disabled - set(EMBEDDED)
    if unknown:
        raise click.BadParameter(f"unknown component(s) {sorted(unknown)}; choose from {list(EMBEDDED)}")
    if etcd_servers and datastore_endpoint:
        raise click.BadParameter("give --datastore-endpoint or --etcd-servers, not both")
    if etcd_servers:
        from pilothouse.store import etcd_endpoint_from_servers

        datastore_endpoint = etcd_endpoint_from_servers(etcd_servers)
    config = ServerConfig(data_dir=data_dir, bind_address=bind_address, port=port,
                          datastore_endpoint=datastore_endpoint, service_cluster_ip_range=service_cluster_ip_range,
                          compaction_interval=compaction_interval, etcd_cafile=etcd_cafile,
                          etcd_certfile=etcd_certfile, etcd_keyfile=etcd_keyfile)
    click.echo(f"pilothouse API server on {config.url}; kubeconfig: {config.kubeconfig_path}", err=True)
    asyncio.run(_serve_with_components(config, [c for c in EMBEDDED if c not in disabled], verbose))


async def _serve_with_components(config: Any, components: list[str], verbose: int) -> None:
    from pilothouse.apiserver.serve import start_server
    from pilothouse.cli.supervisor import Supervisor

    running = await start_server(config)
    supervisor = Supervisor()
    for component in components:
        supervisor.add(component, component, "--server", running.url, *(["-v"] * verbose))
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


@main.command()
@click.option("--server", "server_url", required=True, help="API server URL, e.g. http://127.0.0.1:6443")
@click.option("-v", "--verbose", count=True)
def scheduler(server_url: str, verbose: int) -> None:
    """Run the scheduler against an API server."""
    from pilothouse.components.scheduler import run_scheduler

    _setup_logging(verbose)
    _run_until_signal(run_scheduler(server_url))


@main.command("controller-manager")
@click.option("--server", "server_url", required=True, help="API server URL, e.g. http://127.0.0.1:6443")
@click.option("--controllers", default="", help="Comma-separated subset of controllers (default: all).")
@click.option("--node-monitor-grace-period", type=float, default=40.0, show_default=True,
              help="Seconds without a node heartbeat before the node is marked Unknown.")
@click.option("--pod-eviction-timeout", type=float, default=300.0, show_default=True,
              help="Default toleration (seconds) of pods for unreachable/not-ready nodes.")
@click.option("-v", "--verbose", count=True)
def controller_manager(server_url: str, controllers: str, node_monitor_grace_period: float,
                       pod_eviction_timeout: float, verbose: int) -> None:
    """Run the controller manager against an API server."""
    from pilothouse.components.controllers.manager import ControllerManager

    _setup_logging(verbose)
    names = [c.strip() for c in controllers.split(",") if c.strip()] or None
    manager = ControllerManager(server_url, controllers=names, options={
        "node_monitor_grace_period": node_monitor_grace_period,
        "pod_eviction_timeout": pod_eviction_timeout,
    })
    _run_until_signal(manager.run())


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

    asyncio.run(main_task())


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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
