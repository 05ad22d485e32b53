"""Where ``pilothouse up``'s pods reach the API server: the ``kubernetes`` Service's endpoint.

``up`` binds the API to 127.0.0.1, and a loopback address is no endpoint for pods: a packet DNATed
to 127.0.0.1 from the pod bridge is dropped by the kernel unless ``route_localnet`` is on, which
kube-proxy stopped relying on (CVE-2020-8558: it exposes every loopback service to the network).
k3s binds 0.0.0.0, reachable from anywhere the host is. In between, and only while authentication
and RBAC are on (a pod then holds no more than its ServiceAccount's token allows): the server also
listens on the pod bridge's gateway, the address the agent's bridge holds (its range's first), and
advertises it. The proxy DNATs 10.96.0.1:443 there; the address is reachable from the node's pods,
and from the hosts that route the pod range to this one (the cluster's own), not from the rest of
the network. The cluster DNS already listens on the same address.

With ``--pod-cidr auto`` the node's range is node IPAM's choice, known only once the embedded
controller manager has set the Node's ``spec.podCIDR``: the listener is then added to the running
server (:func:`serve_pods_when_ranged`) and the ``kubernetes`` endpoints reconciled to it, instead
of at start.
"""

from __future__ import annotations

import ipaddress
import logging

from aiohttp import web

from pilothouse.apiserver.masterendpoints import reconcile_kubernetes_endpoints
from pilothouse.apiserver.serve import RunningServer, freebind_socket
from pilothouse.client.rest import APIClient
from pilothouse.components.agent.podrange import wait_for_pod_cidr
from pilothouse.machinery.errors import StatusError

__all__ = ["pod_facing_address", "serve_pods_when_ranged"]

log = logging.getLogger("pilothouse.up")


def pod_facing_address(bind_address: str, pod_cidr: str, *, secure: bool, authorization_modes: str,
                       advertise_address: str = "") -> str | None:
    """The address to serve pods on as well, or None: an explicit advertise address or a bind
    address pods can reach already, a pod range ``up`` does not know yet (``auto``), or an open
    API server (anyone on the bridge would be admin) leave things as they are."""
    modes = [m.strip() for m in (authorization_modes or "AlwaysAllow").split(",")]  # the server's default
    if advertise_address or not secure or "AlwaysAllow" in modes:
        return None
    try:
        if not ipaddress.ip_address(bind_address).is_loopback:
            return None
        network = ipaddress.ip_network(pod_cidr, strict=False)
    except ValueError:
        return None
    if network.version != 4 or network.num_addresses < 4:
        return None
    return str(network.network_address + 1)


async def serve_pods_when_ranged(running: RunningServer, client: APIClient, node_name: str) -> str | None:
    """Once node IPAM has given ``node_name`` its range, also serve on that range's gateway and
    advertise it (the ``kubernetes`` Service's endpoint), as :func:`pod_facing_address` decides;
    the address, or None when pods are not to be served."""
    config = running.config
    # polled from nothing: the agent may not have registered its Node yet
    cidr = await wait_for_pod_cidr(client, {"metadata": {"name": node_name}})
    address = pod_facing_address(config.bind_address, cidr, secure=config.secure,
                                 authorization_modes=config.auth.authorization_mode,
                                 advertise_address=config.advertise_address)
    if address is None:
        return None
    ssl_context = running.pki.ssl_context() if running.pki is not None else None
    try:
        await web.SockSite(running.runner, freebind_socket(address, running.port), backlog=1024,
                           ssl_context=ssl_context).start()
        config.advertise_address = running.api.advertise_address = address
        await reconcile_kubernetes_endpoints(running.api.storage, address, running.port)
    except (OSError, StatusError) as error:
        log.warning("pods get no way to the API server on %s: %s", address, error)
        return None
    log.info("API server also serves pods on %s (node %s's range %s)", address, node_name, cidr)
    return address
