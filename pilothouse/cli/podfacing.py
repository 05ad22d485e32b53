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
"""

from __future__ import annotations

import ipaddress

__all__ = ["pod_facing_address"]


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
