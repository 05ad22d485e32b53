"""Where a cluster built on this machine keeps its state, and the names it gives the kernel.

``<state-dir>/<name>/`` holds the topology file as created (``cluster.yaml``) and one directory per
host: the supervisor's pid file and log, the podman storage, the server's data dir, the agent's root
dir. Volatile things (podman's runroot and service socket) live under /run, as podman expects.

Kernel names must not collide between clusters, nor between two state dirs that both hold a cluster
``seed`` (tests do that): the bridge and the veths are named from a short hash of the cluster's
directory; the namespaces keep readable names (``pilothouse-seed-azure-prd-02``), and ``cluster
create`` refuses one that already exists. Interface names stop at 15 characters.
"""

from __future__ import annotations

import hashlib
import os
import platform
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from pilothouse.machinery.topology import Cluster, Host, load_cluster

__all__ = ["RUN_ROOT", "Layout", "default_state_dir"]

#: short: podman refuses a runroot longer than 50 characters
RUN_ROOT = Path("/run/pilothouse/c")


def default_state_dir() -> Path:
    """/var/lib/pilothouse/clusters for root (as k3s keeps /var/lib/rancher), else the user's state dir."""
    if platform.system() == "Linux" and os.geteuid() == 0:
        return Path("/var/lib/pilothouse/clusters")
    return Path(platformdirs.user_state_dir("pilothouse")) / "clusters"


@dataclass(frozen=True)
class Layout:
    directory: Path  # <state-dir>/<name>

    @property
    def name(self) -> str:
        return self.directory.name

    @property
    def key(self) -> str:
        return hashlib.sha1(str(self.directory.resolve()).encode()).hexdigest()[:8]

    @property
    def topology_path(self) -> Path:
        return self.directory / "cluster.yaml"

    def cluster(self) -> Cluster:
        return load_cluster(self.topology_path.read_text(), self.name)

    # ---- kernel names
    @property
    def bridge(self) -> str:
        return f"ph{self.key}br"

    def netns(self, host: Host) -> str:
        return f"pilothouse-{self.name}-{host.name}"

    def veth(self, index: int) -> str:
        return f"ph{self.key}h{index}"

    # ---- per host
    def host_dir(self, host: Host) -> Path:
        return self.directory / "hosts" / host.name

    def run_dir(self, host: Host) -> Path:
        return RUN_ROOT / self.key / hashlib.sha1(host.name.encode()).hexdigest()[:6]

    def pid_file(self, host: Host) -> Path:
        return self.host_dir(host) / "supervisor.pid"

    def log_file(self, host: Host) -> Path:
        return self.host_dir(host) / "host.log"

    def podman_root(self, host: Host) -> Path:
        return self.host_dir(host) / "podman"

    def podman_socket(self, host: Host) -> Path:
        return self.run_dir(host) / "podman.sock"

    def podman_base(self, host: Host) -> list[str]:
        """The podman CLI on this host's storage (what its service serves)."""
        return ["podman", "--runtime", "runc", "--cgroup-manager=cgroupfs", "--root", str(self.podman_root(host)),
                "--runroot", str(self.run_dir(host) / "runroot")]

    def registries_conf(self, host: Host) -> Path:
        return self.host_dir(host) / "registries.conf"

    def server_dir(self, cluster: Cluster) -> Path:
        return self.host_dir(cluster.server) / "server"

    def agent_dir(self, host: Host) -> Path:
        return self.host_dir(host) / "agent"

    def manifests_dir(self, host: Host) -> Path:
        """The agent's ``--pod-manifest-path`` (kubelet's /etc/kubernetes/manifests)."""
        return self.agent_dir(host) / "manifests"

    def agent_kubeconfig(self, host: Host) -> Path:
        return self.agent_dir(host) / "kubelet.conf"

    def proxy_kubeconfig(self, host: Host) -> Path:
        return self.agent_dir(host) / "kube-proxy.conf"

    def network_policy_kubeconfig(self, host: Host) -> Path:
        return self.agent_dir(host) / "network-policy.conf"

    def server_url(self, cluster: Cluster) -> str:
        return f"https://{cluster.server.address}:6443"

    def write_pid(self, host: Host, pid: int) -> None:
        """Atomically: ``create`` checks the file while the supervisor it started writes it, and a
        truncated file read in between looked like a supervisor that had exited (with an empty log)."""
        tmp = self.pid_file(host).with_suffix(f".{pid}.tmp")
        tmp.write_text(str(pid))
        tmp.replace(self.pid_file(host))

    def running_pid(self, host: Host) -> int | None:
        """The host supervisor's pid when it is alive."""
        try:
            pid = int(self.pid_file(host).read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        return pid if b"cluster" in cmdline and self.name.encode() in cmdline else None
