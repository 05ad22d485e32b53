"""The part of a topology file (``kind: Cluster``) that setting up a real host needs.

Only the fields ``cloud-config`` and ``install`` use are read: hosts (name, role, address, labels,
taints), the network (pod CIDR, service range), the registry's credentials and extra arguments per
component. Anything else in the file (engines, options of ``cluster create``) is left to its own
reader, so this module does not break when the file grows. Errors name the field, as
``hosts[2].address: "10.1.0.x" is not an IP address``, so a user finds the line to fix::

    apiVersion: pilothouse.io/v1alpha1
    kind: Cluster
    metadata: {name: seed}
    network: {hostSubnet: 10.1.0.0/24, podCIDR: 10.244.0.0/16, serviceRange: 10.100.0.0/16}
    registry: {server: quay.io, username: robot, password: secret}
    hosts:
    - {name: azure-prd-01, role: server, address: 10.1.0.1}
    - name: ded-prd-01
      role: agent
      address: 10.1.0.5
      labels: {environment: production, name: ded-prd-01}
      taints: [{key: workload, value: processing, effect: NoSchedule}]   # or "workload=processing:NoSchedule"
    components:
      server: {args: [--insecure-port, "8080"]}
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pilothouse.machinery.validation.names import is_dns1123_subdomain, is_qualified_name, is_valid_label_value

__all__ = ["Cluster", "Host", "Network", "Registry", "Taint", "TopologyError", "load_topology", "parse_topology"]

ROLES = ("server", "agent")
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


class TopologyError(ValueError):
    """The topology file is unreadable or a field is wrong; the message names the file and the field."""


@dataclass(frozen=True)
class Taint:
    key: str
    value: str
    effect: str

    def __str__(self) -> str:
        """kubelet's ``--register-with-taints`` spelling: ``key=value:Effect``."""
        return f"{self.key}={self.value}:{self.effect}" if self.value else f"{self.key}:{self.effect}"


@dataclass(frozen=True)
class Host:
    name: str
    role: str
    address: str
    labels: dict[str, str] = field(default_factory=dict)
    taints: tuple[Taint, ...] = ()


@dataclass(frozen=True)
class Network:
    pod_cidr: str = "10.244.0.0/16"
    service_range: str = "10.96.0.0/12"


@dataclass(frozen=True)
class Registry:
    server: str
    username: str
    password: str
    email: str = ""


@dataclass(frozen=True)
class Cluster:
    name: str
    hosts: tuple[Host, ...]
    network: Network
    registry: Registry | None
    #: extra command-line arguments per component ("server", "agent")
    component_args: dict[str, tuple[str, ...]]

    def host(self, name: str) -> Host:
        for host in self.hosts:
            if host.name == name:
                return host
        names = ", ".join(h.name for h in self.hosts)
        raise TopologyError(f"no host {name!r} in cluster {self.name!r} (hosts: {names})")

    @property
    def server(self) -> Host:
        """The host agents join (the first server: more than one share a datastore, see the README)."""
        return next(h for h in self.hosts if h.role == "server")

    def host_pod_cidr(self, host: Host) -> str:
        """This host's share of the pod CIDR: the /24 (or next smaller prefix) numbered by its place in the file.

        Every agent hands out pod addresses from its own range, so hosts must not overlap.
        """
        network = ipaddress.ip_network(self.network.pod_cidr)
        prefix = max(network.prefixlen + 1, min(24, network.max_prefixlen))
        index = self.hosts.index(host)
        subnets = network.subnets(new_prefix=prefix)
        for number, subnet in enumerate(subnets):
            if number == index:
                return str(subnet)
        raise TopologyError(f"network.podCIDR {network} is too small for {len(self.hosts)} hosts")


def load_topology(path: Path) -> Cluster:
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as error:
        raise TopologyError(f"{path}: {error.strerror}") from error
    except yaml.YAMLError as error:
        raise TopologyError(f"{path}: not YAML: {error}") from error
    return parse_topology(document, str(path))


def _fail(source: str, where: str, message: str) -> TopologyError:
    return TopologyError(f"{source}: {where}: {message}")


