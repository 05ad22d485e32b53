"""The click commands: ``cloud-config``, ``install`` and ``uninstall``.

The modules doing the work are imported inside the commands, as main.py does, so that every other
command (the server's start in particular) does not pay for them.
"""

from __future__ import annotations

import socket
from pathlib import Path

import click

__all__ = ["COMMANDS"]

_ROOT_HELP = "Write under this directory and only enable there (systemd's --root); nothing is started."


@click.command("cloud-config")
@click.option("--role", type=click.Choice(["server", "agent", "register"]), required=True,
              help="register: an agent whose node is registered by the seed's register_node.sh.")
@click.option("-f", "--filename", "topology", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="The topology file (kind: Cluster).")
@click.option("--host", "host_name", required=True, help="The host of the topology to render.")
@click.option("--token", default="", help="Join token for agents (pilothouse token create).")
@click.option("--pip-spec", default="",
              help="What the host pip-installs (default: pilothouse==<this version>, so the host runs what "
                   "rendered it): a requirement, a wheel's URL, a git+https URL.")
def cloud_config(role: str, topology: Path, host_name: str, token: str, pip_spec: str) -> None:
    """Print cloud-init user-data (#cloud-config) that sets a fresh host up as HOST of the topology."""
    from pilothouse import __version__
    from pilothouse.cli.hostsetup.cloudconfig import render_cloud_config, settings_for_host
    from pilothouse.machinery.topology import TopologyError, load_cluster_file

    try:
        cluster = load_cluster_file(topology)
        settings = settings_for_host(cluster, host_name, role, token=token,
                                     pip_spec=pip_spec or f"pilothouse=={__version__}")
    except TopologyError as error:
        raise click.ClickException(str(error)) from error
    comment = f"pilothouse {role} {host_name} of cluster {cluster.name}\n(pilothouse cloud-config --role {role} " \
              f"-f {topology.name} --host {host_name})"
    click.echo(render_cloud_config(settings, comment=comment), nl=False)


@click.command("install", context_settings={"allow_interspersed_args": False})
@click.option("--role", type=click.Choice(["server", "agent"]), required=True)
@click.option("--server", "server_url", default="", help="The API server agents join (agent role).")
@click.option("--token", default="", help="Join token (pilothouse token create).")
@click.option("--node-name", default="", help="Node name (default: the hostname).")
@click.option("--node-labels", default="", help="Labels for the node: k=v,k2=v2.")
@click.option("--address", default="", help="This host's address (agent serving address, server TLS SAN).")
@click.option("--root", type=click.Path(path_type=Path, file_okay=False), default=None, help=_ROOT_HELP)
@click.argument("extra_args", nargs=-1, type=click.UNPROCESSED)
def install_command(role: str, server_url: str, token: str, node_name: str, node_labels: str, address: str,
                    root: Path | None, extra_args: tuple[str, ...]) -> None:
    """Write and enable systemd units running this pilothouse as ROLE (arguments after -- go to it)."""
    from pilothouse.cli.hostsetup.install import InstallError, install, local_layout
    from pilothouse.cli.hostsetup.plan import Settings

    if role == "agent" and not server_url:
        raise click.UsageError("--server is required for --role agent")
    labels = dict(item.split("=", 1) for item in node_labels.split(",") if "=" in item)
    settings = Settings(role=role, node_name=node_name or socket.gethostname().lower(),
                        server_url=server_url or "https://127.0.0.1:6443", address=address, token=token,
                        labels=labels, extra_args=extra_args)
    try:
        written = install(settings, local_layout(), root=root)
    except InstallError as error:
        raise click.ClickException(str(error)) from error
    for path in written:
        click.echo(f"wrote {path}")
    click.echo(f"enabled pilothouse {role}" + (f" under {root}" if root else ""))


@click.command("uninstall")
@click.option("--root", type=click.Path(path_type=Path, file_okay=False), default=None, help=_ROOT_HELP)
def uninstall_command(root: Path | None) -> None:
    """Stop, disable and remove what pilothouse install wrote."""
    from pilothouse.cli.hostsetup.install import InstallError, local_layout, uninstall

    try:
        removed = uninstall(local_layout(), root=root)
    except InstallError as error:
        raise click.ClickException(str(error)) from error
    for path in removed:
        click.echo(f"removed {path}")


COMMANDS = (cloud_config, install_command, uninstall_command)
