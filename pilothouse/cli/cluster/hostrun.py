"""One host's supervisor: the detached process that keeps a network-namespace host's services running.

``cluster create``/``start`` start one per host (``pilothouse cluster run-host``, pid file in the
host's directory) and return; ``stop``/``delete`` send it SIGTERM. It plays what systemd plays on the
seed's hosts: it starts the host's podman service inside the namespace, waits for the API server as the
seed's ``wupiao`` does (``ExecStartPre``), and keeps ``pilothouse server`` and ``pilothouse agent``
running (``Restart=always``, :class:`pilothouse.cli.supervisor.Supervisor`), each entered into the
host's namespace with nsenter. The agent's credentials (``system:node:<host>`` in ``system:nodes``, the
Node authorizer's users) are issued from the cluster CA the first time, as kubeadm writes kubelet.conf.
With ``controlPlane: static-pods`` the server host's agent runs the server instead, as a static pod
(:mod:`pilothouse.cli.cluster.staticcp`), and starts without waiting for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import ssl
import sys
import urllib.request
from pathlib import Path
from typing import Any

from pilothouse.cli.cluster.layout import Layout
from pilothouse.cli.cluster.netns import enter
from pilothouse.cli.cluster.staticcp import is_static_server, prepare
from pilothouse.cli.controlplane import write_kubeconfig, write_node_kubeconfigs
from pilothouse.cli.supervisor import Backoff, Child, Supervisor
from pilothouse.components.agent.runtime.podman_service import PodmanService
from pilothouse.machinery.topology import Cluster, Host

__all__ = ["SERVER_AUTH_FLAGS", "keep_podman", "run_host"]

log = logging.getLogger("pilothouse.cluster")

#: The server of a cluster built here serves HTTPS, authenticates by certificate (the agents get
#: ``system:node:<host>`` ones) and authorizes as a kubeadm cluster does; explicit, so that it holds
#: whatever ``pilothouse server``'s defaults become.
SERVER_AUTH_FLAGS = ("--secure", "--authorization-mode", "Node,RBAC")


class NetnsPodmanService(PodmanService):
    """podman's service started inside a host's network namespace."""

    def __init__(self, netns: str, socket_path: Path, **options: Any) -> None:
        super().__init__(socket_path, **options)
        self.netns = netns

    def command(self) -> list[str]:
        return [*enter(self.netns), *super().command()]


def _pilothouse(netns: str, *args: str) -> list[str]:
    return [*enter(netns), sys.executable, "-m", "pilothouse", *args]


def server_args(layout: Layout, cluster: Cluster) -> list[str]:
    """``pilothouse server``'s arguments, as a process of the supervisor's or in a static pod."""
    return ["server", "--data-dir", str(layout.server_dir(cluster)),
            "--bind-address", cluster.server.address, "--port", "6443", *SERVER_AUTH_FLAGS,
            "--service-cluster-ip-range", cluster.network.service_range,
            # node IPAM: the controller manager gives each Node its slice of the pod range
            # (--allocate-node-cidrs), as a kubeadm cluster with a podSubnet does
            "--cluster-cidr", cluster.network.pod_cidr,
            "--node-cidr-mask-size", str(cluster.network.pod_subnet_prefix),
            *cluster.component_args.get("server", ())]


def server_command(layout: Layout, cluster: Cluster) -> list[str]:
    return _pilothouse(layout.netns(cluster.server), *server_args(layout, cluster))


def agent_command(layout: Layout, cluster: Cluster, host: Host) -> list[str]:
    args = ["agent", "--kubeconfig", str(layout.agent_kubeconfig(host)),
            "--proxy-kubeconfig", str(layout.proxy_kubeconfig(host)), "--node-name", host.name,
            # a node may not list Namespaces or NetworkPolicies: the policy controller has its own user
            "--network-policy-kubeconfig", str(layout.network_policy_kubeconfig(host)),
            "--address", host.address, "--node-ip", host.address, "--port", "10250",
            "--root-dir", str(layout.agent_dir(host)), "--stop-pods-on-exit",
            # the range node IPAM gives the Node, and routes to the other Nodes' ranges from their Node
            # objects: direct, every host being on the cluster's bridge subnet (components/podnetwork)
            "--pod-cidr", "auto", "--pod-routes", "direct",
            # every host's pods, not only this one's: pod-to-pod across hosts keeps its source address (no
            # masquerade off the bridge) and the proxy counts them as in-cluster (kube-proxy's --cluster-cidr)
            "--cluster-cidr", cluster.network.pod_cidr,
            "--service-cluster-ip-range", cluster.network.service_range]  # its embedded service proxy's
    own = {k: v for k, v in host.labels.items() if k not in restricted_labels(host)}
    if own:
        args += ["--node-labels", ",".join(f"{k}={v}" for k, v in own.items())]
    if host.taints:
        args += ["--register-with-taints", ",".join(str(t) for t in host.taints)]
    if is_static_server(cluster, host):  # the control plane's manifest (staticcp.prepare)
        args += ["--pod-manifest-path", str(layout.manifests_dir(host))]
    if host.engine == "simulated":
        args += ["--runtime", "simulated"]
    else:
        args += ["--runtime-endpoint", f"unix://{layout.podman_socket(host)}"]
    return _pilothouse(layout.netns(host), *args, *cluster.component_args.get("agent", ()))


def pod_routes_command(layout: Layout, cluster: Cluster, host: Host) -> list[str]:
    """A host without an agent (the server's, ``agent: false``) has no Node to route from: it routes
    from its address to every Node's pod range (so the API server reaches pods: webhooks,
    ``services/proxy``), on kube-proxy's credentials, which may list and watch Nodes."""
    return _pilothouse(layout.netns(host), "pod-routes", "--kubeconfig", str(layout.proxy_kubeconfig(host)),
                       "--node-name", host.name, "--address", host.address, "--backend", "direct")