def _mapping(value: Any, source: str, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _fail(source, where, f"must be a mapping, not {type(value).__name__}")
    return value


def _string(value: Any, source: str, where: str, *, required: bool = True) -> str:
    if value in (None, "") and not required:
        return ""
    if not isinstance(value, (str, int, float)) or isinstance(value, bool) or value == "":
        raise _fail(source, where, "required" if value in (None, "") else f"must be a string, not {value!r}")
    return str(value)


def _cidr(value: Any, default: str, source: str, where: str) -> str:
    if value is None:
        return default
    try:
        return str(ipaddress.ip_network(str(value)))
    except ValueError as error:
        raise _fail(source, where, f"{value!r} is not a CIDR ({error})") from error


def _labels(value: Any, source: str, where: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    for key, raw in _mapping(value, source, where).items():
        text = "" if raw is None else str(raw)
        problems = is_qualified_name(str(key)) + is_valid_label_value(text)
        if problems:
            raise _fail(source, f"{where}.{key}", "; ".join(problems))
        labels[str(key)] = text
    return labels


def _taint(value: Any, source: str, where: str) -> Taint:
    if isinstance(value, str):  # kubectl taint's spelling: key=value:Effect or key:Effect
        key_value, _, effect = value.rpartition(":")
        key, _, taint_value = key_value.partition("=")
        value = {"key": key, "value": taint_value, "effect": effect}
    spec = _mapping(value, source, where)
    taint = Taint(_string(spec.get("key"), source, f"{where}.key"),
                  _string(spec.get("value"), source, f"{where}.value", required=False),
                  _string(spec.get("effect"), source, f"{where}.effect"))
    if is_qualified_name(taint.key):
        raise _fail(source, f"{where}.key", "; ".join(is_qualified_name(taint.key)))
    if taint.effect not in TAINT_EFFECTS:
        raise _fail(source, f"{where}.effect", f"{taint.effect!r} is not one of {', '.join(TAINT_EFFECTS)}")
    return taint


def _host(value: Any, source: str, where: str) -> Host:
    spec = _mapping(value, source, where)
    name = _string(spec.get("name"), source, f"{where}.name")
    if is_dns1123_subdomain(name):
        raise _fail(source, f"{where}.name", "; ".join(is_dns1123_subdomain(name)))
    role = _string(spec.get("role"), source, f"{where}.role")
    if role not in ROLES:
        raise _fail(source, f"{where}.role", f"{role!r} is not one of {', '.join(ROLES)}")
    address = _string(spec.get("address"), source, f"{where}.address")
    try:
        ipaddress.ip_address(address)
    except ValueError as error:
        raise _fail(source, f"{where}.address", f"{address!r} is not an IP address") from error
    taints = spec.get("taints") or []
    if not isinstance(taints, list):
        raise _fail(source, f"{where}.taints", "must be a list")
    return Host(name, role, address, _labels(spec.get("labels"), source, f"{where}.labels"),
                tuple(_taint(t, source, f"{where}.taints[{i}]") for i, t in enumerate(taints)))


def _registry(value: Any, source: str) -> Registry | None:
    if value is None:
        return None
    spec = _mapping(value, source, "registry")
    return Registry(_string(spec.get("server"), source, "registry.server"),
                    _string(spec.get("username"), source, "registry.username"),
                    _string(spec.get("password"), source, "registry.password"),
                    _string(spec.get("email"), source, "registry.email", required=False))


def _component_args(value: Any, source: str) -> dict[str, tuple[str, ...]]:
    result: dict[str, tuple[str, ...]] = {}
    for component, options in _mapping(value, source, "components").items():
        args = _mapping(options, source, f"components.{component}").get("args") or []
        if not isinstance(args, list):
            raise _fail(source, f"components.{component}.args", "must be a list of arguments")
        result[str(component)] = tuple(str(a) for a in args)
    return result


def parse_topology(document: Any, source: str = "topology") -> Cluster:
    spec = _mapping(document, source, "the document")
    if spec.get("kind") != "Cluster":
        raise _fail(source, "kind", f"must be Cluster, not {spec.get('kind')!r}")
    name = _string(_mapping(spec.get("metadata"), source, "metadata").get("name") or "default", source, "metadata.name")
    raw_hosts = spec.get("hosts")
    if not isinstance(raw_hosts, list) or not raw_hosts:
        raise _fail(source, "hosts", "must be a non-empty list of hosts")
    hosts = tuple(_host(h, source, f"hosts[{i}]") for i, h in enumerate(raw_hosts))
    for attribute in ("name", "address"):
        seen: set[str] = set()
        for index, host in enumerate(hosts):
            if getattr(host, attribute) in seen:
                raise _fail(source, f"hosts[{index}].{attribute}", f"{getattr(host, attribute)!r} is used twice")
            seen.add(getattr(host, attribute))
    if not any(h.role == "server" for h in hosts):
        raise _fail(source, "hosts", "no host has role server (agents need one to join)")
    network = _mapping(spec.get("network"), source, "network")
    defaults = Network()
    return Cluster(
        name=name, hosts=hosts,
        network=Network(pod_cidr=_cidr(network.get("podCIDR"), defaults.pod_cidr, source, "network.podCIDR"),
                        service_range=_cidr(network.get("serviceRange"), defaults.service_range, source,
                                            "network.serviceRange")),
        registry=_registry(spec.get("registry"), source),
        component_args=_component_args(spec.get("components"), source))
