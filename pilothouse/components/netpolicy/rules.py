"""NetworkPolicy enforcement as a pure function: policies + pods + namespaces + this node → nftables.

One ``inet`` table (``pilothouse-netpol``) of its own, beside the proxy's ``ip pilothouse``:

- ``forward`` (hook forward, priority filter, after the proxy's DNAT, so policies see the endpoint
  pod's address and port as Kubernetes specifies) accepts replies (``ct state established,related``:
  the answer to an allowed connection always passes, whichever side is isolated), then looks the
  source address up in ``egress-pods`` and the destination in ``ingress-pods``, verdict maps from
  each isolated pod of this node to its chain;
- ``input`` (hook input) does the egress lookup for traffic from a pod to the node itself.
- a pod's ``ingress-<ns>/<name>`` / ``egress-<ns>/<name>`` chain holds one rule per allowed
  (peers, port) of every policy that selects it for that direction, each ending in ``return`` (the
  packet goes on to the other direction's check), and a final ``drop``.

Pods that no policy selects for a direction are in no map: not isolated. Traffic from the node
itself to its pods (the agent's probes) is locally generated: it takes the output hook, never
``forward``, so it is always allowed, as Kubernetes requires; its replies are established.

Pod-to-pod traffic on the agent's bridge is bridged, not routed: it reaches the ``inet`` forward hook
only through ``br_netfilter`` with ``net.bridge.bridge-nf-call-iptables=1`` (see
docs/decisions/network-policy.md), which the controller turns on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from pilothouse.components.netkernel.nftjson import Expr, match, meta, payload, prefix
from pilothouse.components.netpolicy.model import Namespace, Peer, Pod, Policy, PolicyPort, PolicyRule

__all__ = ["EGRESS_MAP", "FAMILY", "INGRESS_MAP", "TABLE", "Ruleset", "compute", "full_commands", "plan"]

Rule = tuple[Expr, ...]
Command = dict[str, Any]

FAMILY = "inet"
TABLE = "pilothouse-netpol"
INGRESS_MAP = "ingress-pods"
EGRESS_MAP = "egress-pods"
_RETURN: Expr = {"return": None}
_DROP: Expr = {"drop": None}
#: chain names are at most 255 bytes in the kernel; longer pod keys are cut and made unique by a hash
_MAX_CHAIN = 200


@dataclass(frozen=True)
class Ruleset:
    """Per-pod chains and the verdict-map elements (pod address → its chain) that lead to them."""

    chains: Mapping[str, tuple[Rule, ...]] = field(default_factory=dict)
    ingress: Mapping[str, str] = field(default_factory=dict)
    egress: Mapping[str, str] = field(default_factory=dict)


def _chain_name(direction: str, pod: Pod) -> str:
    name = f"{direction}-{pod.key}"
    if len(name) <= _MAX_CHAIN:
        return name
    return f"{name[:_MAX_CHAIN - 17]}-{hashlib.sha256(name.encode()).hexdigest()[:16]}"


class _Cluster:
    """The pods and namespaces peers are chosen from, indexed once per computation."""

    def __init__(self, pods: Iterable[Pod], namespaces: Iterable[Namespace]) -> None:
        self.pods = sorted(pods, key=lambda pod: pod.key)
        self.labels = {pod.key: pod.label_map() for pod in self.pods}
        self.namespace_labels = {ns.name: dict(ns.labels) for ns in namespaces}
        self.by_namespace: dict[str, list[Pod]] = {}
        for pod in self.pods:
            self.by_namespace.setdefault(pod.namespace, []).append(pod)
        # a peer's pods do not depend on the pod the policy protects: found once per computation
        self._peers: dict[tuple[str, Peer], list[Pod]] = {}
        self.rules: dict[tuple[Any, ...], list[Rule]] = {}

    def peer_pods(self, policy: Policy, peer: Peer) -> list[Pod]:
        key = (policy.namespace, peer)
        found = self._peers.get(key)
        if found is None:
            found = self._peer_pods(policy, peer)
            self._peers[key] = found
        return found

    def _peer_pods(self, policy: Policy, peer: Peer) -> list[Pod]:
        assert peer.pod_selector is not None
        if peer.namespace_selector is None:
            candidates = self.by_namespace.get(policy.namespace, [])
        else:
            selector = peer.namespace_selector
            candidates = [pod for name, labels in self.namespace_labels.items() if selector.matches(labels)
                          for pod in self.by_namespace.get(name, ())]
        return [pod for pod in candidates if peer.pod_selector.matches(self.labels[pod.key])]


def _addresses(field_name: str, ips: Iterable[str]) -> Expr:
    unique = sorted(set(ips))
    right: Any = unique[0] if len(unique) == 1 else {"set": unique}
    return match(payload("ip", field_name), right)


def _block(field_name: str, peer: Peer) -> Rule:
    rule: list[Expr] = [match(payload("ip", field_name), prefix(peer.cidr))]
    if peer.excepts:
        rule.append(match(payload("ip", field_name), {"set": [prefix(cidr) for cidr in sorted(peer.excepts)]}, "!="))
    return tuple(rule)


def _port_match(port: PolicyPort, number: int | None) -> Rule:
    rule: list[Expr] = [match(meta("l4proto"), port.protocol.lower())]
    if number is not None:
        end = port.end_port
        right: Any = {"range": [number, end]} if end is not None and end > number else number
        rule.append(match(payload("th", "dport"), right))
    return tuple(rule)


def _rule_rules(policy: Policy, rule: PolicyRule, direction: str, target: Pod, cluster: _Cluster) -> list[Rule]:
    """The nft rules allowing what one ingress/egress rule of ``policy`` allows for ``target``.

    A named port resolves against the pod the traffic goes to: ``target`` for ingress, each peer pod
    for egress (a named egress port only matches pods: an ipBlock has no container ports)."""
    field_name = "saddr" if direction == "ingress" else "daddr"
    # the peer alternatives: None (anyone), a list of pods, or an ipBlock
    pod_peers: list[Pod] = []
    blocks: list[Peer] = []
    anyone = not rule.peers
    for peer in rule.peers:
        if peer.cidr:
            blocks.append(peer)
        else:
            pod_peers += cluster.peer_pods(policy, peer)
    ports: list[PolicyPort | None] = list(rule.ports) or [None]
    out: list[Rule] = []
    for port in ports:
        if port is not None and isinstance(port.port, str):
            name = port.port
            if direction == "ingress":
                number = target.resolve(name, port.protocol)
                if number is None:
                    continue
                port_rule = _port_match(port, number)
                out += _peer_rules(field_name, anyone, pod_peers, blocks, port_rule)
                continue
            # egress: group the destination pods by the number the name has in each
            by_number: dict[int, list[str]] = {}
            for pod in cluster.pods if anyone else pod_peers:
                resolved = pod.resolve(name, port.protocol)
                if resolved is not None:
                    by_number.setdefault(resolved, []).append(pod.ip)
            for number, ips in sorted(by_number.items()):
                out.append((_addresses(field_name, ips), *_port_match(port, number)))
            continue
        port_rule = () if port is None else _port_match(port, port.port if isinstance(port.port, int) else None)
        out += _peer_rules(field_name, anyone, pod_peers, blocks, port_rule)
    return out


def _peer_rules(field_name: str, anyone: bool, pod_peers: list[Pod], blocks: list[Peer], port_rule: Rule
                ) -> list[Rule]:
    if anyone:
        return [port_rule]
    rules: list[Rule] = []
    if pod_peers:
        rules.append((_addresses(field_name, (pod.ip for pod in pod_peers)), *port_rule))
    rules += [(*_block(field_name, block), *port_rule) for block in blocks]
    return rules


def _cached_rules(policy: Policy, rule: PolicyRule, direction: str, target: Pod, cluster: _Cluster) -> list[Rule]:
    """:func:`_rule_rules` with ``return``, computed once for every target it is the same for: all
    of them but for named ingress ports, which depend on the target's own container ports."""
    named = direction == "ingress" and any(isinstance(port.port, str) for port in rule.ports)
    key = (policy.namespace, rule, direction, target.named_ports if named else None)
    found = cluster.rules.get(key)
    if found is None:
        found = [(*allowed, _RETURN) for allowed in _rule_rules(policy, rule, direction, target, cluster)]
        cluster.rules[key] = found
    return found


