"""``pilothouse cloud-config``: cloud-init user-data that makes a fresh host one of the topology's hosts.

Debian's cloud-init has no ``coreos: units:`` (the seed's CoreOS key), so units travel as
``write_files`` into /etc/systemd/system and ``runcmd`` enables them; ``packages`` brings what the
role needs and the install unit puts pilothouse into a venv, as the seed's download unit fetched
Kubernetes. The result passes ``cloud-init schema --config-file``.
"""

from __future__ import annotations

from typing import Any

import yaml

from pilothouse.cli.hostsetup.plan import CLOUD_LAYOUT, TARGET, Layout, Settings, plan_host
from pilothouse.machinery.topology import Cluster, TopologyError

__all__ = ["render_cloud_config", "settings_for_host"]

API_PORT = 6443


def _flag_value(args: tuple[str, ...], flag: str) -> str:
    """The value of ``--flag V`` or ``--flag=V`` in a component's extra arguments ('' when absent)."""
    for index, arg in enumerate(args):
        if arg == flag and index + 1 < len(args):
            return args[index + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return ""


def settings_for_host(cluster: Cluster, host_name: str, role: str, *, token: str = "",
                      pip_spec: str = "pilothouse", control_plane: str = "") -> Settings:
    """The host's settings from the topology; ``role`` may be ``register`` for an agent host.
    ``control_plane``: a server's, the topology's ``controlPlane`` when empty."""
    host = cluster.host(host_name)
    if (role == "server") != (host.role == "server"):
        raise TopologyError(f"host {host.name!r} has role {host.role} in the topology, not {role}")
    server = cluster.server
    server_args = cluster.component_args.get("server", ())
    port = _flag_value(server_args, "--port") or str(API_PORT)
    server_url = f"https://{server.address}:{port}"
    register_url = ""
    if role == "register":
        insecure_port = _flag_value(server_args, "--insecure-port")
        if not insecure_port:
            raise TopologyError("the register role runs the seed's register_node.sh, which posts the node over "
                                "plain HTTP: give the server an insecure port in the topology "
                                "(components: {server: {args: [--insecure-port, '8080', "
                                "--insecure-bind-address, '0.0.0.0']}})")
        register_url = f"http://{server.address}:{insecure_port}"
    if role != "server" and not token:
        raise TopologyError("an agent joins with a token: pass --token (from `pilothouse token create` on the "
                            "server)")
    return Settings(role=role, node_name=host.name, server_url=server_url, address=host.address, token=token,
                    labels=host.labels, taints=host.taints, pod_cidr=host.pod_cidr,
                    service_range=cluster.network.service_range, registries=cluster.registries,
                    extra_args=cluster.component_args.get("server" if role == "server" else "agent", ()),
                    register_url=register_url, pip_spec=pip_spec,
                    control_plane=control_plane or cluster.control_plane,
                    agent_args=cluster.component_args.get("agent", ()) if role == "server" else ())


def _octal(mode: int) -> str:
    return f"0{mode:o}"


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (scripts, units) as literal blocks, so the user-data reads like the seed's."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def render_cloud_config(settings: Settings, layout: Layout = CLOUD_LAYOUT, *, comment: str = "") -> str:
    plan = plan_host(settings, layout)
    write_files: list[dict[str, Any]] = [
        {"path": f.path, "owner": "root:root", "permissions": _octal(f.mode), "content": f.content}
        for f in (*plan.files, *plan.unit_files(layout))]
    document: dict[str, Any] = {
        "hostname": settings.node_name,
        "package_update": True,
        "packages": list(plan.packages),
        "write_files": write_files,
        # --no-block: runcmd runs inside cloud-final.service; waiting there for units that are
        # ordered after the network and the install step gains nothing.
        "runcmd": ["systemctl daemon-reload",
                   " ".join(["systemctl", "enable", *plan.enable]),
                   f"systemctl start --no-block {TARGET}"],
    }
    header = "#cloud-config\n" + "".join(f"# {line}\n" for line in comment.splitlines())
    return header + yaml.dump(document, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120)
