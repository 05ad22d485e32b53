"""What one host gets: helper scripts, credentials and systemd units for its role.

``cloud-config`` writes the plan as cloud-init user-data for a fresh host; ``install`` writes the same
plan on the machine it runs on. The units follow the seed's shape: a target that wants the role's
services, ``Requires``/``After`` on what each needs (the install step, the network, the register
step), ``ExecStartPre`` checks that wait for the server's port and for ``/healthz`` to say ``ok``, and
``Restart=always`` with a delay.

A server with ``control_plane`` ``static-pods`` follows kubeadm instead of the seed: a oneshot unit runs
``pilothouse control-plane init`` (the CA and serving certificate, the agent's kubeconfigs, the
server's image built on the host from the venv's interpreter: no registry publishes a pilothouse image,
and one built on the host is the very version the install step put there), the server's manifest is a
file of the plan in the agent's ``--pod-manifest-path``, and the agent unit takes the server unit's
place; the scheduler and controller manager run inside the server's pod, as in ``cluster create``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from pilothouse import __version__
from pilothouse.cli.cluster.image import PYTHON
from pilothouse.cli.controlplane import MANIFEST, manifest_text, server_manifest
from pilothouse.cli.hostsetup.scripts import REGISTER_NODE, WAIT_HEALTHZ, WUPIAO
from pilothouse.cli.hostsetup.units import EnvVar, Unit, command_line
from pilothouse.machinery.topology import STATIC_PODS, Registry, Taint

__all__ = ["CLOUD_LAYOUT", "CONTROL_PLANE_UNIT", "ROLES", "STATIC_IMAGE", "TARGET", "File", "HostPlan", "Layout",
           "Settings", "plan_host", "static_manifest"]

ROLES = ("server", "agent", "register")
TARGET = "pilothouse.target"
INSTALL_UNIT = "pilothouse-install.service"
SERVER_UNIT = "pilothouse-server.service"
AGENT_UNIT = "pilothouse-agent.service"
REGISTER_UNIT = "pilothouse-register.service"
CONTROL_PLANE_UNIT = "pilothouse-control-plane.service"
#: the server's image on a static-pods host: per version, so an upgrade builds the new one
STATIC_IMAGE = f"localhost/pilothouse:{__version__}"
#: ``pilothouse server``'s default service range (cli/main.py)
DEFAULT_SERVICE_RANGE = "10.96.0.0/12"
#: longer than the helper scripts' own 600 s deadline: they fail with a message first, then Restart= retries
START_TIMEOUT = ("TimeoutStartSec", "15min")
# podman, runc and busybox-static (the pause image), iproute2 and iptables (pod network): as
# scripts/install-deps installs them
AGENT_PACKAGES = ("podman", "runc", "busybox-static", "iproute2", "iptables")
KUBECTL_URL = "https://dl.k8s.io/release/v1.32.0/bin/linux/amd64/kubectl"


@dataclass(frozen=True)
class Layout:
    """Where things go on the host."""

    #: the pilothouse executable the units run
    pilothouse: str
    #: when set, an install unit creates this venv and pip-installs pilothouse into it first
    venv: str = ""
    bin_dir: str = "/opt/pilothouse/bin"
    config_dir: str = "/etc/pilothouse"
    data_dir: str = "/var/lib/pilothouse"
    unit_dir: str = "/etc/systemd/system"
    #: the seed's static pod directory (kubelet's --config=/etc/kubernetes/manifests/)
    manifests_dir: str = "/etc/kubernetes/manifests"


#: a fresh cloud host: pilothouse goes into its own venv under /opt, as the seed put Kubernetes in /opt
CLOUD_LAYOUT = Layout(pilothouse="/opt/pilothouse/venv/bin/pilothouse", venv="/opt/pilothouse/venv")


@dataclass(frozen=True)
class Settings:
    """What a host's units need to know, from the topology file or from ``install``'s flags."""

    role: str
    node_name: str
    server_url: str
    address: str = ""
    token: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    taints: Sequence[Taint] = ()
    pod_cidr: str = ""
    service_range: str = ""
    registries: Sequence[Registry] = ()
    extra_args: Sequence[str] = ()
    #: the plain-HTTP URL the seed's register script posts the node to (the server's insecure port)
    register_url: str = ""
    #: what pip installs into the venv (a version, a wheel's URL, a git URL, a local path)
    pip_spec: str = "pilothouse"
    kubectl_url: str = KUBECTL_URL
    #: a server's: ``processes`` (a server unit) or ``static-pods`` (kubeadm's way, see the module's doc)
    control_plane: str = "processes"
    #: a static-pods server's agent's extra arguments (``extra_args`` are the server's)
    agent_args: Sequence[str] = ()

    @property
    def static(self) -> bool:
        return self.role == "server" and self.control_plane == STATIC_PODS


@dataclass(frozen=True)
class File:
    path: str
    content: str
    mode: int = 0o644


@dataclass(frozen=True)
class HostPlan:
    files: tuple[File, ...]
    units: tuple[Unit, ...]
    #: packages the host needs from its distribution (Debian names)
    packages: tuple[str, ...]

    def unit_files(self, layout: Layout) -> tuple[File, ...]:
        return tuple(File(f"{layout.unit_dir}/{u.name}", u.render()) for u in self.units)

    @property
    def enable(self) -> tuple[str, ...]:
        """Units to enable: every one is wanted by the target, the target by multi-user.target."""
        return tuple(u.name for u in self.units)


def _dockercfg(registries: Sequence[Registry]) -> str:
    """The seed's ``.dockercfg`` (registry -> auth, email), which the agent reads from its root dir."""
    return json.dumps({r.server: {"auth": r.auth, "email": r.email} for r in registries}, indent=2) + "\n"


