"""``pilothouse cluster create/list/start/stop/delete/kubeconfig``: a cluster of network-namespace
hosts on this machine from one topology file (what kind and k3d do with containers).

The heavy modules load inside the commands, so that ``pilothouse --help`` stays quick.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from pilothouse.cli.cluster.layout import Layout

__all__ = ["cluster"]


def _say(message: str) -> None:
    click.echo(f"✓ {message}", err=True)


def _state_dir(value: Path | None) -> Path:
    from pilothouse.cli.cluster.layout import default_state_dir

    return value or default_state_dir()


def _layout(state_dir: Path | None, name: str) -> Layout:
    from pilothouse.cli.cluster.layout import Layout

    layout = Layout(_state_dir(state_dir) / name)
    if not layout.topology_path.exists():
        raise click.ClickException(f"no cluster {name!r} in {layout.directory.parent} (pilothouse cluster list)")
    return layout


def _fail(error: Exception) -> click.ClickException:
    return click.ClickException(str(error))


_STATE_DIR = click.option("--state-dir", type=click.Path(path_type=Path), default=None,
                          help="Where clusters keep their state (default /var/lib/pilothouse/clusters for root).")
_WAIT = click.option("--wait", type=float, default=300.0, show_default=True,
                     help="Seconds to wait for every node to be Ready (0: do not wait).")
_HOSTS = click.option("--host", "hosts", multiple=True, help="Only this host (repeatable).")


@click.group()
def cluster() -> None:
    """Clusters of network-namespace hosts on this machine, built from a topology file (kind: Cluster)."""


@cluster.command()
@click.option("-f", "--filename", "path", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="The topology file (apiVersion pilothouse.dev/v1alpha1, kind Cluster).")
@click.option("--name", default=None, help="The cluster's name (default: the file's metadata.name).")
@_STATE_DIR
@_WAIT
def create(path: Path, name: str | None, state_dir: Path | None, wait: float) -> None:
    """Build the cluster FILE describes: a namespace, engine and agent per host, the control plane on the server."""
    from pilothouse.cli.cluster import lifecycle
    from pilothouse.cli.cluster.layout import Layout
    from pilothouse.cli.cluster.netns import NetnsError
    from pilothouse.machinery.topology import TopologyError, load_cluster_file

    try:
        topology = load_cluster_file(path, name)
    except TopologyError as error:
        raise click.ClickException(str(error)) from None
    text = path.read_text()
    layout = Layout(_state_dir(state_dir) / topology.name)
    try:
        lifecycle.create(layout, topology, text, _say, wait=wait)
    except (lifecycle.ClusterError, NetnsError, OSError) as error:
        if not layout.topology_path.exists():
            raise _fail(error) from None
        raise click.ClickException(f"{error}\n(the cluster is left as it is, to look at; remove it with "
                                   f"pilothouse cluster delete {topology.name})") from None
    click.echo(f"cluster {topology.name} is up: pilothouse cluster kubeconfig {topology.name} > "
               f"{topology.name}.kubeconfig", err=True)


@cluster.command("list")
@_STATE_DIR
def list_clusters(state_dir: Path | None) -> None:
    """The clusters on this machine and whether they run."""
    from pilothouse.cli.cluster import lifecycle
    from pilothouse.cli.cluster.layout import Layout

    root = _state_dir(state_dir)
    rows = [lifecycle.describe(Layout(p.parent)) for p in sorted(root.glob("*/cluster.yaml"))]
    click.echo(f"{'NAME':<20} {'STATUS':<8} {'HOSTS':<6} {'SUBNET':<18} SERVER")
    for row in rows:
        click.echo(f"{row['name']:<20} {row['status']:<8} {row['running']}/{row['hosts']:<4} {row['subnet']:<18} "
                   f"{row['server']}")


@cluster.command()
@click.argument("name")
@_STATE_DIR
@_HOSTS
def stop(name: str, state_dir: Path | None, hosts: tuple[str, ...]) -> None:
    """Stop the cluster's processes and pods (or one host's); its state is kept."""
    from pilothouse.cli.cluster import lifecycle

    lifecycle.stop(_layout(state_dir, name), _say, hosts)


@cluster.command()
@click.argument("name")
@_STATE_DIR
@_HOSTS
@_WAIT
def start(name: str, state_dir: Path | None, hosts: tuple[str, ...], wait: float) -> None:
    """Start a stopped cluster (or one host) again."""
    from pilothouse.cli.cluster import lifecycle
    from pilothouse.cli.cluster.netns import NetnsError

    try:
        lifecycle.start(_layout(state_dir, name), _say, wait=wait, hosts=hosts)
    except (lifecycle.ClusterError, NetnsError, OSError) as error:
        raise _fail(error) from None


@cluster.command()
@click.argument("name")
@_STATE_DIR
def delete(name: str, state_dir: Path | None) -> None:
    """Remove the cluster: processes, containers, mounts, namespaces, links, routes and its state."""
    from pilothouse.cli.cluster import lifecycle

    lifecycle.delete(_layout(state_dir, name), _say)


@cluster.command()
@click.argument("name")
@_STATE_DIR
def kubeconfig(name: str, state_dir: Path | None) -> None:
    """Print an admin kubeconfig for the cluster, reachable from this machine."""
    import yaml

    from pilothouse.cli.cluster import lifecycle

    try:
        document = lifecycle.kubeconfig(_layout(state_dir, name))
    except lifecycle.ClusterError as error:
        raise _fail(error) from None
    click.echo(yaml.safe_dump(document, sort_keys=False), nl=False)


@cluster.command("run-host", hidden=True)
@click.argument("name")
@click.argument("host")
@_STATE_DIR
def run_host(name: str, host: str, state_dir: Path | None) -> None:
    """(internal) One host's supervisor, started detached by create/start."""
    import asyncio
    import logging

    from pilothouse.cli.cluster.hostrun import run_host as run

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(run(_layout(state_dir, name), host))
