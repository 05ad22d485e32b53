"""Builders for nft's JSON expressions (libnftables-json(5)), so rules are data that tests compare.

The shapes are what ``nft -j list ruleset`` prints for the equivalent text rules (checked against
nftables 1.0.6), so a ruleset written here reads back identically.
"""

from __future__ import annotations

import ipaddress
from typing import Any

__all__ = ["Expr", "cidrs", "concat", "ct_state_new", "fib_local", "goto", "jump", "match", "meta", "payload", "prefix",
           "verdict_set"]

Expr = dict[str, Any]


def payload(protocol: str, field: str) -> Expr:
    """``ip daddr``, ``tcp dport``, ``th dport`` ..."""
    return {"payload": {"protocol": protocol, "field": field}}


def meta(key: str) -> Expr:
    return {"meta": {"key": key}}


def prefix(cidr: str) -> Any:
    """A CIDR as a right-hand side: a prefix, or a plain address for a /32."""
    network = ipaddress.ip_network(cidr, strict=False)
    if network.prefixlen == network.max_prefixlen:
        return str(network.network_address)
    return {"prefix": {"addr": str(network.network_address), "len": network.prefixlen}}


def cidrs(ranges: tuple[str, ...] | list[str]) -> Any:
    """Several CIDRs as a right-hand side: an anonymous interval set ``{ a/n, b/m }`` (one alone as
    :func:`prefix`)."""
    if len(ranges) == 1:
        return prefix(ranges[0])
    return {"set": [prefix(cidr) for cidr in ranges]}


def match(left: Any, right: Any, op: str = "==") -> Expr:
    return {"match": {"op": op, "left": left, "right": right}}


def concat(*items: Any) -> Expr:
    return {"concat": list(items)}


def jump(chain: str) -> Expr:
    return {"jump": {"target": chain}}


def goto(chain: str) -> Expr:
    return {"goto": {"target": chain}}


def verdict_set(pairs: list[tuple[Any, Expr]]) -> Expr:
    """An anonymous verdict map ``{ k : verdict, ... }``."""
    return {"set": [[key, value] for key, value in pairs]}


def fib_local(direction: str) -> Expr:
    """``fib saddr type local`` / ``fib daddr type local``: the address is one of this host's."""
    return match({"fib": {"result": "type", "flags": [direction]}}, "local")


def ct_state_new() -> Expr:
    return match({"ct": {"key": "state"}}, "new", op="in")
