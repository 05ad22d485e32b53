"""The service proxy's rules as a pure function: Services + EndpointSlices + this node → nftables.

The layout is kube-proxy's nftables mode (pkg/proxy/nftables/proxier.go), in one ``ip`` table:

- ``services`` (jumped to from the nat prerouting and output hooks) looks the packet's
  ``daddr . l4proto . dport`` up in the ``service-ips`` verdict map, and, for a destination that is
  one of the node's own addresses, ``l4proto . dport`` in ``service-nodeports``;
- each Service port has a ``service-<hash>-ns/name/proto/port`` chain (its endpoints for the Cluster
  traffic policy) that picks one ``endpoint-...`` chain with ``numgen random mod N`` (after the
  ClientIP affinity sets, when the Service has affinity), ``local-...`` for the Local policies, and
  ``external-...`` for NodePort and external IPs (masquerade, Local policy short-circuits);
- an endpoint chain marks hairpin traffic for masquerade, records affinity, and DNATs;
- the filter hooks reject what must not pass: ``endpoints-check`` with the ``no-endpoint-services``
  and ``no-endpoint-nodeports`` maps (a Service without endpoints), and ``cluster-ips-check`` for a
  port that a ClusterIP does not serve or an address of the service range that no Service holds
  (kube-proxy 1.32 drops the latter; the issue we implement asks for a reject, which fails a client
  at once instead of after its timeout);
- ``firewall-check`` (filter, before DNAT) looks new connections to a load balancer's address up in
  ``firewall-ips``: a Service with ``loadBalancerSourceRanges`` drops sources outside them in its
  ``firewall-...`` chain (kube-proxy's firewall chains; VIP-like balancers that keep the client's
  address);
- ``masquerading`` (nat postrouting) masquerades packets carrying the ``mark-for-masquerade`` bit.

Each Service port's share (:class:`ServiceRules`) is computed on its own, so a sync recomputes and
rewrites only the Services whose objects changed (see :mod:`.sync`).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pilothouse.components.netkernel.nftjson import (
    Expr,
    cidrs,
    concat,
    ct_state_new,
    fib_local,
    goto,
    jump,
    match,
    meta,
    payload,
    prefix,
    verdict_set,
)
from pilothouse.components.proxy.model import SERVICE_NAME_LABEL, Endpoint, ServicePort, endpoints_for, service_ports
from pilothouse.components.syncloop import DEFAULT_FULL_SYNC_PERIOD
from pilothouse.machinery.meta import Object

__all__ = ["FAMILY", "ProxyConfig", "Rule", "ServiceRules", "base_commands", "compute", "service_rules"]

Rule = list[Expr]
Command = dict[str, Any]

FAMILY = "ip"
SERVICES = "services"
SERVICE_IPS = "service-ips"
SERVICE_NODEPORTS = "service-nodeports"
CLUSTER_IPS = "cluster-ips"
ENDPOINTS_CHECK = "endpoints-check"
NO_ENDPOINT_SERVICES = "no-endpoint-services"
NO_ENDPOINT_NODEPORTS = "no-endpoint-nodeports"
CLUSTER_IPS_CHECK = "cluster-ips-check"
FIREWALL_CHECK = "firewall-check"
FIREWALL_IPS = "firewall-ips"
REJECT_CHAIN = "reject-chain"
MARK_MASQ = "mark-for-masquerade"
MASQUERADING = "masquerading"
#: chains hooked into netfilter: (name, type, hook, priority). The filter chains run before DNAT
#: (dstnat - 10) so they see the Service's address; ``filter-output-post-dnat`` runs after it, where a
#: packet still bound for the service range was captured by no Service.
BASE_CHAINS = (
    ("filter-prerouting-pre-dnat", "filter", "prerouting", -110),
    ("filter-input", "filter", "input", -110),
    ("filter-forward", "filter", "forward", -110),
    ("filter-output", "filter", "output", -110),
    ("filter-output-post-dnat", "filter", "output", -90),
    ("nat-prerouting", "nat", "prerouting", -100),
    ("nat-output", "nat", "output", -100),
    ("nat-postrouting", "nat", "postrouting", 100),
)
#: (regular chain, from base chain, only for new connections)
JUMPS = (
    (ENDPOINTS_CHECK, "filter-input", True),
    (ENDPOINTS_CHECK, "filter-forward", True),
    (ENDPOINTS_CHECK, "filter-output", True),
    (FIREWALL_CHECK, "filter-prerouting-pre-dnat", True),
    (FIREWALL_CHECK, "filter-output", True),
    (CLUSTER_IPS_CHECK, "filter-forward", True),
    (CLUSTER_IPS_CHECK, "filter-output-post-dnat", True),
    (SERVICES, "nat-output", False),
    (SERVICES, "nat-prerouting", False),
    (MASQUERADING, "nat-postrouting", False),
)
#: nft's limit on a name, less the longest prefix we put in front of a hashed base
_NAME_BASE_MAX = 256 - 16


@dataclass(frozen=True)
class ProxyConfig:
    node_name: str
    #: the pods' range: traffic from it counts as from inside the cluster (kube-proxy's --cluster-cidr
    #: local-traffic detector); a ClusterIP reached from elsewhere is masqueraded
    cluster_cidr: str = "10.244.0.0/16"
    service_cidrs: tuple[str, ...] = ("10.96.0.0/12",)
    table: str = "pilothouse"
    masquerade_mark: int = 0x4000
    #: kube-proxy's --nodeport-addresses: NodePorts answer only on the node's addresses in these
    #: ranges (empty: on every address of the node but loopback)
    nodeport_addresses: tuple[str, ...] = ()
    #: the sync loop's timing (see components/syncloop.py): a full resync this often (--sync-period),
    #: and syncs no closer together than --min-sync-period
    sync_period: float = DEFAULT_FULL_SYNC_PERIOD
    min_sync_period: float = 0.0


@dataclass(frozen=True, eq=True)
class ServiceRules:
    """One Service port's share of the ruleset."""

    chains: dict[str, list[Rule]] = field(default_factory=dict)
    service_ips: dict[tuple[str, str, int], Expr] = field(default_factory=dict)
    nodeports: dict[tuple[str, int], Expr] = field(default_factory=dict)
    no_endpoint_services: dict[tuple[str, str, int], Expr] = field(default_factory=dict)
    no_endpoint_nodeports: dict[tuple[str, int], Expr] = field(default_factory=dict)
    firewall_ips: dict[tuple[str, str, int], Expr] = field(default_factory=dict)
    cluster_ips: frozenset[str] = frozenset()
    affinity_sets: dict[str, int] = field(default_factory=dict)
    #: UDP only: (destination address or "" for a NodePort, port) → the endpoint addresses it reaches;
    #: what the conntrack cleanup compares between syncs
    udp_destinations: dict[tuple[str, int], frozenset[str]] = field(default_factory=dict)


