"""The records of the cluster zone: a pure function of Services, EndpointSlices and Namespaces.

What the Kubernetes DNS specification (kubernetes/dns ``docs/specification.md``, schema 1.1.0) asks
for, answered the way CoreDNS's ``kubernetes`` plugin answers it (the cluster DNS of every
kubeadm cluster; ``plugin/kubernetes/kubernetes.go`` and ``plugin/backend_lookup.go``):

- ``<svc>.<ns>.svc.<zone>``: A/AAAA of a ClusterIP Service's cluster IPs; of each ready endpoint of a
  headless Service; a CNAME to an ExternalName Service's name.
- ``<host>.<svc>.<ns>.svc.<zone>``: one endpoint, named by its ``hostname`` (a pod whose
  ``spec.subdomain`` is the Service) or else its address with dashes.
- ``_<port>._<proto>.<svc>.<ns>.svc.<zone>`` SRV, priority 0, weight ``floor(100 / records)``,
  targets the Service name (ClusterIP) or each endpoint's name (headless), addresses in additional.
- ``a-b-c-d.<ns>.pod.<zone>``: the address itself (CoreDNS's ``pods insecure``, kubeadm's default).
- PTR of a cluster IP (``<svc>.<ns>.svc.<zone>``) and of an endpoint address.
- ``dns-version.<zone>`` TXT ``1.1.0``.

A name that does not exist is NXDOMAIN and a name without records of the asked type NODATA, both with
the zone's SOA in the authority section (``ns.dns.<zone>``, ``hostmaster.<zone>``, serial = time of
the last change seen), every answer authoritative with CoreDNS's default TTL of 5 seconds.
Nothing here does I/O: the server (``server.py``) asks a :class:`ClusterView` built on informers,
and the unit tests one built on lists.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

import dns.exception
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.reversename
import dns.rrset

from pilothouse.machinery.meta import Object

__all__ = ["TTL", "Answer", "ClusterView", "endpoint_name", "lookup", "reverse_lookup", "soa"]


#: CoreDNS's ``kubernetes`` plugin default (``ttl`` option): clients re-ask soon after a change.
TTL = 5
SCHEMA_VERSION = "1.1.0"
_IN = dns.rdataclass.IN
_A, _AAAA, _SRV, _CNAME, _PTR, _TXT, _SOA = (dns.rdatatype.A, dns.rdatatype.AAAA, dns.rdatatype.SRV,
                                             dns.rdatatype.CNAME, dns.rdatatype.PTR, dns.rdatatype.TXT,
                                             dns.rdatatype.SOA)


class ClusterView(Protocol):
    """The objects the records are computed from (informer caches in the server)."""

    #: unix time of the last change seen: the SOA serial, as CoreDNS's ``Modified``
    serial: int
    #: counts every change: answers computed at one generation hold until the next
    generation: int

    def namespace_exists(self, namespace: str) -> bool: ...

    def service(self, namespace: str, name: str) -> Object | None: ...

    def slices(self, namespace: str, service: str) -> list[Object]: ...

    def services_by_ip(self, ip: str) -> list[Object]: ...

    def slices_by_ip(self, ip: str) -> list[Object]: ...


@dataclass
class Answer:
    """What to put in a response: rcode and sections; ``chase`` is an out-of-zone CNAME target the
    server resolves (upstream) and appends, as CoreDNS does for ExternalName Services."""

    rcode: dns.rcode.Rcode = dns.rcode.NOERROR
    answer: list[dns.rrset.RRset] = field(default_factory=list)
    additional: list[dns.rrset.RRset] = field(default_factory=list)
    authority: list[dns.rrset.RRset] = field(default_factory=list)
    chase: dns.name.Name | None = None


@dataclass(frozen=True)
class _Target:
    """One match (CoreDNS's ``msg.Service``): an address or an external name, a port (-1: none),
    and the name an SRV record points at."""

    host: str
    port: int
    target: dns.name.Name


def _rrset(name: dns.name.Name, rdtype: dns.rdatatype.RdataType, texts: Iterable[str]) -> dns.rrset.RRset:
    return dns.rrset.from_rdata_list(name, TTL, [dns.rdata.from_text(_IN, rdtype, text) for text in texts])


def soa(zone: dns.name.Name, serial: int) -> dns.rrset.RRset:
    """CoreDNS's SOA for the zone (``plugin.SOA``): refresh 7200, retry 1800, expire 86400."""
    text = (f"{dns.name.Name(('ns', 'dns')).concatenate(zone)} {dns.name.Name(('hostmaster',)).concatenate(zone)} "
            f"{serial & 0xFFFFFFFF} 7200 1800 86400 {TTL}")
    return _rrset(zone, _SOA, [text])


def endpoint_name(endpoint: Object, address: str) -> str:
    """An endpoint's label: its hostname, else its address with dashes (CoreDNS's endpointHostname)."""
    if endpoint.get("hostname"):
        return str(endpoint["hostname"])
    if "." in address:
        return address.replace(".", "-")
    dashed = address.replace(":", "-")
    return dashed + "0" if dashed.endswith("-") else dashed


def _ready(endpoint: Object, service: Object) -> bool:
    ready = (endpoint.get("conditions") or {}).get("ready")
    return ready is None or bool(ready) or bool((service.get("spec") or {}).get("publishNotReadyAddresses"))


def _match(wanted: str, value: str) -> bool:
    """CoreDNS's matchPortAndProtocol: an empty request label is a wildcard."""
    return not wanted or wanted.lower() == value.lower()


def _is_headless(service: Object) -> bool:
    return (service.get("spec") or {}).get("clusterIP") == "None"


def _service_targets(view: ClusterView, service: Object, zone: dns.name.Name, endpoint: str, port: str,
                     protocol: str) -> list[_Target] | None:
    """CoreDNS's findServices for one Service: None when nothing matches (NXDOMAIN)."""
    metadata, spec = service["metadata"], service.get("spec") or {}
    base = dns.name.Name((metadata["name"], metadata["namespace"], "svc")).concatenate(zone)
    if spec.get("type") == "ExternalName":
        if endpoint or port or protocol or not spec.get("externalName"):
            return None
        return [_Target(str(spec["externalName"]).rstrip("."), -1, base)]
    found: list[_Target] = []
    if _is_headless(service) or endpoint:
        for slice_ in view.slices(metadata["namespace"], metadata["name"]):
            # a slice without ports stands for "no port" (-1), which gives addresses but no SRV
            ports = slice_.get("ports") or [{"port": -1}]
            for item in slice_.get("endpoints") or ():
                if not _ready(item, service):
                    continue
                for address in item.get("addresses") or ():
                    name = endpoint_name(item, address)
                    if endpoint and endpoint.lower() != name.lower():
                        continue
                    for entry in ports:
                        if _match(port, entry.get("name") or "") and _match(protocol, entry.get("protocol") or "TCP"):
                            number = entry.get("port")
                            found.append(_Target(address, -1 if number is None else int(number),
                                                 dns.name.Name((name,)).concatenate(base)))
        return found or None
    matched = False
    for entry in spec.get("ports") or ():
        if not (_match(port, entry.get("name") or "") and _match(protocol, entry.get("protocol") or "TCP")):
            continue
        matched = True
        for ip in spec.get("clusterIPs") or [spec.get("clusterIP")]:
            if ip and ip != "None":
                found.append(_Target(ip, int(entry["port"]), base))
    return found if matched else None


def _family(host: str) -> dns.rdatatype.RdataType | None:
    try:
        return _A if ipaddress.ip_address(host).version == 4 else _AAAA
    except ValueError:
        return None


def _address_records(name: dns.name.Name, targets: list[_Target], rdtype: dns.rdatatype.RdataType,
                     answer: Answer) -> None:
    hosts = list(dict.fromkeys(t.host for t in targets if _family(t.host) == rdtype))
    if hosts:
        answer.answer.append(_rrset(name, rdtype, hosts))
    external = next((t.host for t in targets if _family(t.host) is None), None)
    if external is not None:
        cname = dns.name.from_text(external)
        answer.answer.append(_rrset(name, _CNAME, [cname.to_text()]))
        answer.chase = cname


def _srv_records(name: dns.name.Name, targets: list[_Target], answer: Answer) -> None:
    with_port = list(dict.fromkeys((t.target, t.port, t.host) for t in targets if t.port != -1))
    if not with_port:
        return
    weight = max(1, math.floor(100 / len(with_port)))  # CoreDNS: one priority, equal shares
    seen: set[dns.name.Name] = set()
    texts = []
    for target, port, host in with_port:
        srv_target = dns.name.from_text(host) if _family(host) is None else target
        texts.append(f"0 {weight} {port} {srv_target}")
        rdtype = _family(host)
        if rdtype is not None and target not in seen:
            seen.add(target)
            answer.additional.append(_rrset(target, rdtype, [host]))
    answer.answer.append(_rrset(name, _SRV, list(dict.fromkeys(texts))))


def _labels(qname: dns.name.Name, zone: dns.name.Name) -> list[str]:
    return [label.decode(errors="replace").lower() for label in qname.relativize(zone).labels]


def lookup(view: ClusterView, zone: dns.name.Name, qname: dns.name.Name,
           qtype: dns.rdatatype.RdataType) -> Answer:
    """The answer for ``qname`` (inside ``zone``) and ``qtype``, as CoreDNS's kubernetes plugin gives it."""
    answer = _lookup(view, zone, qname, qtype)
    if answer is None:
        return Answer(dns.rcode.NXDOMAIN, authority=[soa(zone, view.serial)])
    if not answer.answer:
        answer.authority.append(soa(zone, view.serial))  # NODATA
    return answer


def _lookup(view: ClusterView, zone: dns.name.Name, qname: dns.name.Name,
            qtype: dns.rdatatype.RdataType) -> Answer | None:
    """None for NXDOMAIN; an Answer without records for NODATA."""
    labels = _labels(qname, zone)
    if not labels:
        return Answer(answer=[soa(zone, view.serial)] if qtype == _SOA else [])
    if labels == ["dns-version"]:
        return Answer(answer=[_rrset(qname, _TXT, [f'"{SCHEMA_VERSION}"'])] if qtype == _TXT else [])
    kind, rest = labels[-1], labels[:-1]
    if kind not in ("svc", "pod"):
        return None
    if not rest:
        return Answer()
    namespace, rest = rest[-1], rest[:-1]
    if not view.namespace_exists(namespace):
        return None
    if not rest:
        return Answer()
    if kind == "pod":
        return _pod(qname, rest, qtype)
    name, rest = rest[-1], rest[:-1]
    endpoint = port = protocol = ""
    if len(rest) == 1:
        endpoint = rest[0]
    elif len(rest) == 2:
        port, protocol = (label[1:] if label.startswith("_") else label for label in rest)
    elif rest:
        return None  # too long to mean anything
    service = view.service(namespace, name)
    targets = _service_targets(view, service, zone, endpoint, port, protocol) if service else None
    if targets is None:
        return None
    answer = Answer()
    if qtype in (_A, _AAAA, _CNAME):
        _address_records(qname, targets, _A if qtype == _CNAME else qtype, answer)
        if qtype == _CNAME:  # only the alias itself
            answer.answer = [rrset for rrset in answer.answer if rrset.rdtype == _CNAME]
            answer.chase = None
    elif qtype == _SRV:
        _srv_records(qname, targets, answer)
    return answer


def _pod(qname: dns.name.Name, rest: list[str], qtype: dns.rdatatype.RdataType) -> Answer | None:
    """``a-b-c-d.<ns>.pod``: any well-formed address (CoreDNS ``pods insecure``)."""
    if len(rest) != 1:
        return None
    label = rest[0]
    text = label.replace("-", ".") if label.count("-") == 3 and "--" not in label else label.replace("-", ":")
    rdtype = _family(text)
    if rdtype is None:
        return None
    address = str(ipaddress.ip_address(text))
    return Answer(answer=[_rrset(qname, rdtype, [address])] if qtype == rdtype else [])


def reverse_lookup(view: ClusterView, zone: dns.name.Name, qname: dns.name.Name) -> Answer | None:
    """PTR of a cluster IP or an endpoint address; None when the address is not the cluster's (the
    server then forwards it, as kubeadm's Corefile does with ``fallthrough in-addr.arpa ip6.arpa``)."""
    try:
        ip = str(ipaddress.ip_address(dns.reversename.to_address(qname)))
    except (dns.exception.SyntaxError, ValueError):
        return None
    for service in view.services_by_ip(ip):
        metadata = service["metadata"]
        target = dns.name.Name((metadata["name"], metadata["namespace"], "svc")).concatenate(zone)
        return Answer(answer=[_rrset(qname, _PTR, [target.to_text()])])
    targets = []
    for slice_ in view.slices_by_ip(ip):
        metadata = slice_["metadata"]
        service = (metadata.get("labels") or {}).get("kubernetes.io/service-name", "")
        for item in slice_.get("endpoints") or ():
            if ip in (item.get("addresses") or ()):
                base = dns.name.Name((endpoint_name(item, ip), service, metadata["namespace"], "svc"))
                targets.append(base.concatenate(zone).to_text())
    if not targets:
        return None
    return Answer(answer=[_rrset(qname, _PTR, list(dict.fromkeys(targets)))])