def _unique(rules: list[Rule]) -> list[Rule]:
    """The same allowance from several policies once (rules are JSON data: compare their encoding)."""
    seen: set[bytes] = set()
    out: list[Rule] = []
    for rule in rules:
        encoded = orjson.dumps(rule, option=orjson.OPT_SORT_KEYS)
        if encoded not in seen:
            seen.add(encoded)
            out.append(rule)
    return out


def compute(policies: Iterable[Policy], pods: Iterable[Pod], namespaces: Iterable[Namespace],
            node_name: str) -> Ruleset:
    """The ruleset that enforces ``policies`` for the pods of ``node_name``."""
    cluster = _Cluster(pods, namespaces)
    by_namespace: dict[str, list[Policy]] = {}
    for policy in sorted(policies, key=lambda p: (p.namespace, p.name)):
        by_namespace.setdefault(policy.namespace, []).append(policy)
    chains: dict[str, tuple[Rule, ...]] = {}
    maps: dict[str, dict[str, str]] = {"ingress": {}, "egress": {}}
    for pod in cluster.pods:
        if pod.node != node_name:
            continue
        labels = cluster.labels[pod.key]
        selecting = [policy for policy in by_namespace.get(pod.namespace, ()) if policy.pod_selector.matches(labels)]
        for direction in ("ingress", "egress"):
            rules: list[Rule] = []
            isolated = False
            for policy in selecting:
                policy_rules = policy.ingress if direction == "ingress" else policy.egress
                if policy_rules is None:
                    continue
                isolated = True
                for rule in policy_rules:
                    rules += _cached_rules(policy, rule, direction, pod, cluster)
            if isolated:
                name = _chain_name(direction, pod)
                chains[name] = (*_unique(rules), (_DROP,))
                maps[direction][pod.ip] = name
    return Ruleset(chains, maps["ingress"], maps["egress"])


