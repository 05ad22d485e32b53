"""The node agent (pilothouse's kubelet): wiring of runtime, node heartbeats, pod workers, static pods.

``Agent.start()`` brings up the engine (starting podman's API service when no endpoint is given),
registers the Node, watches the pods bound to it (``spec.nodeName=<node>``) and runs one worker per
pod, plus static pods from ``--manifests-dir``. ``Agent.stop()`` leaves containers running (a plain
restart adopts them); ``Agent.stop(stop_containers=True)`` stops every pod's containers gracefully
and then removes them, leaving nothing in the engine (``pilothouse up`` on Ctrl-C).
``--runtime simulated`` / ``--simulate N`` runs simulated nodes instead (see :mod:`.simulation`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pilothouse.client import errors
from pilothouse.client.events import EventRecorder
from pilothouse.client.informer import EventHandler, InformerFactory, object_key
from pilothouse.client.kubeconfig import client_config
from pilothouse.client.rest import APIClient, resource
from pilothouse.components.agent import servingtls
from pilothouse.components.agent.certrotation import ClientCertificateRotation, rotated_file
from pilothouse.components.agent.images import ImageManager
from pilothouse.components.agent.metrics import watch_running
from pilothouse.components.agent.node import (
    NODES,
    NodeConfig,
    NodeStatusManager,
    detect_capacity,
    detect_node_ip,
    node_reference,
)
from pilothouse.components.agent.podcontext import LABEL_AGENT, PODS, PodContext
from pilothouse.components.agent.podnet import PodNetwork, PodNetworkError
from pilothouse.components.agent.podrange import AUTO, DEFAULT_CLUSTER_CIDR, wait_for_pod_cidr
from pilothouse.components.agent.podworkers import PodWorker
from pilothouse.components.agent.resourcemetrics import PodContainers, render
from pilothouse.components.agent.runtime.docker import DockerRuntime
from pilothouse.components.agent.runtime.interface import (
    LABEL_POD_IP,
    LABEL_POD_UID,
    LABEL_ROLE,
    ContainerRuntime,
    RuntimeError_,
)
from pilothouse.components.agent.runtime.podman_service import PodmanService, podman_available
from pilothouse.components.agent.runtime.simulated import SimulatedRuntime
from pilothouse.components.agent.server import StreamingServer
from pilothouse.components.agent.simulation import SimulatedNodes, node_tokens, simulated_node_names
from pilothouse.components.agent.static import HASH_ANNOTATION, MIRROR_ANNOTATION, load_manifests, mirror_pod
from pilothouse.components.agent.streaming.lookup import RuntimeLabelLookup
from pilothouse.components.componentserver import ComponentServer, ServingOptions
from pilothouse.components.dns import ClusterDNS
from pilothouse.components.dns.forward import host_nameservers
from pilothouse.components.podnetwork import PodRoutes
from pilothouse.components.podnetwork.kernel import overlay_mtu
from pilothouse.machinery.meta import Object

__all__ = ["Agent", "AgentOptions", "parse_labels", "run_agent"]

log = logging.getLogger("pilothouse.agent")

_KINDS = {"configmaps": resource("", "v1", "configmaps"), "secrets": resource("", "v1", "secrets")}


def parse_labels(text: str) -> dict[str, str]:
    """``k=v,k2=v2`` as ``--node-labels`` takes them."""
    labels = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, _, value = item.partition("=")
        labels[key.strip()] = value.strip()
    return labels


def parse_taints(text: str) -> list[Object]:
    """``key=value:Effect,key2:Effect`` as kubelet's ``--register-with-taints`` takes them."""
    taints: list[Object] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        head, colon, effect = item.rpartition(":")
        if not colon or effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
            raise ValueError(f"taint {item!r}: want key=value:Effect with Effect NoSchedule, PreferNoSchedule "
                             "or NoExecute")
        key, _, value = head.partition("=")
        taints.append({"key": key, **({"value": value} if value else {}), "effect": effect})
    return taints


