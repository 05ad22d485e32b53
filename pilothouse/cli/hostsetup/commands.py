"""The click commands: ``cloud-config``, ``install`` and ``uninstall``.

The modules doing the work are imported inside the commands, as main.py does, so that every other
command (the server's start in particular) does not pay for them.
"""

from __future__ import annotations

import socket
from pathlib import Path

import click

__all__ = ["COMMANDS"]

_CONTROL_PLANE = click.Choice(["processes", "static-pods"])
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
@click.option("--control-plane", type=_CONTROL_PLANE, default=None,
              help="A server's: a server unit (processes), or kubeadm's way, the server a static pod of the "
                   "host's agent (static-pods). Default: the topology's controlPlane.")
def cloud_config(role: str, topology: Path, host_name: str, token: str, pip_spec: str,
                 control_plane: str | None) -> None:
    """Print cloud-init user-data (#cloud-config) that sets a fresh host up as HOST of the topology."""
    from pilothouse import __version__
    from pilothouse.cli.hostsetup.cloudconfig import render_cloud_config, settings_for_host
    from pilothouse.machinery.topology import TopologyError, load_cluster_file

    try:
        cluster = load_cluster_file(topology)
        settings = settings_for_host(cluster, host_name, role, token=token,
                                     pip_spec=pip_spec or f"pilothouse=={__version__}",
                                     control_plane=control_plane or "")
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
@click.option("--control-plane", type=_CONTROL_PLANE, default="processes", show_default=True,
              help="A server's: a server unit, or the server a static pod of an agent on this host.")
@click.option("--root", type=click.Path(path_type=Path, file_okay=False), default=None, help=_ROOT_HELP)
@click.argument("extra_args", nargs=-1, type=click.UNPROCESSED)
def install_command(role: str, server_url: str, token: str, node_name: str, node_labels: str, address: str,
                    control_plane: str, root: Path | None, extra_args: tuple[str, ...]) -> None:
    """Write and enable systemd units running this pilothouse as ROLE (arguments after -- go to it)."""
    from pilothouse.cli.hostsetup.install import InstallError, install, local_layout
    from pilothouse.cli.hostsetup.plan import Settings

    if role == "agent" and not server_url:
        raise click.UsageError("--server is required for --role agent")
    labels = dict(item.split("=", 1) for item in node_labels.split(",") if "=" in item)
    settings = Settings(role=role, node_name=node_name or socket.gethostname().lower(),
                        server_url=server_url or "https://127.0.0.1:6443", address=address, token=token,
                        labels=labels, extra_args=extra_args, control_plane=control_plane)
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


@click.group("control-plane")
def control_plane_group() -> None:
    """kubeadm's init phases on a server host whose agent runs the server as a static pod."""


@control_plane_group.command("init")
@click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="The server's data dir (its pki/ is made here).")
@click.option("--address", required=True, help="This host's address (the serving certificate's name).")
@click.option("--service-cluster-ip-range", "service_range", default="10.96.0.0/12", show_default=True)
@click.option("--server", "server_url", required=True, help="The URL the agent's kubeconfigs name.")
@click.option("--node-name", required=True)
@click.option("--image", required=True, help="The server's image: built and imported into podman unless present.")
@click.option("--kubeconfig", type=click.Path(path_type=Path, dir_okay=False), required=True)
@click.option("--proxy-kubeconfig", type=click.Path(path_type=Path, dir_okay=False), required=True)
@click.option("--network-policy-kubeconfig", type=click.Path(path_type=Path, dir_okay=False), required=True)
@click.option("--skip-image", is_flag=True, help="Certificates and kubeconfigs only.")
def control_plane_init(data_dir: Path, address: str, service_range: str, server_url: str, node_name: str,
                       image: str, kubeconfig: Path, proxy_kubeconfig: Path, network_policy_kubeconfig: Path,
                       skip_image: bool) -> None:
    """The CA and serving certificate, the agent's kubeconfigs from that CA, and the server's image."""
    from pilothouse.cli.controlplane import ensure_certs, ensure_image, write_node_kubeconfigs

    ensure_certs(data_dir, address, service_range)
    click.echo(f"certificates in {data_dir / 'pki'}")
    write_node_kubeconfigs(data_dir / "pki", server_url, node_name, agent=kubeconfig, proxy=proxy_kubeconfig,
                           network_policy=network_policy_kubeconfig)
    click.echo(f"kubeconfigs {kubeconfig}, {proxy_kubeconfig}, {network_policy_kubeconfig}")
    if not skip_image:
        try:
            ensure_image(["podman"], image, data_dir / "tmp")
        except (RuntimeError, OSError) as error:
            raise click.ClickException(str(error)) from error
        click.echo(f"image {image}")


COMMANDS = (cloud_config, install_command, uninstall_command, control_plane_group)
