"""Create, start, stop and delete a cluster of network-namespace hosts on this machine.

``create`` checks the file and the machine (no range already routed here, no namespace already
taken), then builds the network: one bridge in the root namespace holding the machine's address on
the hosts' subnet (so kubectl here reaches the server), one namespace per host with a veth on the
bridge, and ``unreachable`` routes for the pod and service ranges nothing else serves, so that nothing
for them leaves the machine. The hosts' pod ranges and the routes between them are the cluster's own
business, as on real hosts: the controller manager's node IPAM gives each Node its slice of the pod
range and each agent (``--pod-cidr auto``) routes to the other Nodes' slices from the Node objects
(components/podnetwork), directly over the shared bridge; a server host without an agent runs
``pod-routes`` from its address (:mod:`hostrun`). This machine routes to no pod, as kind's host does not.

Then it starts each host's supervisor (:mod:`hostrun`), detached, and waits for the nodes, printing
each host as it comes up. ``stop`` ends the supervisors (data kept), ``start`` brings
them back, ``delete`` removes every process, container, mount, namespace, link, route and file.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from pilothouse.cli.cluster import netns
from pilothouse.cli.cluster.layout import Layout
from pilothouse.machinery.topology import Cluster, Host, bridge_address

__all__ = ["ClusterError", "create", "delete", "describe", "kubeconfig", "start", "stop", "wait_ready"]

Say = Callable[[str], None]


class ClusterError(RuntimeError):
    pass


# ------------------------------------------------------------------ checks


def _check_machine(cluster: Cluster) -> None:
    if os.geteuid() != 0:
        raise ClusterError("hosts are network namespaces: run pilothouse cluster as root")
    tools = ["ip", "nsenter", "sysctl"]
    if any(h.runs_agent and h.engine == "podman" for h in cluster.hosts):
        tools += ["podman", "runc"]
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        raise ClusterError(f"not installed here: {', '.join(missing)} (apt-get install -y iproute2 util-linux "
                           "procps podman runc)")


def _check_free(layout: Layout, cluster: Cluster) -> None:
    """Refuse what would collide with a cluster (or anything else) already on this machine."""
    if layout.directory.exists():
        raise ClusterError(f"cluster {cluster.name} already exists in {layout.directory.parent} "
                           f"(pilothouse cluster delete {cluster.name})")
    problems = []
    for host in cluster.hosts:
        if netns.netns_exists(layout.netns(host)):
            problems.append(f"network namespace {layout.netns(host)} already exists (another cluster named "
                            f"{cluster.name}? give --name)")
    for label, cidr in (("hostSubnet", cluster.network.host_subnet), ("podCIDR", cluster.network.pod_cidr),
                        ("serviceRange", cluster.network.service_range)):
        wanted = ipaddress.IPv4Network(cidr)
        for route in netns.root_routes():
            destination = route.get("dst", "")
            if destination in ("", "default") or ":" in destination:
                continue
            with contextlib.suppress(ValueError):
                if ipaddress.IPv4Network(destination, strict=False).overlaps(wanted):
                    via = route.get("dev") or route.get("type", "")
                    problems.append(f"network.{label} {cidr} overlaps the route to {destination} ({via}) already "
                                    "on this machine: choose other ranges for this cluster")
                    break
    if problems:
        raise ClusterError("\n".join(problems))


# ----------------------------------------------------------------- network


def _host_routes(cluster: Cluster) -> list[str]:
    """Inside a host: the service range on the hosts' link (a service proxy rewrites it before it
    leaves; routed, the host's own connections to a service address reach the proxy's rules); none of
    the pod range but what the agent adds (its own slice on its bridge, the other Nodes' through them)."""
    return [f"route replace unreachable {cluster.network.pod_cidr}",
            f"route replace {cluster.network.service_range} dev eth0"]


def _root_routes(cluster: Cluster) -> list[str]:
    return [f"route replace unreachable {cluster.network.pod_cidr}",
            f"route replace unreachable {cluster.network.service_range}"]


def _build_network(layout: Layout, cluster: Cluster, say: Say) -> None:
    prefix = cluster.network.prefix
    netns.add_bridge(layout.bridge, f"{bridge_address(cluster.network)}/{prefix}")
    for index, host in enumerate(cluster.hosts):
        netns.add_host_link(layout.netns(host), layout.bridge, layout.veth(index), f"{host.address}/{prefix}")
        netns.set_forwarding(layout.netns(host))
    for host in cluster.hosts:
        netns.ip(*_host_routes(cluster), netns=layout.netns(host))
    netns.ip(*_root_routes(cluster))
    say(f"network: bridge {layout.bridge} ({bridge_address(cluster.network)}/{prefix}), "
        f"pods {cluster.network.pod_cidr}, services {cluster.network.service_range}")


def _prepare_host(layout: Layout, cluster: Cluster, host: Host) -> None:
    layout.host_dir(host).mkdir(parents=True, exist_ok=True)
    layout.run_dir(host).mkdir(parents=True, exist_ok=True)
    if host.runs_agent:
        agent_dir = layout.agent_dir(host)
        agent_dir.mkdir(parents=True, exist_ok=True)
        if cluster.registries:  # the agent's node-wide credentials (<root-dir>/.dockercfg), as the seed deploys them
            dockercfg = agent_dir / ".dockercfg"
            dockercfg.write_text(cluster.dockercfg())
            dockercfg.chmod(0o600)
    # the host's podman reads this (CONTAINERS_REGISTRIES_CONF): the machine's settings plus the
    # file's plain-HTTP registries, without touching /etc/containers
    system = Path("/etc/containers/registries.conf")
    text = system.read_text() if system.exists() else ""
    for registry in cluster.registries:
        if registry.insecure:
            text += f'\n[[registry]]\nlocation = "{registry.server}"\ninsecure = true\n'
    layout.registries_conf(host).write_text(text)


# --------------------------------------------------------------- processes


def _start_host(layout: Layout, host: Host) -> int:
    pid = layout.running_pid(host)
    if pid is not None:
        return pid
    with open(layout.log_file(host), "ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "pilothouse", "cluster", "run-host",
                                    "--state-dir", str(layout.directory.parent), layout.name, host.name],
                                   stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)  # detached: it outlives this command
    layout.write_pid(host, process.pid)
    return process.pid