def _hashed(name: str) -> str:
    """kube-proxy's hashAndTruncate: a short hash in front keeps names unique and distinguishable."""
    digest = base64.b32encode(hashlib.sha256(name.encode()).digest()).decode()[:8]
    name = f"{digest}-{name}"
    return name if len(name) <= _NAME_BASE_MAX else name[:_NAME_BASE_MAX - 3] + "..."


def _endpoint_base(port: ServicePort, endpoint: Endpoint) -> str:
    return _hashed(f"{port.key}__{endpoint.ip}/{endpoint.port}")


def _categorize(port: ServicePort, endpoints: list[Endpoint],
                node: str) -> tuple[list[Endpoint], list[Endpoint], bool]:
    """kube-proxy's CategorizeEndpoints: (cluster endpoints, local endpoints, any usable at all).
    Ready endpoints, or when there are none, the serving terminating ones (kept for connections that
    would otherwise fail while a rollout replaces every endpoint)."""
    def usable(candidates: list[Endpoint]) -> list[Endpoint]:
        ready = [e for e in candidates if e.ready]
        return ready or [e for e in candidates if e.serving and e.terminating]

    cluster = usable(endpoints)
    local = usable([e for e in endpoints if e.node == node])
    return cluster, local, bool(cluster or local)


def _dispatch(port: ServicePort, endpoints: list[Endpoint], ip: str) -> list[Rule]:
    """The rules of a policy chain: affinity first, then a random pick among ``endpoints``."""
    rules: list[Rule] = []
    if port.affinity_seconds:
        rules += [[match(payload(ip, "saddr"), "@affinity-" + _endpoint_base(port, e)),
                   goto("endpoint-" + _endpoint_base(port, e))] for e in endpoints]
    rules.append([{"vmap": {"key": {"numgen": {"mode": "random", "mod": len(endpoints), "offset": 0}},
                            "data": verdict_set([(i, goto("endpoint-" + _endpoint_base(port, e)))
                                                 for i, e in enumerate(endpoints)])}}])
    return rules