def _docker_config(registries: Sequence[Registry]) -> str:
    """The same credentials as ``config.json`` for podman/docker run by hand on the host."""
    return json.dumps({"auths": {r.server: {"auth": r.auth} for r in registries}}, indent=2) + "\n"


def _registry_files(settings: Settings, layout: Layout) -> list[File]:
    if not settings.registries:
        return []
    return [File(f"{layout.data_dir}/agent/.dockercfg", _dockercfg(settings.registries), 0o600),
            File("/root/.docker/config.json", _docker_config(settings.registries), 0o600)]


def _unit_section(description: str, *, after: Sequence[str], requires: Sequence[str] = (),
                  wants: Sequence[str] = (), before: Sequence[str] = (),
                  conditions: Sequence[tuple[str, str]] = ()) -> list[tuple[str, str]]:
    pairs = [("Description", description)]
    pairs += [("Wants", " ".join(wants))] if wants else []
    pairs += [("Requires", " ".join(requires))] if requires else []
    pairs += [("After", " ".join(after))]
    pairs += [("Before", " ".join(before))] if before else []
    return pairs + list(conditions)


def _restarting(exec_pre: Sequence[Sequence[str | EnvVar]], exec_start: Sequence[str | EnvVar],
                *extra: tuple[str, str]) -> list[tuple[str, str]]:
    pairs = [("ExecStartPre", command_line(c)) for c in exec_pre]
    return [*pairs, ("ExecStart", command_line(exec_start)), *extra, START_TIMEOUT, ("Restart", "always"),
            ("RestartSec", "10")]


def _install_unit(settings: Settings, layout: Layout) -> Unit:
    """The seed's kubernetes.download.service: a oneshot that puts pilothouse (and kubectl) on the host."""
    service = [("Type", "oneshot"), ("RemainAfterExit", "yes"),
               ("ExecStart", command_line(["/usr/bin/python3", "-m", "venv", layout.venv])),
               ("ExecStart", command_line([f"{layout.venv}/bin/python", "-m", "pip", "install", "--upgrade",
                                           settings.pip_spec]))]
    if settings.role == "register":  # the seed's register script calls kubectl
        service += [("ExecStart", command_line(["/usr/bin/curl", "--fail", "--silent", "--location", "--output",
                                                f"{layout.bin_dir}/kubectl", settings.kubectl_url])),
                    ("ExecStart", command_line(["/bin/chmod", "0755", f"{layout.bin_dir}/kubectl"]))]
    return Unit(INSTALL_UNIT, _unit_section(
        "Install pilothouse into a venv", wants=["network-online.target"], after=["network-online.target"],
        conditions=[("ConditionPathExists", f"!{layout.pilothouse}")]), service)


