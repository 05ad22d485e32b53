"""``pilothouse up``: a whole cluster on this machine from one command.

The API server runs in this process; the scheduler, the controller manager and one node agent run
as supervised child processes (see :mod:`pilothouse.cli.supervisor`). Progress is shown while the
cluster comes up; Ctrl-C stops everything: the agent stops every pod's containers (and the podman
service it started), then the control plane stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import time
from typing import Any

from rich.console import Console

from pilothouse.apiserver.serve import ServerConfig, start_server
from pilothouse.cli.authflags import share_loopback_token
from pilothouse.cli.podfacing import pod_facing_address, serve_pods_when_ranged
from pilothouse.cli.supervisor import Supervisor, component_args, component_connection
from pilothouse.client import errors
from pilothouse.client.kubeconfig import load_kubeconfig
from pilothouse.client.rest import APIClient, resource
from pilothouse.components.agent.podrange import AUTO, DEFAULT_CLUSTER_CIDR

__all__ = ["bring_up"]

console = Console(stderr=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _wait_node_ready(client: APIClient, node_name: str, timeout: float) -> bool:
    nodes = resource("", "v1", "nodes")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(errors.APIError, errors.ConnectionFailed):
            node = await client.get(nodes, node_name)
            for condition in (node.get("status") or {}).get("conditions") or []:
                if condition.get("type") == "Ready" and condition.get("status") == "True":
                    return True
        await asyncio.sleep(0.5)
    return False


async def bring_up(config: ServerConfig, *, node_name: str, node_labels: str, agent_port: int,
                   verbose: int, pod_cidr: str = "10.244.0.0/16") -> None:
    node_name = node_name or socket.gethostname().lower()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    pod_facing = pod_facing_address(config.bind_address, pod_cidr, secure=config.secure,
                                    authorization_modes=config.auth.authorization_mode,
                                    advertise_address=config.advertise_address)
    if pod_facing:  # the kubernetes Service's endpoint for pods (see cli/podfacing.py)
        config.advertise_address = pod_facing
        config.extra_bind_addresses = (*config.extra_bind_addresses, pod_facing)
    with console.status("starting the API server…"):
        running = await start_server(config)
    share_loopback_token(running)
    console.print(f"[green]✓[/] API server on {running.url} (datastore {config.endpoint()})")
    supervisor = Supervisor()
    extra: list[str] = ["-v"] * verbose
    supervisor.add("scheduler", "scheduler", *component_connection(running, "scheduler"), *extra)
    # --pod-cidr auto: the node's range comes from node IPAM, run by the embedded controller manager
    # over the controller manager's default cluster range and node prefix (as `server --cluster-cidr`)
    node_ipam = ["--allocate-node-cidrs", "--cluster-cidr", DEFAULT_CLUSTER_CIDR, "--node-cidr-mask-size", "24"] \
        if pod_cidr == AUTO else []
    supervisor.add("controller-manager", "controller-manager", *component_connection(running, "controller-manager"),
                   *extra, *component_args("controller-manager", config), *node_ipam)
    # The agent is system:node:<name> (kubelet.conf); the CSR-based TLS bootstrap replaces this later.
    agent_connection = component_connection(running, "kubelet", f"system:node:{node_name}", ("system:nodes",))
    agent_args: list[Any] = ["agent", *agent_connection, "--node-name", node_name,
                             "--port", str(agent_port or _free_port()),
                             "--root-dir", str(config.data_dir / "agent"), "--stop-pods-on-exit",
                             "--pod-cidr", pod_cidr, *extra]
    if node_labels:
        agent_args += ["--node-labels", node_labels]
    # the agent's embedded service proxy: kube-proxy's identity (system:node-proxier under RBAC) over HTTPS
    proxy_connection = component_connection(running, "kube-proxy", "system:kube-proxy")
    if proxy_connection[0] == "--kubeconfig":
        agent_args += ["--proxy-kubeconfig", proxy_connection[1]]
    netpol_connection = component_connection(running, "network-policy", "system:pilothouse-network-policy")
    if netpol_connection[0] == "--kubeconfig":  # its own role under RBAC (a node may not list namespaces)
        agent_args += ["--network-policy-kubeconfig", netpol_connection[1]]
    agent_args += ["--service-cluster-ip-range", config.service_cluster_ip_range]
    supervisor.add("agent", *agent_args)
    await supervisor.start()
    console.print("[green]✓[/] scheduler and controller manager started")
    client = APIClient(load_kubeconfig(config.kubeconfig_path), user_agent="pilothouse-up")
    # the pods' way to the API once the node's range is known (cli/podfacing.py); a failure costs
    # pods the kubernetes Service, not the cluster
    pods_served = asyncio.create_task(serve_pods_when_ranged(running, client, node_name)) \
        if pod_cidr == AUTO and not pod_facing else None
    try:
        with console.status(f"waiting for node {node_name} to be Ready (the agent starts the container "
                            "engine and builds its pause image the first time)…"):
            ready_task = asyncio.create_task(_wait_node_ready(client, node_name, 180))
            stop_task = asyncio.create_task(stop.wait())
            await asyncio.wait({ready_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
        if ready_task.done() and ready_task.result():
            console.print(f"[green]✓[/] node {node_name} is Ready")
            console.print(f"\nCluster is up. kubeconfig: {config.kubeconfig_path}\n"
                          f"  export KUBECONFIG={config.kubeconfig_path}\n"
                          f"  kubectl get nodes      (or: pilothouse kubectl --data-dir {config.data_dir} get nodes)\n"
                          "Press Ctrl-C to stop the cluster (its pods are stopped too).")
        elif not stop.is_set():
            console.print(f"[yellow]![/] node {node_name} is not Ready yet; the control plane is up. "
                          "See the agent's messages above.")
        ready_task.cancel()
        await stop.wait()
        stop_task.cancel()
    finally:
        if pods_served is not None:
            pods_served.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pods_served
        with console.status("stopping: pods, node agent, controllers, scheduler, API server…"):
            await client.close()
            await supervisor.stop(timeout=60.0)
            await running.stop()
        console.print("[green]✓[/] stopped")
