"""The cluster topology file: ``kind: Cluster`` (``pilothouse.io/v1alpha1``), one file for a cluster's hosts.

The one reader of the format: ``cluster create`` and ``cloud-config``/``install`` both use it.

A user describes the hosts (name, role, address, labels, taints, engine), the network (the subnet the
hosts share, the pod range, the service range), the private registries' credentials and extra flags
per component; ``pilothouse cluster create`` builds it on this machine and ``cloud-config`` renders it
for real hosts. This module only reads and checks the file (pure, no I/O): the shape through a JSON
schema (jsonschema, already installed with kubernetes-validate, gives the path of every error), then
what a schema cannot say (addresses inside the subnet, one server, no duplicates, ranges that do not
overlap), every message naming the field as ``hosts[2].address``.

Each host has its own slice of the pod range (``network.podSubnetPrefix``, a /24 by default, as
kube-controller-manager's ``--node-cidr-mask-size``), in the order the hosts are listed: ``cloud-config``
gives it to the agent (``--pod-cidr``); ``cluster create`` leaves it to node IPAM instead (the
controller manager's ``--allocate-node-cidrs`` with the same range and prefix), which hands slices out
in the order Nodes register.

``controlPlane`` says how the server host runs the API server (with its scheduler and controller
manager): ``processes`` (the default; the host's supervisor keeps ``pilothouse server`` running, as
systemd does on the seed's hosts) or ``static-pods`` (kubeadm's way: a static pod of the server host's
agent, which needs the agent and a real engine there).
"""

from __future__ import annotations

import base64
import ipaddress
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from pilothouse.machinery.validation.names import (
    is_dns1123_label,
    is_dns1123_subdomain,
    is_qualified_name,
    is_valid_label_value,
)

__all__ = ["API_VERSION", "CONTROL_PLANES", "ENGINES", "KIND", "ROLES", "STATIC_PODS", "Cluster", "Host",
           "Network", "Registry", "Taint",
           "TopologyError", "bridge_address", "load_cluster", "load_cluster_file",
           "parse_cluster"]

API_VERSION = "pilothouse.io/v1alpha1"
KIND = "Cluster"
ROLES = ("server", "agent")
#: podman: a podman service of the host's own (own storage, own netns); simulated: nodes without containers
ENGINES = ("podman", "simulated")
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
COMPONENTS = ("server", "agent")
STATIC_PODS = "static-pods"
CONTROL_PLANES = ("processes", STATIC_PODS)

_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_TAINT = {"oneOf": [
    {"type": "string"},  # kubelet's --register-with-taints item: key=value:Effect
    {"type": "object", "additionalProperties": False, "required": ["key", "effect"],
     "properties": {"key": {"type": "string"}, "value": {"type": "string"}, "effect": {"type": "string"}}},
]}
_REGISTRY = {"type": "object", "additionalProperties": False, "required": ["server"],
             "properties": {"server": {"type": "string"}, "username": {"type": "string"},
                            "password": {"type": "string"}, "auth": {"type": "string"},
                            "email": {"type": "string"}, "insecure": {"type": "boolean"}}}
SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["apiVersion", "kind", "hosts"],
    "properties": {
        "apiVersion": {"const": API_VERSION},
        "kind": {"const": KIND},
        "metadata": {"type": "object", "properties": {"name": {"type": "string"}}},
        "controlPlane": {"enum": list(CONTROL_PLANES)},
        "network": {"type": "object", "additionalProperties": False, "properties": {
            "hostSubnet": {"type": "string"}, "podCIDR": {"type": "string"},
            "podSubnetPrefix": {"type": "integer", "minimum": 8, "maximum": 30},
            "serviceRange": {"type": "string"}}},
        "hosts": {"type": "array", "minItems": 1, "items": {
            "type": "object", "additionalProperties": False, "required": ["name", "address"],
            "properties": {
                "name": {"type": "string"}, "role": {"enum": list(ROLES)}, "address": {"type": "string"},
                "labels": _STRING_MAP, "taints": {"type": "array", "items": _TAINT},
                "engine": {"enum": list(ENGINES)},
                "agent": {"type": "boolean"}}}},
        "registry": _REGISTRY,  # one, or several:
        "registries": {"type": "array", "items": _REGISTRY},
        "components": {"type": "object", "additionalProperties": False, "properties": {
            name: {"type": "object", "additionalProperties": False,
                   "properties": {"args": {"type": "array", "items": {"type": "string"}}}}
            for name in COMPONENTS}},
    },
}