def restricted_labels(host: Host) -> dict[str, str]:
    """The host's labels that NodeRestriction forbids a kubelet to set on its own Node
    (``node-role.kubernetes.io/control-plane``...): kubeadm sets those with admin credentials once
    the Node exists (its mark-control-plane phase), and so does :func:`_label_node`."""
    from pilothouse.apiserver.admission_plugins.noderestriction import forbidden_labels

    names = set(forbidden_labels(host.labels, {}))
    return {k: v for k, v in host.labels.items() if k in names}


async def _label_node(layout: Layout, cluster: Cluster, host: Host, labels: dict[str, str]) -> None:
    from pilothouse.client import errors
    from pilothouse.client.kubeconfig import load_kubeconfig
    from pilothouse.client.rest import APIClient, resource

    nodes = resource("", "v1", "nodes")
    await _wait_for_server(layout, cluster)  # a static-pod server writes the admin kubeconfig as it starts
    async with APIClient(load_kubeconfig(layout.server_dir(cluster) / "kubeconfig.yaml"),
                         user_agent="pilothouse-cluster") as client:
        while True:
            try:
                await client.patch(nodes, host.name, {"metadata": {"labels": labels}})
                log.info("node %s labelled %s", host.name, labels)
                return
            except (errors.APIError, errors.ConnectionFailed) as error:  # not registered yet
                log.debug("labelling node %s: %s", host.name, error)
            await asyncio.sleep(1.0)


async def _wait_for_server(layout: Layout, cluster: Cluster) -> None:
    """Until the CA exists and ``/readyz`` says ok (the seed's ``wupiao``), then kubelet.conf."""
    ca = layout.server_dir(cluster) / "pki" / "ca.crt"
    url = layout.server_url(cluster) + "/readyz"
    while not (ca.exists() and await asyncio.to_thread(_answers_ok, url, ca)):
        await asyncio.sleep(0.5)


def _answers_ok(url: str, ca: Path) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2, context=ssl.create_default_context(cafile=str(ca))) as response:
            return bool(response.read() == b"ok")
    except OSError:  # ssl.SSLError too
        return False


def _write_kubeconfig(layout: Layout, cluster: Cluster, path: Path, user: str, groups: list[str]) -> None:
    """A kubeconfig for ``user`` with a certificate from the cluster CA, unless one is there."""
    write_kubeconfig(layout.server_dir(cluster) / "pki", layout.server_url(cluster), path, user, groups)