def _signal_host(layout: Layout, host: Host) -> None:
    pid = layout.running_pid(host)
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)


def _finish_host(layout: Layout, host: Host, deadline: float) -> None:
    """Once its supervisor has stopped (or been killed at ``deadline``), nothing of the host runs."""
    while layout.running_pid(host) is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    pid = layout.running_pid(host)
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    layout.pid_file(host).unlink(missing_ok=True)
    if host.runs_agent and host.engine == "podman" and layout.podman_root(host).exists():
        # pods the agent could not stop (it crashed, or was killed): the host is down, so are they
        subprocess.run([*layout.podman_base(host), "stop", "--all", "--time", "5"], capture_output=True,
                       check=False, timeout=120)
    netns.kill_netns_processes(layout.netns(host))


def create(layout: Layout, cluster: Cluster, source_text: str, say: Say, *, wait: float) -> None:
    _check_machine(cluster)
    _check_free(layout, cluster)
    layout.directory.mkdir(parents=True)
    document = yaml.safe_load(source_text)
    document.setdefault("metadata", {})["name"] = cluster.name
    layout.topology_path.write_text(yaml.safe_dump(document, sort_keys=False))
    for host in cluster.hosts:
        _prepare_host(layout, cluster, host)
    start(layout, say, wait=wait)


def start(layout: Layout, say: Say, *, wait: float, hosts: tuple[str, ...] = ()) -> None:
    cluster = layout.cluster()
    _check_machine(cluster)
    _build_network(layout, cluster, say)  # idempotent; gone after a reboot
    for host in cluster.hosts:
        if hosts and host.name not in hosts:
            continue
        pid = _start_host(layout, host)
        what = " + ".join(["server"] * (host.role == "server") + [f"agent ({host.engine})"] * host.runs_agent)
        say(f"{host.name}: {host.address} in netns {layout.netns(host)}, {what}, supervisor pid {pid}")
    if wait:
        asyncio.run(wait_ready(layout, cluster, say, wait, hosts))