def _server_args(settings: Settings, layout: Layout) -> list[str]:
    """``pilothouse server``'s arguments (from ``server``), as a unit's or a static pod's."""
    args = ["server", "--data-dir", f"{layout.data_dir}/server", "--bind-address", "0.0.0.0", "--secure"]
    if settings.address:
        args += ["--tls-san", settings.address]
    if settings.service_range:
        args += ["--service-cluster-ip-range", settings.service_range]
    return args + list(settings.extra_args)


def _server_port(settings: Settings) -> int:
    authority = settings.server_url.split("://", 1)[-1].split("/", 1)[0]
    return int(authority.rsplit(":", 1)[1]) if ":" in authority else 443


def _server_unit(settings: Settings, layout: Layout, needs: Sequence[str]) -> Unit:
    args: list[str | EnvVar] = [layout.pilothouse, *_server_args(settings, layout)]
    # Started means healthy: units ordered after this one start once /healthz says ok.
    healthy = [f"{layout.bin_dir}/wait-healthz", settings.server_url]
    return Unit(SERVER_UNIT, _unit_section(
        "pilothouse API server, scheduler and controller manager", wants=["network-online.target"],
        requires=needs, after=["network-online.target", *needs]),
        _restarting([], args, ("ExecStartPost", command_line(healthy))))


def _agent_kubeconfigs(layout: Layout) -> dict[str, str]:
    """A static-pods server's agent's kubeconfigs (``control-plane init`` writes them), by flag."""
    root = f"{layout.data_dir}/agent"
    return {"--kubeconfig": f"{root}/kubelet.conf", "--proxy-kubeconfig": f"{root}/proxy.conf",
            "--network-policy-kubeconfig": f"{root}/network-policy.conf"}


def _own_labels(settings: Settings) -> dict[str, str]:
    """The labels a kubelet may set on its own Node: NodeRestriction refuses node-role.kubernetes.io/*
    (kubeadm's mark-control-plane phase sets it with admin credentials, after the Node exists)."""
    from pilothouse.apiserver.admission_plugins.noderestriction import forbidden_labels

    forbidden = set(forbidden_labels(settings.labels, {}))
    return {k: v for k, v in settings.labels.items() if k not in forbidden}


def _agent_unit(settings: Settings, layout: Layout, needs: Sequence[str]) -> Unit:
    server = settings.server_url.split("://", 1)[-1].split("/", 1)[0]
    args: list[str | EnvVar] = [layout.pilothouse, "agent"]
    if settings.static:  # the server is this agent's own pod: credentials from the CA, no join
        args += [word for pair in _agent_kubeconfigs(layout).items() for word in pair]
    else:
        args += ["--server", settings.server_url]
    if settings.token and not settings.static:
        args += ["--token", EnvVar("PILOTHOUSE_TOKEN")]
    args += ["--node-name", settings.node_name, "--root-dir", f"{layout.data_dir}/agent",
             "--pod-manifest-path", layout.manifests_dir]
    if settings.address:
        args += ["--address", settings.address, "--node-ip", settings.address]
    if settings.pod_cidr:
        args += ["--pod-cidr", settings.pod_cidr]
    labels = _own_labels(settings) if settings.static else settings.labels
    if labels:
        args += ["--node-labels", ",".join(f"{k}={v}" for k, v in sorted(labels.items()))]
    if settings.taints:
        args += ["--register-with-taints", ",".join(str(t) for t in settings.taints)]
    if settings.role == "register":
        args += ["--register-node=false"]
    args += list(settings.agent_args if settings.static else settings.extra_args)
    pre: list[list[str | EnvVar]] = [] if settings.static else [[f"{layout.bin_dir}/wupiao", server],
                                                                [f"{layout.bin_dir}/wait-healthz", settings.server_url]]
    pre.append(["/bin/mkdir", "-p", layout.manifests_dir])
    extra = [("EnvironmentFile", f"{layout.config_dir}/agent.env")] if settings.token and not settings.static else []
    # Pods outlive an agent restart (the next agent adopts their containers), as k3s's agent unit does.
    return Unit(AGENT_UNIT, _unit_section(
        f"pilothouse node agent ({settings.node_name})", wants=["network-online.target"], requires=needs,
        after=["network-online.target", *needs]),
        [*extra, *_restarting(pre, args, ("KillMode", "process"), ("Delegate", "yes"))])


