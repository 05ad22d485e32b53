"""From one ruleset to the next: the nft commands of a sync, computed without a kernel.

The first sync (and any after a failure) replaces the whole table in one transaction: ``add`` then
``delete`` then the full contents, atomic in the kernel, so there is no moment without rules. Later
syncs touch only the Service ports whose :class:`ServiceRules` changed: their map elements are
deleted and re-added, their chains flushed and refilled, new chains added; chains and affinity sets
no Service uses any more are flushed now and deleted by a later sync, as kube-proxy does (before
Linux 6.2 the kernel notices a chain is unreferenced only a little after the map element pointing at
it is gone).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from pilothouse.components.netkernel.conntrack import ConntrackFilter
from pilothouse.components.netkernel.nftjson import concat
from pilothouse.components.proxy.rules import (
    CLUSTER_IPS,
    FAMILY,
    FIREWALL_IPS,
    NO_ENDPOINT_NODEPORTS,
    NO_ENDPOINT_SERVICES,
    SERVICE_IPS,
    SERVICE_NODEPORTS,
    ProxyConfig,
    ServiceRules,
    base_commands,
)

__all__ = ["Plan", "plan"]

Command = dict[str, Any]
Rules = Mapping[str, ServiceRules]

_MAPS = (("service_ips", SERVICE_IPS), ("nodeports", SERVICE_NODEPORTS),
         ("no_endpoint_services", NO_ENDPOINT_SERVICES), ("no_endpoint_nodeports", NO_ENDPOINT_NODEPORTS),
         ("firewall_ips", FIREWALL_IPS))


@dataclass
class Plan:
    commands: list[Command] = field(default_factory=list)
    #: chains and sets flushed by this sync, to delete in a later one
    stale_chains: set[str] = field(default_factory=set)
    stale_sets: set[str] = field(default_factory=set)
    #: conntrack entries to delete once the commands are in place
    conntrack: list[ConntrackFilter] = field(default_factory=list)
    changed: int = 0  # Service ports whose rules were rewritten


def _element(config: ProxyConfig, name: str, key: tuple[Any, ...], value: Any | None) -> dict[str, Any]:
    elem: Any = concat(*key) if len(key) > 1 else key[0]
    return {"element": {"family": FAMILY, "table": config.table, "name": name,
                        "elem": [[elem, value] if value is not None else elem]}}


def _contents(config: ProxyConfig, rules: ServiceRules, chains: Collection[str] | None = None) -> list[Command]:
    """Sets, chains (those in ``chains``: all by default) and elements of one Service port; the
    chains themselves must exist."""
    table = {"family": FAMILY, "table": config.table}
    commands: list[Command] = []
    for name, timeout in rules.affinity_sets.items():
        commands.append({"add": {"set": {**table, "name": name, "type": "ipv4_addr", "flags": ["timeout"],
                                         "timeout": timeout}}})
    for chain, chain_rules in rules.chains.items():
        if chains is None or chain in chains:
            commands += [{"add": {"rule": {**table, "chain": chain, "expr": rule}}} for rule in chain_rules]
    for attribute, name in _MAPS:
        for key, value in getattr(rules, attribute).items():
            commands.append({"add": _element(config, name, key, value)})
    return commands


def _removals(config: ProxyConfig, old: ServiceRules, new: ServiceRules) -> list[Command]:
    """Delete ``old``'s elements that ``new`` does not have with the same value."""
    commands: list[Command] = []
    for attribute, name in _MAPS:
        fresh = getattr(new, attribute)
        for key, value in getattr(old, attribute).items():
            if fresh.get(key) != value:
                commands.append({"delete": _element(config, name, key, None)})
    return commands


def _cluster_ips(rules: Rules) -> set[str]:
    # a union: the ports of one Service share its address, so the set is not any one port's business
    return {ip for port in rules.values() for ip in port.cluster_ips}


def _stale_udp(old: ServiceRules | None, new: ServiceRules | None) -> list[ConntrackFilter]:
    """kube-proxy's conntrack.CleanStaleEntries for one Service port: entries NATed to an endpoint
    that is gone, and every entry of a destination that had no endpoints and now has some (what a
    client sent while it was rejected would otherwise stick)."""
    before = old.udp_destinations if old else {}
    after = new.udp_destinations if new else {}
    out: list[ConntrackFilter] = []
    for (address, port), targets in before.items():
        for gone in sorted(targets - after.get((address, port), frozenset())):
            out.append(ConntrackFilter("udp", address, 0 if address else port, gone))
    for (address, port), targets in after.items():
        if targets and not before.get((address, port)):
            out.append(ConntrackFilter("udp", address, port))
    return out


def plan(config: ProxyConfig, applied: Rules | None, desired: Rules) -> Plan:
    """The commands that take the table from ``applied`` (None: unknown, replace it) to ``desired``."""
    result = Plan()
    if applied is None:
        result.commands = [{"add": {"table": {"family": FAMILY, "name": config.table}}},
                           {"delete": {"table": {"family": FAMILY, "name": config.table}}},
                           *base_commands(config)]
        for rules in desired.values():
            result.commands += [{"add": {"chain": {"family": FAMILY, "table": config.table, "name": name}}}
                                for name in rules.chains]
        for rules in desired.values():
            result.commands += _contents(config, rules)
        result.commands += [{"add": _element(config, CLUSTER_IPS, (ip,), None)} for ip in sorted(_cluster_ips(desired))]
        result.conntrack = [f for key in desired for f in _stale_udp(None, desired[key])]
        result.changed = len(desired)
        return result

    empty = ServiceRules()
    changed = [key for key in applied.keys() | desired.keys() if applied.get(key) != desired.get(key)]
    changed.sort()
    result.changed = len(changed)
    removals: list[Command] = []
    chain_ops: list[Command] = []
    additions: list[Command] = []
    table = {"family": FAMILY, "table": config.table}
    for key in changed:
        old, new = applied.get(key, empty), desired.get(key, empty)
        removals += _removals(config, old, new)
        for name in new.chains:
            if name in old.chains:
                if old.chains[name] != new.chains[name]:
                    chain_ops.append({"flush": {"chain": {**table, "name": name}}})
            else:
                chain_ops.append({"add": {"chain": {**table, "name": name}}})
        for name in old.chains.keys() - new.chains.keys():
            chain_ops.append({"flush": {"chain": {**table, "name": name}}})
            result.stale_chains.add(name)
        result.stale_sets |= old.affinity_sets.keys() - new.affinity_sets.keys()
        rewritten = {n for n in new.chains if n not in old.chains or old.chains[n] != new.chains[n]}
        # what is new or changed: elements (a changed one was deleted above), sets, rewritten chains
        fresh: dict[str, Any] = {attr: {k: v for k, v in getattr(new, attr).items() if getattr(old, attr).get(k) != v}
                                 for attr, _ in _MAPS}
        kept_elements = ServiceRules(chains=new.chains, affinity_sets={
            n: t for n, t in new.affinity_sets.items() if old.affinity_sets.get(n) != t}, **fresh)
        additions += _contents(config, kept_elements, rewritten)
        result.conntrack += _stale_udp(old if key in applied else None, desired.get(key))
    before, after = _cluster_ips(applied), _cluster_ips(desired)
    removals += [{"delete": _element(config, CLUSTER_IPS, (ip,), None)} for ip in sorted(before - after)]
    additions += [{"add": _element(config, CLUSTER_IPS, (ip,), None)} for ip in sorted(after - before)]
    result.commands = removals + chain_ops + additions
    return result