def service_rules(port: ServicePort, endpoints: list[Endpoint], config: ProxyConfig) -> ServiceRules:
    """One Service port's chains, map elements and sets (kube-proxy's syncProxyRules loop body)."""
    out = ServiceRules(cluster_ips=frozenset([port.cluster_ip]))
    base = _hashed(port.key)
    cluster_chain, local_chain, external_chain = f"service-{base}", f"local-{base}", f"external-{base}"
    cluster, local, has_endpoints = _categorize(port, endpoints, config.node_name)
    external = port.externally_accessible

    # the Cluster chain serves ClusterIP traffic unless internalTrafficPolicy is Local, and external
    # traffic: as its policy, or for the short-circuits of the Local policy (below)
    uses_cluster = bool(cluster) and (not port.internal_local or external)
    uses_local = bool(local) and (port.internal_local or port.external_local)
    internal_chain = local_chain if port.internal_local else cluster_chain
    has_internal = bool(local) if port.internal_local else has_endpoints
    external_policy_chain = local_chain if port.external_local else cluster_chain
    has_external = bool(local) if port.external_local else has_endpoints

    # no endpoints at all: REJECT; endpoints, but none on this node for a Local policy: drop
    unserved: Expr = goto(REJECT_CHAIN) if not has_endpoints else {"drop": None}
    proto, ip = port.protocol, FAMILY
    key = (port.cluster_ip, proto, port.port)
    if has_internal:
        out.service_ips[key] = goto(internal_chain)
    else:
        out.no_endpoint_services[key] = unserved
    for address in port.external_ips:
        if has_endpoints:
            out.service_ips[(address, proto, port.port)] = goto(external_chain)
        if not has_external:
            out.no_endpoint_services[(address, proto, port.port)] = unserved
    if port.node_port:
        if has_endpoints:
            out.nodeports[(proto, port.node_port)] = goto(external_chain)
        if not has_external:
            out.no_endpoint_nodeports[(proto, port.node_port)] = unserved

    if port.source_ranges and port.load_balancer_ips:
        # kube-proxy drops sources outside the ranges whatever the endpoints (its firewall chain)
        firewall_chain = f"firewall-{base}"
        out.chains[firewall_chain] = [[match(payload(ip, "saddr"), cidrs(port.source_ranges), op="!="), {"drop": None}]]
        for address in port.load_balancer_ips:
            out.firewall_ips[(address, proto, port.port)] = goto(firewall_chain)

    if uses_cluster:
        out.chains[cluster_chain] = _dispatch(port, cluster, ip)
    if uses_local:
        out.chains[local_chain] = _dispatch(port, local, ip)
    if has_internal:
        # traffic to a ClusterIP from outside the pod range (the host itself, or a host routing the
        # service range to this node) must come back through this node: masquerade it
        out.chains[internal_chain].insert(0, [
            match(payload(ip, "daddr"), port.cluster_ip), match(payload(proto, "dport"), port.port),
            match(payload(ip, "saddr"), prefix(config.cluster_cidr), op="!="), jump(MARK_MASQ)])
    if has_endpoints and external:
        rules: list[Rule] = []
        if not port.external_local:
            rules.append([jump(MARK_MASQ)])  # the endpoint may be on another node: keep the return path
        elif uses_cluster:
            # pods and the node itself reaching an external address are not subject to the Local
            # policy (as if they went out to a load balancer and back); the node's own traffic has a
            # node address as its source and must be masqueraded
            rules += [[match(payload(ip, "saddr"), prefix(config.cluster_cidr)), goto(cluster_chain)],
                      [fib_local("saddr"), jump(MARK_MASQ)],
                      [fib_local("saddr"), goto(cluster_chain)]]
        if has_external:
            rules.append([goto(external_policy_chain)])
        out.chains[external_chain] = rules

    reachable = {e for group, used in ((cluster, uses_cluster), (local, uses_local)) if used for e in group}
    for endpoint in sorted(reachable):
        endpoint_base = _endpoint_base(port, endpoint)
        rules = [[match(payload(ip, "saddr"), endpoint.ip), jump(MARK_MASQ)]]  # hairpin: a pod reaching itself
        if port.affinity_seconds:
            out.affinity_sets["affinity-" + endpoint_base] = port.affinity_seconds
            rules.append([{"set": {"op": "update", "elem": payload(ip, "saddr"), "set": "@affinity-" + endpoint_base}}])
        rules.append([match(meta("l4proto"), proto), {"dnat": {"addr": endpoint.ip, "port": endpoint.port}}])
        out.chains["endpoint-" + endpoint_base] = rules

    if proto == "udp":
        targets = frozenset(e.ip for e in reachable)
        out.udp_destinations[(port.cluster_ip, port.port)] = targets if has_internal else frozenset()
        for address in port.external_ips:
            out.udp_destinations[(address, port.port)] = targets
        if port.node_port:
            out.udp_destinations[("", port.node_port)] = targets
    return out