def _write_agent_kubeconfigs(layout: Layout, cluster: Cluster, host: Host) -> None:
    write_node_kubeconfigs(layout.server_dir(cluster) / "pki", layout.server_url(cluster), host.name,
                           agent=layout.agent_kubeconfig(host), proxy=layout.proxy_kubeconfig(host),
                           network_policy=layout.network_policy_kubeconfig(host))


async def run_host(layout: Layout, host_name: str) -> None:
    cluster = layout.cluster()
    host = cluster.host(host_name)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    layout.write_pid(host, os.getpid())
    podman: PodmanService | None = None
    server, agent = Supervisor(), Supervisor()
    labelling: asyncio.Task[None] | None = None
    keeping: asyncio.Task[None] | None = None
    try:
        if host.runs_agent and host.engine == "podman":
            run_dir = layout.run_dir(host)
            podman = NetnsPodmanService(layout.netns(host), layout.podman_socket(host),
                                        storage_root=layout.podman_root(host), run_root=run_dir / "runroot",
                                        log_path=layout.host_dir(host) / "podman.log",
                                        extra_env={"CONTAINERS_REGISTRIES_CONF": str(layout.registries_conf(host))})
            await podman.start(timeout=60)
            keeping = asyncio.create_task(keep_podman(podman, stop), name="keep-podman")
        static = is_static_server(cluster, host)
        if static:  # kubeadm's certs and control-plane phases; the agent runs the server
            await asyncio.to_thread(prepare, layout, cluster, server_args(layout, cluster))
        elif host.role == "server":
            server.children.append(Child("server", server_command(layout, cluster)))
            await server.start()
        if host.runs_agent and (static or await _until_server_or_stop(layout, cluster, stop)):
            await asyncio.to_thread(_write_agent_kubeconfigs, layout, cluster, host)
            agent.children.append(Child("agent", agent_command(layout, cluster, host)))
            await agent.start()
            if restricted_labels(host):
                labelling = asyncio.create_task(_label_node(layout, cluster, host, restricted_labels(host)))
        elif not host.runs_agent and await _until_server_or_stop(layout, cluster, stop):
            await asyncio.to_thread(_write_kubeconfig, layout, cluster, layout.proxy_kubeconfig(host),
                                    "system:kube-proxy", [])
            agent.children.append(Child("pod-routes", pod_routes_command(layout, cluster, host)))
            await agent.start()
        await stop.wait()
    finally:
        for task in (labelling, keeping):
            if task is not None:
                task.cancel()
        # the agent before the server: it stops its pods while it can still report them
        await agent.stop(timeout=60.0)
        await server.stop(timeout=30.0)
        if podman is not None:
            await podman.stop()
        with contextlib.suppress(OSError):
            Path(layout.pid_file(host)).unlink()


async def keep_podman(podman: PodmanService, stop: asyncio.Event) -> None:
    """Start the host's podman service again whenever it exits, with backoff, as the seed's units do
    for their engine (``Restart=always``): the agent's runtime calls fail meanwhile and succeed again
    once the socket answers; the containers ran on under conmon and are still there."""
    backoff = Backoff()
    backoff.started()
    while podman.process is not None:
        code = await podman.process.wait()
        if stop.is_set():
            return
        delay = backoff.exited()
        log.warning("podman service exited with %s; restarting in %.0fs", code, delay)
        await asyncio.sleep(delay)
        if stop.is_set():
            return
        backoff.started()
        try:
            await podman.start(timeout=60)
        except (RuntimeError, OSError) as error:  # it exited again, or did not answer: the next round
            log.warning("podman service: %s", error)


async def _until_server_or_stop(layout: Layout, cluster: Cluster, stop: asyncio.Event) -> bool:
    """Whether the server answered before we were told to stop."""
    waiting = asyncio.create_task(_wait_for_server(layout, cluster))
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({waiting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    waiting.cancel()
    stopping.cancel()
    return not stop.is_set()