def stop(layout: Layout, say: Say, hosts: tuple[str, ...] = (), timeout: float = 90.0) -> None:
    cluster = layout.cluster()
    selected = [h for h in cluster.hosts if not hosts or h.name in hosts]
    # the agents together, then the server: it must still be there while they stop their pods
    for group in ([h for h in selected if h.role != "server"], [h for h in selected if h.role == "server"]):
        for host in group:
            _signal_host(layout, host)
        deadline = time.monotonic() + timeout
        for host in group:
            _finish_host(layout, host, deadline)
            say(f"{host.name}: stopped")


def delete(layout: Layout, say: Say) -> None:
    cluster = layout.cluster()
    stop(layout, say)
    for index, host in enumerate(cluster.hosts):
        _remove_containers(layout, host)
        netns.kill_netns_processes(layout.netns(host))
        _unmount_under(layout.host_dir(host), layout.run_dir(host))
        netns.delete_netns(layout.netns(host))
        netns.delete_link(layout.veth(index))
        say(f"{host.name}: removed")
    _release_addresses(cluster)
    netns.delete_link(layout.bridge)
    for network in (cluster.network.pod_cidr, cluster.network.service_range):
        netns.ip(f"route del unreachable {network}", check=False)
    shutil.rmtree(layout.directory, ignore_errors=True)
    shutil.rmtree(layout.run_dir(cluster.server).parent, ignore_errors=True)
    say(f"cluster {cluster.name} deleted")


def _remove_containers(layout: Layout, host: Host) -> None:
    if host.engine != "podman" or not layout.podman_root(host).exists():
        return
    # podman 4.3 refuses a pod's sandbox while a container that joined it is still there: repeat
    for _ in range(4):
        result = subprocess.run([*layout.podman_base(host), "rm", "--all", "--force", "--time", "0"],
                                capture_output=True, check=False, timeout=120)
        if result.returncode == 0:
            break
    # conmon processes left behind (a container killed under it): they name the storage in their arguments
    marker = str(layout.podman_root(host)).encode()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError, ProcessLookupError):
            args = cmdline.read_bytes().split(b"\0")
            if args and args[0].endswith(b"conmon") and any(marker in arg for arg in args):
                os.kill(int(cmdline.parent.name), signal.SIGKILL)


def _unmount_under(*directories: Path) -> None:
    """podman leaves its storage's overlay and shm mounts behind."""
    prefixes = tuple(str(d.resolve()) + "/" for d in directories if d.exists())
    if not prefixes:
        return
    with open("/proc/self/mounts") as mounts:
        targets = [line.split()[1] for line in mounts if line.split()[1].startswith(prefixes)]
    for target in sorted(targets, key=len, reverse=True):
        subprocess.run(["umount", "-l", target], capture_output=True, check=False)


def _release_addresses(cluster: Cluster) -> None:
    """The agents' pod address files (podnet's IPAM, shared by the machine's agents) of the cluster's
    pod range (each host's slice is its Node's, gone now; the range is the cluster's alone: create
    refuses one routed already)."""
    from pilothouse.components.agent.podnet import IPAM_ROOT

    network = ipaddress.IPv4Network(cluster.network.pod_cidr)
    for path in IPAM_ROOT.glob("*/*"):
        with contextlib.suppress(ValueError, OSError):
            if ipaddress.IPv4Address(path.name) in network:
                path.unlink()


# --------------------------------------------------------------- readiness


async def wait_ready(layout: Layout, cluster: Cluster, say: Say, timeout: float, hosts: tuple[str, ...] = ()) -> None:
    """Until the server answers and every agent host's Node is Ready, saying each as it comes."""
    from pilothouse.client import errors
    from pilothouse.client.kubeconfig import load_kubeconfig
    from pilothouse.client.rest import APIClient, resource

    deadline = time.monotonic() + timeout
    since = time.time() - 2.0  # a Node left Ready by the agent's previous run does not count
    admin = layout.server_dir(cluster) / "kubeconfig.yaml"
    while not admin.exists():
        _check_alive(layout, cluster, set())
        if time.monotonic() > deadline:
            raise ClusterError(f"the server did not start within {timeout:.0f}s; see {layout.log_file(cluster.server)}")
        await asyncio.sleep(0.5)
    pending = {h.name for h in cluster.hosts if h.runs_agent and (not hosts or h.name in hosts)}
    server_up = False
    async with APIClient(load_kubeconfig(admin), user_agent="pilothouse-cluster") as client:
        while pending or not server_up:
            if time.monotonic() > deadline:
                logs = ", ".join(str(layout.log_file(cluster.host(n))) for n in sorted(pending))
                raise ClusterError(f"not Ready within {timeout:.0f}s: {', '.join(sorted(pending))} (see {logs})")
            _check_alive(layout, cluster, pending)
            try:
                nodes = await client.list(resource("", "v1", "nodes"))
            except (errors.APIError, errors.ConnectionFailed):
                await asyncio.sleep(0.5)
                continue
            if not server_up:
                server_up = True
                say(f"{cluster.server.name}: API server ready on {layout.server_url(cluster)}")
            for node in nodes.get("items") or []:
                name = node["metadata"]["name"]
                conditions = (node.get("status") or {}).get("conditions") or []
                if name in pending and any(_ready_since(c, since) for c in conditions):
                    pending.discard(name)
                    say(f"{name}: node Ready")
            await asyncio.sleep(0.5)