@dataclass
class AgentOptions:
    server: str = "http://127.0.0.1:6443"
    #: Credentials and CA (kubelet's --kubeconfig); its server URL unless ``server`` is given.
    kubeconfig: str | None = None
    node_name: str = ""
    node_labels: dict[str, str] = field(default_factory=dict)
    #: kubelet's --register-with-taints: the Node is created with them
    node_taints: list[Object] = field(default_factory=list)
    register_node: bool = True
    manifests_dir: str | None = None
    port: int = 10250
    address: str = "127.0.0.1"
    node_ip: str | None = None  # InternalIP; defaults from --address
    runtime: str = "docker"  # docker | simulated
    runtime_endpoint: str | None = None  # unix:///run/podman/podman.sock, unix:///var/run/docker.sock
    simulate: int = 0
    simulate_watch: str = "per-node"  # per-node | shared: see simulation.WATCH_MODES
    #: a static token file with a token for each simulated node's user system:node:<name>: each node
    #: then speaks as its own kubelet (see simulation); None: all under the agent's identity
    simulate_token_file: str | None = None
    root_dir: str = "/var/lib/pilothouse/agent"
    image_credentials_file: str | None = None  # default <root-dir>/.dockercfg when present
    node_status_update_frequency: float = 10.0
    node_status_report_frequency: float = 300.0
    lease_duration: int = 40
    relist_period: float = 10.0
    token: str | None = None
    #: kubelet's --client-ca-file: CAs whose client certificates the agent's port accepts; by default the
    #: kubeconfig's cluster CA. Over HTTPS to the API server the agent's port serves TLS too.
    client_ca_file: str | None = None
    #: "agent": the agent wires pod sandboxes to its own bridge (see podnet); "engine": the engine's network
    pod_network: str = "agent"
    #: this host's pod range, or "auto": the Node's ``spec.podCIDR`` (node IPAM), waited for at start,
    #: and routes to the other Nodes' ranges (components/podnetwork, ``pod_routes``)
    pod_cidr: str = "10.244.0.0/16"
    #: every Node's pods: no masquerade towards it; default: ``pod_cidr`` (10.244.0.0/16 with "auto")
    cluster_cidr: str = ""
    #: with pod_cidr "auto": how to reach the other Nodes' pods (auto: direct or VXLAN; vxlan; direct; none)
    pod_routes: str = "auto"
    #: Credentials to list every Node with for the pod routes (the embedded proxy's, system:kube-proxy):
    #: 1.32's Node authorizer lets a node read only its own Node, as k3s gives its flannel an identity
    #: of its own. Default: the agent's.
    routes_kubeconfig: str | None = None
    #: kubelet's --cluster-dns: the nameservers of ClusterFirst pods. Empty: the agent serves cluster DNS
    #: itself on its pod bridge's gateway address (see docs/decisions/cluster-dns.md) and uses that.
    cluster_dns: list[str] = field(default_factory=list)
    cluster_domain: str = "cluster.local"
    #: kubelet's --resolv-conf: the host resolver configuration pods with dnsPolicy Default get
    resolv_conf: str = "/etc/resolv.conf"


