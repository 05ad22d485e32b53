"""The cluster zone's records (pilothouse.components.dns.records), computed from plain objects, against
the answers the Kubernetes DNS specification and CoreDNS's kubernetes plugin give."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import dns.name
import dns.rcode
import dns.rdatatype
import dns.reversename
import pytest

from pilothouse.components.dns.records import Answer, endpoint_name, lookup, reverse_lookup

Object = dict[str, Any]
ZONE = dns.name.from_text("cluster.local.")


def service(name: str, namespace: str = "default", *, cluster_ip: str = "10.96.0.20",
            ports: list[Object] | None = None, **spec: Any) -> Object:
    return {"metadata": {"name": name, "namespace": namespace},
            "spec": {"clusterIP": cluster_ip, "clusterIPs": [cluster_ip] if cluster_ip != "None" else ["None"],
                     "ports": ports if ports is not None else [{"name": "http", "port": 80, "protocol": "TCP"}],
                     **spec}}


def endpoint_slice(service_name: str, endpoints: list[Object], namespace: str = "default",
                   ports: list[Object] | None = None) -> Object:
    return {"metadata": {"name": f"{service_name}-abcde", "namespace": namespace,
                         "labels": {"kubernetes.io/service-name": service_name}},
            "endpoints": endpoints,
            "ports": ports if ports is not None else [{"name": "http", "port": 8080, "protocol": "TCP"}]}


@dataclass
class ListView:
    services: list[Object] = field(default_factory=list)
    endpoint_slices: list[Object] = field(default_factory=list)
    namespaces: set[str] = field(default_factory=lambda: {"default", "kube-system"})
    serial: int = 1700000000
    generation: int = 0

    def namespace_exists(self, namespace: str) -> bool:
        return namespace in self.namespaces

    def service(self, namespace: str, name: str) -> Object | None:
        return next((s for s in self.services
                     if s["metadata"]["namespace"] == namespace and s["metadata"]["name"] == name), None)

    def slices(self, namespace: str, service: str) -> list[Object]:
        return [s for s in self.endpoint_slices if s["metadata"]["namespace"] == namespace
                and s["metadata"]["labels"]["kubernetes.io/service-name"] == service]

    def services_by_ip(self, ip: str) -> list[Object]:
        return [s for s in self.services if ip in s["spec"]["clusterIPs"]]

    def slices_by_ip(self, ip: str) -> list[Object]:
        return [s for s in self.endpoint_slices if any(ip in e["addresses"] for e in s["endpoints"])]


def ask(view: ListView, name: str, rdtype: str = "A") -> Answer:
    return lookup(view, ZONE, dns.name.from_text(name), dns.rdatatype.from_text(rdtype))


def texts(answer: Answer, rdtype: str | None = None) -> list[str]:
    return sorted(rd.to_text() for rrset in answer.answer
                  if rdtype is None or rrset.rdtype == dns.rdatatype.from_text(rdtype) for rd in rrset)


@pytest.fixture
def view() -> ListView:
    ready, not_ready = {"ready": True}, {"ready": False}
    return ListView(
        services=[service("web"), service("dual", cluster_ip="10.96.0.21", clusterIPs=["10.96.0.21", "fd00::21"]),
                  service("db", cluster_ip="None", ports=[{"name": "pg", "port": 5432, "protocol": "TCP"}]),
                  service("ext", cluster_ip="", ports=[], type="ExternalName", externalName="example.org"),
                  service("empty", cluster_ip="None")],
        endpoint_slices=[
            endpoint_slice("web", [{"addresses": ["10.244.0.5"], "conditions": ready}]),
            endpoint_slice("db", [{"addresses": ["10.244.0.7"], "conditions": ready, "hostname": "db-0"},
                                  {"addresses": ["10.244.0.8"], "conditions": ready},
                                  {"addresses": ["10.244.0.9"], "conditions": not_ready}],
                           ports=[{"name": "pg", "port": 5432, "protocol": "TCP"}]),
        ])


def test_cluster_ip_service_a_record(view: ListView) -> None:
    answer = ask(view, "web.default.svc.cluster.local.")
    assert answer.rcode == dns.rcode.NOERROR and texts(answer) == ["10.96.0.20"]
    assert answer.answer[0].ttl == 5  # CoreDNS's default


def test_dual_stack_service_answers_a_and_aaaa(view: ListView) -> None:
    assert texts(ask(view, "dual.default.svc.cluster.local.", "A")) == ["10.96.0.21"]
    assert texts(ask(view, "dual.default.svc.cluster.local.", "AAAA")) == ["fd00::21"]


def test_aaaa_of_ipv4_only_service_is_nodata_with_soa(view: ListView) -> None:
    answer = ask(view, "web.default.svc.cluster.local.", "AAAA")
    assert answer.rcode == dns.rcode.NOERROR and answer.answer == []
    soa = answer.authority[0]
    assert soa.name == ZONE and soa[0].mname.to_text() == "ns.dns.cluster.local."
    assert soa[0].rname.to_text() == "hostmaster.cluster.local." and soa[0].serial == view.serial


def test_missing_names_are_nxdomain_with_soa(view: ListView) -> None:
    for name in ("nope.default.svc.cluster.local.", "web.nons.svc.cluster.local.", "web.default.foo.cluster.local.",
                 "a.b.c.d.web.default.svc.cluster.local."):
        answer = ask(view, name)
        assert answer.rcode == dns.rcode.NXDOMAIN, name
        assert answer.authority[0].rdtype == dns.rdatatype.SOA


def test_intermediate_names_exist(view: ListView) -> None:
    for name in ("svc.cluster.local.", "default.svc.cluster.local.", "cluster.local."):
        answer = ask(view, name)
        assert answer.rcode == dns.rcode.NOERROR and answer.answer == [], name


def test_headless_service_resolves_to_each_ready_endpoint(view: ListView) -> None:
    assert texts(ask(view, "db.default.svc.cluster.local.")) == ["10.244.0.7", "10.244.0.8"]


def test_headless_endpoint_by_hostname_and_by_dashed_address(view: ListView) -> None:
    assert texts(ask(view, "db-0.db.default.svc.cluster.local.")) == ["10.244.0.7"]
    assert texts(ask(view, "10-244-0-8.db.default.svc.cluster.local.")) == ["10.244.0.8"]
    assert ask(view, "10-244-0-9.db.default.svc.cluster.local.").rcode == dns.rcode.NXDOMAIN  # not ready


def test_headless_service_without_endpoints_is_nxdomain(view: ListView) -> None:
    assert ask(view, "empty.default.svc.cluster.local.").rcode == dns.rcode.NXDOMAIN


def test_srv_of_cluster_ip_named_port(view: ListView) -> None:
    answer = ask(view, "_http._tcp.web.default.svc.cluster.local.", "SRV")
    assert texts(answer) == ["0 100 80 web.default.svc.cluster.local."]
    assert [rd.to_text() for rrset in answer.additional for rd in rrset] == ["10.96.0.20"]
    assert ask(view, "_http._udp.web.default.svc.cluster.local.", "SRV").rcode == dns.rcode.NXDOMAIN


def test_srv_of_headless_service_per_endpoint(view: ListView) -> None:
    answer = ask(view, "_pg._tcp.db.default.svc.cluster.local.", "SRV")
    assert texts(answer) == ["0 50 5432 10-244-0-8.db.default.svc.cluster.local.",
                             "0 50 5432 db-0.db.default.svc.cluster.local."]
    additional = {rrset.name.to_text(): rrset[0].to_text() for rrset in answer.additional}
    assert additional == {"db-0.db.default.svc.cluster.local.": "10.244.0.7",
                          "10-244-0-8.db.default.svc.cluster.local.": "10.244.0.8"}


def test_external_name_is_a_cname_to_chase(view: ListView) -> None:
    answer = ask(view, "ext.default.svc.cluster.local.")
    assert texts(answer, "CNAME") == ["example.org."]
    assert answer.chase == dns.name.from_text("example.org.")
    only = ask(view, "ext.default.svc.cluster.local.", "CNAME")
    assert texts(only) == ["example.org."] and only.chase is None


def test_pod_records_by_dashed_address(view: ListView) -> None:
    assert texts(ask(view, "10-244-1-2.default.pod.cluster.local.")) == ["10.244.1.2"]
    assert texts(ask(view, "fd00--5.default.pod.cluster.local.", "AAAA")) == ["fd00::5"]
    assert ask(view, "not-an-ip.default.pod.cluster.local.").rcode == dns.rcode.NXDOMAIN
    assert ask(view, "10-244-1-2.nons.pod.cluster.local.").rcode == dns.rcode.NXDOMAIN


def test_dns_version_txt(view: ListView) -> None:
    assert texts(ask(view, "dns-version.cluster.local.", "TXT")) == ['"1.1.0"']


def test_ptr_of_cluster_ip_and_endpoint(view: ListView) -> None:
    def ptr(ip: str) -> list[str] | None:
        found = reverse_lookup(view, ZONE, dns.reversename.from_address(ip))
        return None if found is None else texts(found)

    assert ptr("10.96.0.20") == ["web.default.svc.cluster.local."]
    assert ptr("10.244.0.7") == ["db-0.db.default.svc.cluster.local."]
    assert ptr("10.244.0.8") == ["10-244-0-8.db.default.svc.cluster.local."]
    assert ptr("192.0.2.1") is None  # not the cluster's: forwarded


def test_endpoint_name_of_ipv6_address() -> None:
    assert endpoint_name({}, "fd00::") == "fd00--0"
    assert endpoint_name({"hostname": "h"}, "10.0.0.1") == "h"
