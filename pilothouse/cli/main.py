"""The ``pilothouse`` command: ``server``, ``kubectl``, and (as they land) the other components."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import sys
from pathlib import Path

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
                     help="sqlite:///path/state.db (default: sqlite://<data-dir>/state.db)."),
        click.option("--service-cluster-ip-range", default="10.96.0.0/12", show_default=True,
                     help="CIDR that Service cluster IPs are allocated from."),
        click.option("--compaction-interval", type=float, default=300.0, show_default=True,
                     help="Seconds between compactions of the store's history."),
        click.option("-v", "--verbose", count=True),
    ]
    for option in reversed(options):
        function = option(function)
    return function


@main.command()
@server_options
def server(data_dir: Path, bind_address: str, port: int, datastore_endpoint: str, service_cluster_ip_range: str,
           compaction_interval: float, verbose: int) -> None:
    """Run the API server."""
    from pilothouse.apiserver.serve import ServerConfig, run_forever

    _setup_logging(max(verbose, 1))
    config = ServerConfig(data_dir=data_dir, bind_address=bind_address, port=port,
                          datastore_endpoint=datastore_endpoint, service_cluster_ip_range=service_cluster_ip_range,
                          compaction_interval=compaction_interval)
    click.echo(f"pilothouse API server on {config.url}; kubeconfig: {config.kubeconfig_path}", err=True)
    asyncio.run(run_forever(config))


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