def _control_plane_unit(settings: Settings, layout: Layout, needs: Sequence[str]) -> Unit:
    """kubeadm's certs and kubeconfig phases, and the server's image, before the agent starts its pod."""
    args: list[str | EnvVar] = [
        layout.pilothouse, "control-plane", "init", "--data-dir", f"{layout.data_dir}/server",
        "--address", settings.address or "127.0.0.1",
        "--service-cluster-ip-range", settings.service_range or DEFAULT_SERVICE_RANGE,
        "--server", settings.server_url, "--node-name", settings.node_name, "--image", STATIC_IMAGE,
        *[word for pair in _agent_kubeconfigs(layout).items() for word in pair]]
    return Unit(CONTROL_PLANE_UNIT, _unit_section(
        "pilothouse control plane: certificates, the agent's kubeconfigs, the server's image",
        wants=["network-online.target"], requires=needs, after=["network-online.target", *needs],
        before=[AGENT_UNIT]),
        # building the image copies the interpreter and its libraries: minutes on a small host
        [("Type", "oneshot"), ("RemainAfterExit", "yes"), ("ExecStart", command_line(args)), START_TIMEOUT])


def static_manifest(settings: Settings, layout: Layout) -> File:
    """The server's static pod in the agent's manifest directory (0600, as kubeadm writes them)."""
    manifest = server_manifest(f"{layout.data_dir}/server", settings.address or "127.0.0.1", PYTHON,
                               _server_args(settings, layout), STATIC_IMAGE, _server_port(settings))
    return File(f"{layout.manifests_dir}/{MANIFEST}", manifest_text(manifest), 0o600)


def _register_unit(settings: Settings, layout: Layout, needs: Sequence[str]) -> Unit:
    environment = settings.labels.get("environment", "production")
    return Unit(REGISTER_UNIT, _unit_section(
        "Register this node by hand (the seed's register_node.sh)", wants=["network-online.target"],
        requires=needs, after=["network-online.target", *needs], before=[AGENT_UNIT],
        conditions=[("ConditionFileIsExecutable", f"{layout.bin_dir}/kubectl")]),
        [("Type", "oneshot"), ("RemainAfterExit", "yes"),
         ("ExecStart", command_line([f"{layout.bin_dir}/register_node.sh", settings.node_name,
                                     settings.register_url, environment]))])


def plan_host(settings: Settings, layout: Layout) -> HostPlan:
    if settings.role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {settings.role!r}")
    files = [File(f"{layout.bin_dir}/wupiao", WUPIAO, 0o755),
             File(f"{layout.bin_dir}/wait-healthz", WAIT_HEALTHZ, 0o755)]
    units: list[Unit] = []
    needs: list[str] = []
    if layout.venv:
        units.append(_install_unit(settings, layout))
        needs.append(INSTALL_UNIT)
    packages = ["python3-venv", "curl"]
    if settings.static:
        packages += AGENT_PACKAGES
        files.append(static_manifest(settings, layout))
        files += _registry_files(settings, layout)
        units.append(_control_plane_unit(settings, layout, needs))
        units.append(_agent_unit(settings, layout, [*needs, CONTROL_PLANE_UNIT]))
    elif settings.role == "server":
        units.append(_server_unit(settings, layout, needs))
    else:
        packages += AGENT_PACKAGES
        if settings.token:
            files.append(File(f"{layout.config_dir}/agent.env", f"PILOTHOUSE_TOKEN={settings.token}\n", 0o600))
        files += _registry_files(settings, layout)
        if settings.role == "register":
            files.append(File(f"{layout.bin_dir}/register_node.sh",
                              REGISTER_NODE.replace("{kubectl}", f"{layout.bin_dir}/kubectl"), 0o755))
            units.append(_register_unit(settings, layout, needs))
            needs = [*needs, REGISTER_UNIT]
        units.append(_agent_unit(settings, layout, needs))
    target = Unit(TARGET, [("Description", f"pilothouse {settings.role} ({settings.node_name})"),
                           ("Wants", " ".join(u.name for u in units)),
                           ("After", "network-online.target")],
                  install=(("WantedBy", "multi-user.target"),))
    return HostPlan(tuple(files), (target, *units), tuple(packages))