# ------------------------------------------------------------------ commands


def _table(table: str) -> dict[str, str]:
    return {"family": FAMILY, "table": table}


def _base(table: str) -> list[Command]:
    """The table, its hooked chains and the two verdict maps."""
    established = match({"ct": {"key": "state"}}, ["established", "related"], "in")
    egress = {"vmap": {"key": payload("ip", "saddr"), "data": f"@{EGRESS_MAP}"}}
    ingress = {"vmap": {"key": payload("ip", "daddr"), "data": f"@{INGRESS_MAP}"}}
    commands: list[Command] = [{"add": {"table": {"family": FAMILY, "name": table}}}]
    for name in (INGRESS_MAP, EGRESS_MAP):
        commands.append({"add": {"map": {**_table(table), "name": name, "type": "ipv4_addr", "map": "verdict"}}})
    for chain, hook, lookups in (("forward", "forward", [egress, ingress]), ("input", "input", [egress])):
        commands.append({"add": {"chain": {**_table(table), "name": chain, "type": "filter", "hook": hook,
                                           "prio": 0, "policy": "accept"}}})
        commands.append({"add": {"rule": {**_table(table), "chain": chain, "expr": [established, {"accept": None}]}}})
        commands += [{"add": {"rule": {**_table(table), "chain": chain, "expr": [lookup]}}} for lookup in lookups]
    return commands


def _chain_rules(table: str, chain: str, rules: tuple[Rule, ...]) -> list[Command]:
    return [{"add": {"rule": {**_table(table), "chain": chain, "expr": list(rule)}}} for rule in rules]


def _element(table: str, map_name: str, ip: str, chain: str | None) -> dict[str, Any]:
    elem: Any = [ip, {"jump": {"target": chain}}] if chain is not None else ip
    return {"element": {**_table(table), "name": map_name, "elem": [elem]}}


def full_commands(ruleset: Ruleset, table: str = TABLE) -> list[Command]:
    """Replace the whole table in one transaction (``add`` then ``delete`` so that a missing table is
    no error): the first sync, and any after a failure."""
    commands: list[Command] = [{"add": {"table": {"family": FAMILY, "name": table}}},
                               {"delete": {"table": {"family": FAMILY, "name": table}}}, *_base(table)]
    for chain, rules in ruleset.chains.items():
        commands.append({"add": {"chain": {**_table(table), "name": chain}}})
        commands += _chain_rules(table, chain, rules)
    for map_name, elements in ((INGRESS_MAP, ruleset.ingress), (EGRESS_MAP, ruleset.egress)):
        commands += [{"add": _element(table, map_name, ip, chain)} for ip, chain in sorted(elements.items())]
    return commands


def plan(old: Ruleset, new: Ruleset, table: str = TABLE) -> list[Command]:
    """The commands that turn the applied ``old`` into ``new``: map elements that changed, chains
    flushed and refilled only where their rules changed, chains no pod uses any more deleted after
    the elements that jumped to them (in one transaction; Linux 6.2+ frees the reference at once)."""
    commands: list[Command] = []
    for map_name, before, after in ((INGRESS_MAP, old.ingress, new.ingress), (EGRESS_MAP, old.egress, new.egress)):
        commands += [{"delete": _element(table, map_name, ip, None)}
                     for ip, chain in sorted(before.items()) if after.get(ip) != chain]
    for chain, rules in new.chains.items():
        previous = old.chains.get(chain)
        if previous == rules:
            continue
        if previous is None:
            commands.append({"add": {"chain": {**_table(table), "name": chain}}})
        else:
            commands.append({"flush": {"chain": {**_table(table), "name": chain}}})
        commands += _chain_rules(table, chain, rules)
    for map_name, before, after in ((INGRESS_MAP, old.ingress, new.ingress), (EGRESS_MAP, old.egress, new.egress)):
        commands += [{"add": _element(table, map_name, ip, chain)}
                     for ip, chain in sorted(after.items()) if before.get(ip) != chain]
    for chain in sorted(old.chains.keys() - new.chains.keys()):
        commands.append({"delete": {"chain": {**_table(table), "name": chain}}})
    return commands