def compute(services: Iterable[Object], slices: Iterable[Object], config: ProxyConfig) -> dict[str, ServiceRules]:
    """Every proxied Service port's rules, by ``namespace/name/protocol/port``."""
    by_service: dict[tuple[str, str], list[Object]] = {}
    for endpoint_slice in slices:
        metadata = endpoint_slice["metadata"]
        name = (metadata.get("labels") or {}).get(SERVICE_NAME_LABEL)
        if name:
            by_service.setdefault((metadata.get("namespace", ""), name), []).append(endpoint_slice)
    out: dict[str, ServiceRules] = {}
    for service in services:
        metadata = service["metadata"]
        owned = by_service.get((metadata.get("namespace", ""), metadata["name"]), [])
        for port in service_ports(service):
            out[port.key] = service_rules(port, endpoints_for(port, owned), config)
    return out


def _obj(kind: str, config: ProxyConfig, **fields: Any) -> Command:
    return {kind: {"family": FAMILY, "table": config.table, **fields}}


def base_commands(config: ProxyConfig) -> list[Command]:
    """The table and what does not depend on any Service: base chains, jumps, the maps, the
    masquerade and reject helpers, the service range check. Applied when the table is (re)created."""
    ip = FAMILY
    key3 = ["ipv4_addr", "inet_proto", "inet_service"]
    key2 = ["inet_proto", "inet_service"]
    commands: list[Command] = [{"add": {"table": {"family": FAMILY, "name": config.table}}}]
    for name, kind, hook, priority in BASE_CHAINS:
        commands.append({"add": _obj("chain", config, name=name, type=kind, hook=hook, prio=priority,
                                     policy="accept")})
    for name in (SERVICES, ENDPOINTS_CHECK, CLUSTER_IPS_CHECK, FIREWALL_CHECK, REJECT_CHAIN, MARK_MASQ, MASQUERADING):
        commands.append({"add": _obj("chain", config, name=name)})
    for name, key in ((SERVICE_IPS, key3), (NO_ENDPOINT_SERVICES, key3), (SERVICE_NODEPORTS, key2),
                      (NO_ENDPOINT_NODEPORTS, key2), (FIREWALL_IPS, key3)):
        commands.append({"add": _obj("map", config, name=name, type=key, map="verdict")})
    commands.append({"add": _obj("set", config, name=CLUSTER_IPS, type="ipv4_addr")})

    def rule(chain: str, *expr: Expr) -> Command:
        return {"add": _obj("rule", config, chain=chain, expr=list(expr))}

    for target, source, new_only in JUMPS:
        commands.append(rule(source, *([ct_state_new()] if new_only else []), jump(target)))
    mark = config.masquerade_mark
    # a NodePort's destination: an address of this node, never loopback (kube-proxy's nftables mode
    # does not serve localhost NodePorts), and within --nodeport-addresses when given
    node_address = [fib_local("daddr"), match(payload(ip, "daddr"), prefix("127.0.0.0/8"), op="!=")]
    if config.nodeport_addresses:
        node_address.append(match(payload(ip, "daddr"), cidrs(config.nodeport_addresses)))
    l4 = concat(meta("l4proto"), payload("th", "dport"))
    commands += [
        rule(MARK_MASQ, {"mangle": {"key": meta("mark"), "value": {"|": [meta("mark"), mark]}}}),
        rule(MASQUERADING, match({"&": [meta("mark"), mark]}, 0), {"return": None}),
        rule(MASQUERADING, {"mangle": {"key": meta("mark"), "value": {"^": [meta("mark"), mark]}}}),
        rule(MASQUERADING, {"masquerade": {"flags": "fully-random"}}),
        rule(REJECT_CHAIN, {"reject": None}),
        rule(SERVICES, {"vmap": {"key": concat(payload(ip, "daddr"), meta("l4proto"), payload("th", "dport")),
                                 "data": "@" + SERVICE_IPS}}),
        rule(SERVICES, *node_address, {"vmap": {"key": l4, "data": "@" + SERVICE_NODEPORTS}}),
        rule(ENDPOINTS_CHECK, {"vmap": {"key": concat(payload(ip, "daddr"), meta("l4proto"),
                                                      payload("th", "dport")), "data": "@" + NO_ENDPOINT_SERVICES}}),
        rule(ENDPOINTS_CHECK, *node_address, {"vmap": {"key": l4, "data": "@" + NO_ENDPOINT_NODEPORTS}}),
        rule(FIREWALL_CHECK, {"vmap": {"key": concat(payload(ip, "daddr"), meta("l4proto"), payload("th", "dport")),
                                       "data": "@" + FIREWALL_IPS}}),
        # after DNAT: a packet still bound for a ClusterIP hit a port the Service does not have
        rule(CLUSTER_IPS_CHECK, match(payload(ip, "daddr"), "@" + CLUSTER_IPS), {"reject": None}),
    ]
    commands += [rule(CLUSTER_IPS_CHECK, match(payload(ip, "daddr"), prefix(cidr)), {"reject": None})
                 for cidr in config.service_cidrs if ":" not in cidr]
    return commands