class Agent:
    def __init__(self, options: AgentOptions) -> None:
        import socket

        self.options = options
        if not options.node_name:
            options.node_name = socket.gethostname().lower()
        self.target = client_config(options.server, options.kubeconfig)
        # Simulated nodes hold a pod watch each (and the process one Node watch), on top of the connections for
        # requests: 256, or half the nodes' count, since each kubelet has connections of its own and a
        # pool smaller than the nodes' heartbeats in flight queues them in the agent (the density run's
        # renewals timed out waiting for one of 256), where the server's priority levels cannot order them.
        self.client = APIClient(self.target, connection_limit=options.simulate + 1 + max(256, options.simulate // 2),
                                user_agent=f"pilothouse-agent/{options.node_name}", token=options.token)
        self.root_dir = Path(options.root_dir)
        self.runtime: ContainerRuntime | None = None
        self.podman: PodmanService | None = None
        self.node: NodeStatusManager | None = None
        self.streaming: StreamingServer | None = None
        self.simulated: SimulatedNodes | None = None
        #: simulated nodes' /healthz and /metrics (no containers, so no streaming server)
        self.simulated_server: ComponentServer | None = None
        self.workers: dict[str, PodWorker] = {}
        self.static_pods: dict[str, Object] = {}
        #: mirrors of static pods whose manifest went while the API was out of reach: (namespace, name)
        self._stale_mirrors: list[tuple[str, str]] = []
        #: the node is registered and this node's pods are listed: mirrors can be written
        self.pods_synced = asyncio.Event()
        #: the pod network (and cluster DNS) is set up: pods other than host-network ones can start
        self.pod_network_ready = asyncio.Event()
        self.factory = InformerFactory(self.client)
        self.ctx: PodContext | None = None
        self.dns: ClusterDNS | None = None
        self.routes: PodRoutes | None = None
        self._dns_address = ""  # an address of the bridge held for the DNS (not the gateway)
        self._tasks: list[asyncio.Task[None]] = []
        self.recorder = EventRecorder(self.client, "kubelet", host=options.node_name)
        self.rotation: ClientCertificateRotation | None = None

    # ------------------------------------------------------------ lifecycle

    def _serving_security(self, host_ip: str) -> dict[str, Any]:
        """TLS and kubelet's webhook authn/authz for the agent's port when the cluster speaks HTTPS."""
        options = self.options
        client_ca = Path(options.client_ca_file).read_bytes() if options.client_ca_file else self.target.ca_pem
        if not self.target.server.startswith("https:") or not client_ca:
            return {}
        cert, key = servingtls.self_signed_serving(self.root_dir / "pki", options.node_name,
                                                   [host_ip, options.address])
        reviews = servingtls.Reviews(self.client, options.node_name)
        return {"ssl_context": servingtls.server_context(cert, key, client_ca),
                "middlewares": (servingtls.auth_middleware(reviews.authenticate, reviews.authorize),)}

    def _node_events(self, node: NodeStatusManager) -> None:
        """The kubelet's first event about its node, then its condition events as they change."""
        self.recorder.event(node_reference(self.options.node_name), "Normal", "Starting", "Starting kubelet.")
        node.event = self.recorder.event

    async def start(self) -> None:
        options = self.options
        self.root_dir.mkdir(parents=True, exist_ok=True)
        self._start_certificate_rotation()
        if options.runtime == "simulated" or options.simulate:
            names = (simulated_node_names(options.node_name, options.simulate) if options.simulate
                     else [options.node_name])
            tokens = node_tokens(options.simulate_token_file, names) if options.simulate_token_file else None
            self.simulated = SimulatedNodes(
                self.client, names, labels=options.node_labels, lease_duration=options.lease_duration,
                status_update_frequency=options.node_status_update_frequency, port=options.port,
                register=options.register_node, taints=options.node_taints, watch=options.simulate_watch,
                tokens=tokens)
            await self.simulated.start()
            await self._serve_simulated()
            return
        self.runtime = await self._start_runtime()
        info = await self.runtime.info()
        await self.runtime.ensure_pause_image()  # type: ignore[attr-defined]
        host_ip = options.node_ip or detect_node_ip(options.address)
        capacity = detect_capacity(str(self.root_dir))
        # logs/exec/attach/port-forward: the API server proxies kubectl to this server, found through
        # the Node's address and daemonEndpoints.kubeletEndpoint.Port.
        self.streaming = StreamingServer(self.runtime, RuntimeLabelLookup(self.runtime), address=options.address,
                                         port=options.port, resource_metrics=self._resource_metrics,
                                         **self._serving_security(host_ip))
        await self.streaming.start()
        watch_running(lambda: [(w.sandbox_running, w.container_states()) for w in list(self.workers.values())])
        self.node = NodeStatusManager(self.client, NodeConfig(
            name=options.node_name, address=host_ip, port=self.streaming.port, labels=options.node_labels,
            register=options.register_node, capacity=capacity, taints=options.node_taints,
            runtime_version=f"{info['name']}://{info['version']}", os_image=info.get("osImage", ""),
            kernel_version=info.get("kernelVersion", ""), architecture=info.get("architecture", "amd64"),
            lease_duration=options.lease_duration, status_update_frequency=options.node_status_update_frequency,
            status_report_frequency=options.node_status_report_frequency))
        credentials = Path(options.image_credentials_file) if options.image_credentials_file \
            else self.root_dir / ".dockercfg"
        self.ctx = PodContext(
            client=self.client, runtime=self.runtime,
            images=ImageManager(self.runtime, lambda ns, name: self._fetch("secrets", ns, name), credentials),
            node_name=options.node_name, host_ip=host_ip, root_dir=self.root_dir, scheme=info["name"],
            allocatable=capacity, fetch=self._fetch, event=self.recorder.event,
            cluster_domain=options.cluster_domain, resolv_conf=options.resolv_conf)
        # Which pods already have containers (adoption after a restart): every other pod's worker
        # starts knowing it has none, instead of asking the engine (see podobserver).
        listed = await self.runtime.list_containers({LABEL_AGENT: self.ctx.agent_id})
        self.ctx.engine_uids = {s.labels.get(LABEL_POD_UID, "") for s in listed}
        if options.manifests_dir:
            # kubelet's file source: static pods run before any API server answers (which is how a
            # control plane can itself be static pods); their mirrors follow once the pods are synced.
            # Host-network ones start at once, the rest once the pod network exists (below): with
            # --pod-cidr auto its range comes from node IPAM, which a static controller manager runs.
            self._tasks.append(asyncio.create_task(self._static_loop(), name="agent-static"))
        self._node_events(self.node)
        self.ctx.network = await self._pod_network(await self._pod_cidr(), host_ip)
        self.ctx.cluster_dns = list(options.cluster_dns) or await self._cluster_dns(self.ctx.network)
        self.pod_network_ready.set()
        await self.node.register()
        self.recorder.event(node_reference(options.node_name), "Normal", "NodeAllocatableEnforced",
                            "Updated Node Allocatable limit across pods")
        self.node.start()
        if self.ctx.network is not None and options.pod_cidr == AUTO and options.pod_routes != "none":
            routes_client = self.client
            if options.routes_kubeconfig:
                routes_client = APIClient(client_config(options.server or None, options.routes_kubeconfig),
                                          user_agent=f"pilothouse-pod-routes/{options.node_name}")
            self.routes = PodRoutes(routes_client, options.node_name, backend=options.pod_routes,
                                    factory=self.factory if routes_client is self.client else None)
        # the kubelet's node lister: its status updates read the Node from here, not with a GET
        nodes = self.factory.informer(NODES, field_selector=f"metadata.name={options.node_name}")
        self.node.node_lister = functools.partial(nodes.get, options.node_name)
        informer = self.factory.informer(PODS, field_selector=f"spec.nodeName={options.node_name}")
        informer.add_handler(EventHandler.on_object(self._on_pod, self._on_pod_deleted))
        self.factory.start()
        self._tasks.append(asyncio.create_task(self._events_loop(), name="agent-events"))
        if self.routes is not None:
            await self.routes.start()
        await informer.wait_synced()
        self.pods_synced.set()
        self._tasks.append(asyncio.create_task(self._relist_loop(), name="agent-relist"))

    def _start_certificate_rotation(self) -> None:
        """kubelet's --rotate-certificates (on by default) for a certificate in kubelet's file layout."""
        current = rotated_file(Path(self.options.kubeconfig)) if self.options.kubeconfig else None
        if current is None or self.options.simulate or self.target.ssl_context is None:
            return
        self.rotation = ClientCertificateRotation(self.client, current, self.options.node_name)
        self._tasks.append(asyncio.create_task(self.rotation.run(), name="agent-cert-rotation"))

    async def _resource_metrics(self) -> bytes:
        """The kubelet's /metrics/resource over this agent's pods."""
        assert self.runtime is not None
        pods = [PodContainers(w.pod["metadata"].get("namespace") or "default", w.pod["metadata"]["name"],
                              tuple(w.running_containers())) for w in list(self.workers.values())]
        return await render(pods, self.runtime.stats)

    async def _serve_simulated(self) -> None:
        """/healthz and /metrics of the simulated nodes on the agent's port. Nothing listened there
        before, so a taken port (several simulating agents on a host) is only logged."""
        server = ComponentServer("kubelet", ServingOptions(self.options.port, self.options.address), self.target)
        try:
            await server.start()
        except OSError as error:
            log.warning("simulated nodes: cannot serve /metrics on %s:%d: %s", self.options.address,
                        self.options.port, error)
            return
        self.simulated_server = server

    async def _start_runtime(self) -> ContainerRuntime:
        endpoint = self.options.runtime_endpoint
        if self.options.runtime == "simulated":
            return SimulatedRuntime()
        if not endpoint:
            if not podman_available():
                endpoint = "unix:///var/run/docker.sock"
            else:
                self.podman = PodmanService(self.root_dir / "podman.sock")
                await self.podman.start()
                endpoint = self.podman.endpoint
        runtime = DockerRuntime(endpoint)
        await runtime.start()
        return runtime

    async def _pod_cidr(self) -> str:
        """``--pod-cidr``, or with "auto" the range node IPAM gave this Node (kubelet's behaviour
        without --pod-cidr): registers the Node first and waits for it."""
        if self.options.pod_cidr != AUTO or self.options.pod_network != "agent":
            return self.options.pod_cidr
        assert self.node is not None
        return await wait_for_pod_cidr(self.client, await self.node.register())

    async def _pod_network(self, cidr: str, host_ip: str) -> PodNetwork | None:
        if self.options.pod_network != "agent":
            return None
        if not PodNetwork.usable():
            log.warning("pod network: needs root, ip and nsenter; using the engine's networking")
            return None
        cluster = self.options.cluster_cidr or (DEFAULT_CLUSTER_CIDR if self.options.pod_cidr == AUTO else cidr)
        overlay = self.options.pod_cidr == AUTO and self.options.pod_routes in ("auto", "vxlan")
        network = PodNetwork(cidr, cluster_cidr=cluster, mtu=await overlay_mtu(host_ip) if overlay else 0)
        try:
            await network.setup()
        except (PodNetworkError, OSError) as error:
            log.warning("pod network: %s; using the engine's networking", error)
            return None
        return network

    async def _cluster_dns(self, network: PodNetwork | None) -> list[str]:
        """Serve cluster DNS on the pod bridge's gateway, which every pod on the bridge reaches
        without the service proxy; the nameservers for ClusterFirst pods (none when it cannot).
        When another agent of this host (another cluster's, say) has the gateway's port, on an
        address of the range of its own, put on the bridge (the same one again after a restart,
        so that running pods keep their resolver)."""
        if network is None:
            log.warning("cluster DNS: no pod network of the agent's; ClusterFirst pods get the host's resolvers")
            return []
        server = ClusterDNS(self.client, domain=self.options.cluster_domain, factory=self.factory,
                            upstreams=host_nameservers(Path(self.options.resolv_conf)))
        address = network.gateway
        try:
            try:
                await server.start(address, 53)
            except OSError as error:
                if error.errno != errno.EADDRINUSE:
                    raise
                remembered = self.root_dir / "dns-address"
                previous = remembered.read_text().strip() if remembered.exists() else ""
                address = await network.hold_on_bridge(self._dns_owner, previous)
                self._dns_address = address
                remembered.write_text(address)
                await server.start(address, 53)
        except (OSError, PodNetworkError) as error:
            log.warning("cluster DNS on %s:53: %s; ClusterFirst pods get the host's resolvers", address, error)
            return []
        await network.accept_local(address, 53)
        self.dns = server
        return [address]

    @property
    def _dns_owner(self) -> str:
        return f"dns:{self.options.node_name}@{self.root_dir}"

    async def stop(self, stop_containers: bool = False) -> None:
        """Stop the agent; containers keep running unless ``stop_containers`` (then gracefully)."""
        if self.simulated is not None:
            await self.simulated.stop()
        if self.simulated_server is not None:
            await self.simulated_server.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        workers = list(self.workers.values())
        await asyncio.gather(*(w.cancel() for w in workers), return_exceptions=True)
        if stop_containers and self.runtime is not None:
            await self._stop_pods(workers)
        if self.routes is not None:
            await self.routes.stop()
            if self.routes.factory.client is not self.client:
                await self.routes.factory.client.close()
        if self.dns is not None:
            await self.dns.stop()
        if self._dns_address and self.ctx is not None and self.ctx.network is not None:
            await self.ctx.network.drop_from_bridge(self._dns_address, self._dns_owner)
        await self.factory.stop()
        if self.streaming is not None:
            await self.streaming.stop()
        if self.node is not None:
            await self.node.stop()
        await self.recorder.flush()
        if self.runtime is not None:
            await self.runtime.close()
        if self.podman is not None:
            await self.podman.stop()
        await self.client.close()

    # ----------------------------------------------------------------- pods

    async def _fetch(self, kind: str, namespace: str, name: str) -> Object | None:
        try:
            return await self.client.get(_KINDS[kind], name, namespace)
        except errors.NotFoundError:
            return None

    def _on_pod(self, pod: Object) -> None:
        if MIRROR_ANNOTATION in (pod["metadata"].get("annotations") or {}):
            return  # a mirror pod: the static pod worker owns it
        uid = pod["metadata"]["uid"]
        worker = self.workers.get(uid)
        if worker is None:
            assert self.ctx is not None
            worker = PodWorker(self.ctx, pod, on_finished=self._finished)
            self.workers[uid] = worker
            worker.start()
        else:
            worker.update(pod)

    def _on_pod_deleted(self, pod: Object) -> None:
        worker = self.workers.get(pod["metadata"].get("uid", ""))
        if worker is not None and not worker.static:
            worker.mark_deleted()

    def _finished(self, uid: str) -> None:
        self.workers.pop(uid, None)

    async def _events_loop(self) -> None:
        assert self.runtime is not None
        while True:
            try:
                async for event in self.runtime.events():
                    uid = event.labels.get(LABEL_POD_UID)
                    worker = self.workers.get(uid or "")
                    # Only deaths need a sync now: starts and stops are the worker's own doing, and
                    # syncing on them doubled the engine calls of every pod start.
                    if worker is not None and event.action in ("die", "died", "oom"):
                        worker.kick()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the engine restarted: reconnect, the relist covers the gap
                log.info("engine events stream ended: %s", error)
            await asyncio.sleep(1.0)

    async def _relist_loop(self) -> None:
        while True:
            # As the kubelet's container GC: a failed pass is logged and the next one tries again.
            # This loop once ended for good on an error it did not expect (the engine SIGKILLed
            # under it), and a sandbox whose removal the kill cut short stayed in podman.
            try:
                await self.collect_orphans()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("container garbage collection failed: %s", error)
            for worker in list(self.workers.values()):
                worker.kick()
            await asyncio.sleep(self.options.relist_period)

    async def collect_orphans(self) -> None:
        """Remove containers whose pod is gone (neither in the API for this node nor a static pod)."""
        await self._remove_containers(lambda uid: uid not in self.workers and uid not in self.static_pods,
                                      "vanished pod")

    async def _stop_pods(self, workers: list[PodWorker]) -> None:
        """``--stop-pods-on-exit`` (what ``pilothouse up`` runs): stop every pod in its grace period,
        saying which pods are waited for, then remove every container this agent made, so that
        nothing is left in the engine (a pod being deleted when the stop came included)."""
        assert self.runtime is not None
        if workers:
            longest = max(w.grace_period() for w in workers)
            # A warning so that it shows by default: the exit waits on these, up to the longest grace.
            log.warning("stopping %d pods, waiting up to %.0fs for their grace periods: %s", len(workers), longest,
                     ", ".join(w.name for w in workers))

        await asyncio.gather(*(w.stop_for_exit() for w in workers), return_exceptions=True)
        await self._remove_containers(lambda _uid: True, "stopped pod")

    async def _remove_containers(self, doomed: Callable[[str], bool], why: str) -> None:
        """Remove this agent's containers whose pod uid ``doomed`` names (sandboxes last: the
        engine refuses a sandbox others joined), releasing their pod addresses."""
        assert self.runtime is not None
        assert self.ctx is not None
        mine = {LABEL_AGENT: self.ctx.agent_id}
        states = await self.runtime.list_containers({LABEL_ROLE: "sandbox", **mine})
        states += await self.runtime.list_containers({LABEL_ROLE: "container", **mine})
        for state in sorted(states, key=lambda s: s.labels.get(LABEL_ROLE) == "sandbox"):
            uid = state.labels.get(LABEL_POD_UID, "")
            if uid and doomed(uid):
                log.info("removing container %s of %s %s", state.id[:12], why, uid)
                with contextlib.suppress(RuntimeError_):
                    if state.state == "running":
                        await self.runtime.stop_container(state.id, 2)
                    await self.runtime.remove_container(state.id)
                    if self.ctx.network is not None and state.labels.get(LABEL_POD_IP):
                        self.ctx.network.release(state.labels[LABEL_POD_IP], state.name)

    # --------------------------------------------------------- static pods

    async def _static_loop(self) -> None:
        assert self.options.manifests_dir is not None
        directory = Path(self.options.manifests_dir)
        while True:
            try:
                current = await asyncio.to_thread(load_manifests, directory, self.options.node_name)
                if not self.pod_network_ready.is_set():
                    # as kubelet: only CNI needs the pod range, so host-network pods need not wait for it
                    current = {uid: pod for uid, pod in current.items() if pod["spec"].get("hostNetwork")}
                self._run_static_pods(current)
                if self.pods_synced.is_set():
                    await self._sync_mirrors(current)
            except (errors.APIError, errors.ConnectionFailed, OSError) as error:
                log.warning("static pods: %s", error)
            if self.pod_network_ready.is_set():
                await asyncio.sleep(2.0)
            else:  # the other pods start as soon as the network is there
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.pod_network_ready.wait(), 2.0)

    def _run_static_pods(self, current: dict[str, Object]) -> None:
        """Start a worker for each new manifest; stop those whose file changed or went (no API needed)."""
        assert self.ctx is not None
        for uid in [u for u in self.static_pods if u not in current]:
            old = self.static_pods.pop(uid)
            worker = self.workers.get(uid)
            if worker is not None:
                worker.mark_deleted()
            if not any(p["metadata"]["name"] == old["metadata"]["name"] for p in current.values()):
                self._stale_mirrors.append((old["metadata"]["namespace"], old["metadata"]["name"]))
        for uid, pod in current.items():
            if uid not in self.static_pods:
                self.static_pods[uid] = pod
                worker = PodWorker(self.ctx, pod, static=True, on_finished=self._finished)
                self.workers[uid] = worker
                worker.start()

    async def _sync_mirrors(self, current: dict[str, Object]) -> None:
        informer = self.factory.informer(PODS, field_selector=f"spec.nodeName={self.options.node_name}")
        live = {(p["metadata"]["namespace"], p["metadata"]["name"]) for p in current.values()}
        # a manifest that came back under the same name keeps its mirror (updated below if it differs)
        self._stale_mirrors = [key for key in self._stale_mirrors if key not in live]
        while self._stale_mirrors:
            namespace, name = self._stale_mirrors[0]
            with contextlib.suppress(errors.NotFoundError):
                await self.client.delete(PODS, name, namespace, grace_period_seconds=0)
            self._stale_mirrors.pop(0)
        for pod in current.values():
            await self._sync_mirror(pod, informer.get(object_key(pod)))

    async def _sync_mirror(self, pod: Object, mirror: Object | None) -> None:
        assert self.node is not None
        metadata = pod["metadata"]
        if mirror is not None:
            annotations = mirror["metadata"].get("annotations") or {}
            if not mirror["metadata"].get("deletionTimestamp") and \
                    annotations.get(HASH_ANNOTATION) == metadata["annotations"][HASH_ANNOTATION]:
                return
            with contextlib.suppress(errors.NotFoundError, errors.ConflictError):
                await self.client.delete(PODS, metadata["name"], metadata["namespace"], grace_period_seconds=0,
                                         preconditions={"uid": mirror["metadata"]["uid"]})
        with contextlib.suppress(errors.AlreadyExistsError):
            await self.client.create(PODS, mirror_pod(pod, self.options.node_name, self.node.uid),
                                     metadata["namespace"])
            worker = self.workers.get(metadata["uid"])
            if worker is not None:  # a fresh mirror has no status yet: write ours again
                worker.resend_status()


async def run_agent(options: AgentOptions) -> None:
    """Run until cancelled or SIGTERM; containers keep running (adopted by the next start)."""
    agent = Agent(options)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await agent.start()
        await stop.wait()
    finally:
        await agent.stop()