def _check_alive(layout: Layout, cluster: Cluster, pending: set[str]) -> None:
    """A host whose supervisor gave up (its engine would not start, say) will never be Ready: say so now."""
    for name in sorted(pending | {cluster.server.name}):
        host = cluster.host(name)
        if layout.running_pid(host) is None:
            status = _exit_status(layout, host)
            if status is None:
                continue
            tail: list[str] = []
            with contextlib.suppress(OSError):
                tail = layout.log_file(host).read_text(errors="replace").strip().splitlines()[-5:]
            detail = (f"the end of {layout.log_file(host)}:\n  " + "\n  ".join(tail) if tail
                      else f"{layout.log_file(host)} is empty")
            raise ClusterError(f"{name}: its supervisor {status}; {detail}")


def _exit_status(layout: Layout, host: Host) -> str | None:
    """How the host's supervisor ended, when this process started it (it is our child, unreaped);
    None when it is our child and has not ended. A child this process has not reaped keeps its pid,
    so it cannot be another program: its command line just does not name the cluster yet. That is
    the case while it is still inside execve (``Popen`` returns once the exec has begun, before the
    kernel sets the new command line) or exiting, and the host started last is checked at once."""
    try:
        pid = int(layout.pid_file(host).read_text().strip())
    except (OSError, ValueError) as error:
        return f"is not running (its pid file: {error})"
    try:
        reaped, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # started by an earlier command: its status is not ours to read
        return f"(pid {pid}) is not running"
    if reaped == 0:
        return None
    if os.WIFSIGNALED(status):
        return f"(pid {pid}) was killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"(pid {pid}) exited with code {os.waitstatus_to_exitcode(status)}"


def _ready_since(condition: dict[str, Any], since: float) -> bool:
    if condition.get("type") != "Ready" or condition.get("status") != "True":
        return False
    try:
        beat = datetime.datetime.fromisoformat(str(condition.get("lastHeartbeatTime")).replace("Z", "+00:00"))
    except ValueError:
        return False
    return beat.timestamp() >= since


# ------------------------------------------------------------- read-only


def describe(layout: Layout) -> dict[str, Any]:
    """One line of ``cluster list``."""
    cluster = layout.cluster()
    running = sum(layout.running_pid(h) is not None for h in cluster.hosts)
    status = "running" if running == len(cluster.hosts) else "stopped" if not running else "partial"
    return {"name": cluster.name, "hosts": len(cluster.hosts), "running": running, "status": status,
            "server": layout.server_url(cluster), "subnet": cluster.network.host_subnet}


def kubeconfig(layout: Layout) -> dict[str, Any]:
    """The server's admin kubeconfig, its names made the cluster's (``pilothouse-<name>``, as kind
    names ``kind-<name>``) so that several merge into one KUBECONFIG."""
    cluster = layout.cluster()
    path = layout.server_dir(cluster) / "kubeconfig.yaml"
    if not path.exists():
        raise ClusterError(f"cluster {cluster.name} has not started its server yet ({path} is missing)")
    document: dict[str, Any] = yaml.safe_load(path.read_text())
    name = f"pilothouse-{cluster.name}"
    for section in ("clusters", "users", "contexts"):
        for entry in document.get(section) or []:
            entry["name"] = name
    for entry in document.get("contexts") or []:
        entry["context"]["cluster"] = entry["context"]["user"] = name
    document["current-context"] = name
    return document