#: What a file may leave out.
DEFAULT_HOST_SUBNET = "10.1.0.0/24"
DEFAULT_POD_CIDR = "10.244.0.0/16"
DEFAULT_SERVICE_RANGE = "10.96.0.0/12"
DEFAULT_POD_SUBNET_PREFIX = 24


class TopologyError(ValueError):
    """The file is not a valid ``kind: Cluster`` (the message lists every problem, one per line), or a
    command cannot use it as it is (one message)."""

    def __init__(self, problems: list[str] | str, source: str = "") -> None:
        self.problems = [problems] if isinstance(problems, str) else problems
        text = problems if isinstance(problems, str) else \
            "invalid cluster file:\n" + "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{source}: {text}" if source else text)


@dataclass(frozen=True)
class Taint:
    key: str
    value: str
    effect: str

    def __str__(self) -> str:
        """kubelet's ``--register-with-taints`` spelling."""
        return f"{self.key}={self.value}:{self.effect}" if self.value else f"{self.key}:{self.effect}"

    def as_object(self) -> dict[str, str]:
        return {"key": self.key, **({"value": self.value} if self.value else {}), "effect": self.effect}


@dataclass(frozen=True)
class Host:
    name: str
    role: str
    address: str
    labels: dict[str, str]
    taints: tuple[Taint, ...]
    engine: str
    #: this host's slice of the cluster's pod range (cloud-config's; cluster create uses node IPAM)
    pod_cidr: str
    #: whether a node agent runs here (a server host runs one unless ``agent: false``)
    runs_agent: bool


@dataclass(frozen=True)
class Network:
    host_subnet: str
    pod_cidr: str
    service_range: str
    pod_subnet_prefix: int

    @property
    def prefix(self) -> int:
        return ipaddress.IPv4Network(self.host_subnet).prefixlen


@dataclass(frozen=True)
class Registry:
    server: str
    auth: str  # base64 of user:password, the .dockercfg's field
    email: str = ""
    insecure: bool = False


