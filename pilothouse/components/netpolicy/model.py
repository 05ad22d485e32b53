"""What the policy rules are computed from: Pods, Namespaces and NetworkPolicies read from their API
objects into small frozen values, so :func:`.rules.compute` is a pure function of plain data.

Defaults are applied here as the API server's SetDefaults_NetworkPolicy does (a port's protocol is
TCP; ``policyTypes`` is Ingress, plus Egress when the policy has egress rules), so objects written
by older servers or by hand read the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pilothouse.machinery.selectors import LabelSelector, selector_from_object

__all__ = [
    "Namespace",
    "Peer",
    "Pod",
    "Policy",
    "PolicyPort",
    "PolicyRule",
    "namespace_from",
    "pod_from",
    "policy_from",
]

Object = Mapping[str, Any]


@dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    labels: tuple[tuple[str, str], ...]
    ip: str
    node: str
    #: named container ports: (name, protocol, port)
    named_ports: tuple[tuple[str, str, int], ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def label_map(self) -> dict[str, str]:
        return dict(self.labels)

    def resolve(self, name: str, protocol: str) -> int | None:
        """The number of this pod's container port ``name`` for ``protocol`` (None: it has none)."""
        for port_name, port_protocol, number in self.named_ports:
            if port_name == name and port_protocol == protocol:
                return number
        return None


@dataclass(frozen=True)
class Namespace:
    name: str
    labels: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class PolicyPort:
    protocol: str  # TCP, UDP, SCTP
    #: a number, a named port, or None (every port of the protocol)
    port: int | str | None = None
    end_port: int | None = None


@dataclass(frozen=True)
class Peer:
    """One ``from``/``to`` item: pods by selectors, or an ipBlock."""

    pod_selector: LabelSelector | None = None
    #: None: the policy's own namespace (a peer with only a podSelector)
    namespace_selector: LabelSelector | None = None
    cidr: str = ""
    excepts: tuple[str, ...] = ()


@dataclass(frozen=True)
class PolicyRule:
    #: empty: every peer (a rule without ``from``/``to``)
    peers: tuple[Peer, ...]
    #: empty: every port and protocol
    ports: tuple[PolicyPort, ...]


@dataclass(frozen=True)
class Policy:
    namespace: str
    name: str
    pod_selector: LabelSelector
    ingress: tuple[PolicyRule, ...] | None  # None: the policy does not isolate for ingress
    egress: tuple[PolicyRule, ...] | None


def _labels(obj: Object) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((obj.get("metadata", {}).get("labels") or {}).items()))


def pod_from(obj: Object) -> Pod | None:
    """The pod as a policy target or peer, or None when it has no address of its own in the pod
    network (not yet started, finished (its address may be reused), or on the host's network)."""
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    ip = status.get("podIP") or ""
    if not ip or spec.get("hostNetwork") or status.get("phase") in ("Succeeded", "Failed") or ":" in ip:
        return None
    named = tuple((str(port["name"]), str(port.get("protocol") or "TCP"), int(port["containerPort"]))
                  for container in spec.get("containers") or () for port in container.get("ports") or ()
                  if port.get("name") and port.get("containerPort"))
    metadata = obj["metadata"]
    return Pod(metadata.get("namespace", ""), metadata["name"], _labels(obj), ip, spec.get("nodeName") or "", named)


def namespace_from(obj: Object) -> Namespace:
    return Namespace(obj["metadata"]["name"], _labels(obj))


def _peer(item: Object) -> Peer:
    block = item.get("ipBlock")
    if block:
        return Peer(cidr=str(block["cidr"]), excepts=tuple(str(cidr) for cidr in block.get("except") or ()))
    pods, namespaces = item.get("podSelector"), item.get("namespaceSelector")
    # a missing podSelector next to a namespaceSelector means every pod of those namespaces
    return Peer(pod_selector=selector_from_object(pods if pods is not None else {}),
                namespace_selector=selector_from_object(namespaces) if namespaces is not None else None)


def _port(item: Object) -> PolicyPort:
    port = item.get("port")
    end = item.get("endPort")
    return PolicyPort(str(item.get("protocol") or "TCP"), port if port is None or isinstance(port, str) else int(port),
                      int(end) if end is not None and isinstance(port, int) else None)


def _rules(items: Any, peers_key: str) -> tuple[PolicyRule, ...]:
    return tuple(PolicyRule(tuple(_peer(peer) for peer in item.get(peers_key) or ()),
                            tuple(_port(port) for port in item.get("ports") or ()))
                 for item in items or ())


def policy_from(obj: Object) -> Policy:
    spec = obj.get("spec") or {}
    types = spec.get("policyTypes") or (["Ingress", "Egress"] if spec.get("egress") else ["Ingress"])
    metadata = obj["metadata"]
    return Policy(metadata.get("namespace", ""), metadata["name"], selector_from_object(spec.get("podSelector") or {}),
                  _rules(spec.get("ingress"), "from") if "Ingress" in types else None,
                  _rules(spec.get("egress"), "to") if "Egress" in types else None)