@dataclass(frozen=True)
class Cluster:
    name: str
    network: Network
    hosts: tuple[Host, ...]
    registries: tuple[Registry, ...] = ()
    #: extra flags per component (``server``, ``agent``), appended to the ones pilothouse passes
    component_args: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: "processes" or "static-pods" (see the module's docstring)
    control_plane: str = "processes"

    @property
    def server(self) -> Host:
        return next(h for h in self.hosts if h.role == "server")

    def host(self, name: str) -> Host:
        for host in self.hosts:
            if host.name == name:
                return host
        names = ", ".join(h.name for h in self.hosts)
        raise TopologyError(f"no host {name!r} in cluster {self.name!r} (hosts: {names})")

    def dockercfg(self) -> str:
        """The registries' credentials in the seed's legacy ``.dockercfg`` format."""
        return json.dumps({r.server: {"auth": r.auth, "email": r.email} for r in self.registries if r.auth},
                          indent=2)


def load_cluster_file(path: Path, name: str | None = None) -> Cluster:
    """:func:`load_cluster` of a file; an unreadable one is a TopologyError naming it."""
    try:
        return load_cluster(path.read_text(), name)
    except OSError as error:
        raise TopologyError(f"{path}: {error.strerror}") from None
    except TopologyError as error:
        raise TopologyError(error.problems, source=str(path)) from None


def load_cluster(text: str, name: str | None = None) -> Cluster:
    """Parse a topology file's YAML text; ``name`` (``--name``) overrides ``metadata.name``."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise TopologyError([f"not YAML: {error}"]) from None
    return parse_cluster(document, name)


def _path(error: jsonschema.ValidationError) -> str:
    text = ""
    for part in error.absolute_path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def parse_cluster(document: Any, name: str | None = None) -> Cluster:
    validator = jsonschema.Draft202012Validator(SCHEMA)
    errors = sorted(validator.iter_errors(document), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        raise TopologyError([f"{_path(e)}: {e.message}" for e in errors])
    problems: list[str] = []
    name = name or (document.get("metadata") or {}).get("name") or ""
    if not name:
        problems.append("metadata.name: required (or give --name)")
    elif is_dns1123_label(name) or len(name) > 40:  # it names network namespaces and files
        problems.append(f"metadata.name: {name!r} must be a lowercase DNS label of at most 40 characters")
    network = _network(document.get("network") or {}, problems)
    hosts = _hosts(document["hosts"], network, problems)
    control_plane = document.get("controlPlane", "processes")
    if control_plane == STATIC_PODS:
        problems.extend(f"controlPlane: static-pods needs an agent on the server host {h.name!r} with engine "
                        f"podman (its static pods run the control plane)"
                        for h in hosts if h.role == "server" and not (h.runs_agent and h.engine == "podman"))
    registries = tuple(_registry(spec, f"registries[{index}]", problems)
                       for index, spec in enumerate(document.get("registries") or []))
    if "registry" in document:
        registries = (_registry(document["registry"], "registry", problems), *registries)
    if problems:
        raise TopologyError(problems)
    components = {key: tuple(value.get("args") or ()) for key, value in (document.get("components") or {}).items()}
    return Cluster(name=name, network=network, hosts=hosts, registries=registries, component_args=components,
                   control_plane=control_plane)


def _cidr(value: str, path: str, problems: list[str]) -> ipaddress.IPv4Network | None:
    try:
        return ipaddress.IPv4Network(value)
    except ValueError as error:
        problems.append(f"{path}: {value!r} is not an IPv4 CIDR ({error})")
        return None


def _network(spec: dict[str, Any], problems: list[str]) -> Network:
    network = Network(host_subnet=spec.get("hostSubnet", DEFAULT_HOST_SUBNET),
                      pod_cidr=spec.get("podCIDR", DEFAULT_POD_CIDR),
                      service_range=spec.get("serviceRange", DEFAULT_SERVICE_RANGE),
                      pod_subnet_prefix=spec.get("podSubnetPrefix", DEFAULT_POD_SUBNET_PREFIX))
    parsed = {key: _cidr(value, f"network.{key}", problems) for key, value in
              (("hostSubnet", network.host_subnet), ("podCIDR", network.pod_cidr),
               ("serviceRange", network.service_range))}
    hosts, pods = parsed["hostSubnet"], parsed["podCIDR"]
    if hosts is not None and hosts.prefixlen > 29:
        problems.append(f"network.hostSubnet: {hosts} is too small for hosts and the bridge (at most a /29)")
    if pods is not None and network.pod_subnet_prefix < pods.prefixlen:
        problems.append(f"network.podSubnetPrefix: /{network.pod_subnet_prefix} is larger than "
                        f"network.podCIDR {pods}")
    names = list(parsed)
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            a, b = parsed[first], parsed[second]
            if a is not None and b is not None and a.overlaps(b):
                problems.append(f"network.{second}: {b} overlaps network.{first} {a}")
    return network


def _taint(item: Any, path: str, problems: list[str]) -> Taint | None:
    if isinstance(item, str):
        head, _, effect = item.rpartition(":")
        key, _, value = head.partition("=")
    else:
        key, value, effect = item["key"], item.get("value", ""), item["effect"]
    found = [f"key {key!r}: {m}" for m in is_qualified_name(key)] if key else ["key: required"]
    found += [f"value {value!r}: {m}" for m in is_valid_label_value(value)] if value else []
    if effect not in TAINT_EFFECTS:
        found.append(f"effect {effect!r}: must be one of {', '.join(TAINT_EFFECTS)}")
    problems.extend(f"{path}: {message}" for message in found)
    return None if found else Taint(key, value, effect)


def _hosts(specs: list[dict[str, Any]], network: Network, problems: list[str]) -> tuple[Host, ...]:
    try:
        subnet = ipaddress.IPv4Network(network.host_subnet)
        slices = ipaddress.IPv4Network(network.pod_cidr).subnets(new_prefix=network.pod_subnet_prefix)
    except ValueError:
        return ()  # reported by _network
    hosts: list[Host] = []
    seen_names: set[str] = set()
    seen_addresses: set[str] = set()
    for index, spec in enumerate(specs):
        path = f"hosts[{index}]"
        name, role = spec["name"], spec.get("role", "agent")
        if is_dns1123_subdomain(name):
            problems.append(f"{path}.name: {name!r} must be a lowercase DNS subdomain (it is the node's name)")
        if name in seen_names:
            problems.append(f"{path}.name: {name!r} is listed twice")
        seen_names.add(name)
        address = spec["address"]
        try:
            parsed = ipaddress.IPv4Address(address)
        except ValueError:
            problems.append(f"{path}.address: {address!r} is not an IPv4 address")
        else:
            if parsed not in subnet or parsed in (subnet.network_address, subnet.broadcast_address, _bridge_ip(subnet)):
                problems.append(f"{path}.address: {address} must be a host address of network.hostSubnet {subnet} "
                                f"other than {_bridge_ip(subnet)} (the bridge's)")
            if address in seen_addresses:
                problems.append(f"{path}.address: {address} is used twice")
            seen_addresses.add(address)
        labels = spec.get("labels") or {}
        for key, value in labels.items():
            problems.extend(f"{path}.labels[{key}]: {m}" for m in is_qualified_name(key))
            problems.extend(f"{path}.labels[{key}]: {m}" for m in is_valid_label_value(value))
        taints = [_taint(t, f"{path}.taints[{i}]", problems) for i, t in enumerate(spec.get("taints") or [])]
        pod_cidr = next(slices, None)
        if pod_cidr is None:
            problems.append(f"{path}: network.podCIDR {network.pod_cidr} has no /{network.pod_subnet_prefix} "
                            "left for this host")
        hosts.append(Host(name=name, role=role, address=address, labels=dict(labels),
                          taints=tuple(t for t in taints if t is not None), engine=spec.get("engine", "podman"),
                          pod_cidr=str(pod_cidr), runs_agent=spec.get("agent", True)))
    servers = [h.name for h in hosts if h.role == "server"]
    if len(servers) != 1:
        problems.append(f"hosts: exactly one host must have role server (found {len(servers)}: {servers})")
    return tuple(hosts)


def _bridge_ip(subnet: ipaddress.IPv4Network) -> ipaddress.IPv4Address:
    """The root namespace's address on the cluster's bridge: the subnet's last host address."""
    return subnet.broadcast_address - 1


def _registry(spec: dict[str, Any], path: str, problems: list[str]) -> Registry:
    auth = spec.get("auth", "")
    if "username" in spec or "password" in spec:
        if auth or not ("username" in spec and "password" in spec):
            problems.append(f"{path}: give username and password, or auth (base64 of user:password), not both")
        auth = base64.b64encode(f"{spec.get('username', '')}:{spec.get('password', '')}".encode()).decode()
    return Registry(server=spec["server"], auth=auth, email=spec.get("email", ""),
                    insecure=spec.get("insecure", False))


def bridge_address(network: Network) -> str:
    """Where the machine's root namespace sits on the hosts' subnet (see :func:`_bridge_ip`)."""
    return str(_bridge_ip(ipaddress.IPv4Network(network.host_subnet)))

