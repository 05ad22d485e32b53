"""A real ``pilothouse dns`` process against a real API server, objects written with the real kubectl,
questions asked with dnspython over UDP and TCP: every record kind, NXDOMAIN and NODATA with the SOA,
forwarding to a loopback upstream with its cache, SERVFAIL when the upstream is gone."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.reversename
import pytest

from tests.conftest import ServerProcess, free_port, start_server_process, terminate
from tests.dns.upstream import LoopbackUpstream

OBJECTS = """
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  clusterIP: 10.96.100.10
  ports: [{name: http, port: 80, protocol: TCP}, {name: dns, port: 53, protocol: UDP}]
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop}
spec:
  clusterIP: None
  ports: [{name: pg, port: 5432}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: db-1
  namespace: shop
  labels: {kubernetes.io/service-name: db}
addressType: IPv4
ports: [{name: pg, port: 5432, protocol: TCP}]
endpoints:
- {addresses: [10.244.9.7], hostname: db-0, conditions: {ready: true}}
- {addresses: [10.244.9.8], conditions: {ready: true}}
- {addresses: [10.244.9.9], conditions: {ready: false}}
---
apiVersion: v1
kind: Service
metadata: {name: search, namespace: shop}
spec: {type: ExternalName, externalName: www.example.org}
"""


def ask(port: int, name: str, rdtype: str = "A", *, tcp: bool = False, timeout: float = 3) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype)
    if tcp:
        return dns.query.tcp(query, "127.0.0.1", port=port, timeout=timeout)
    return dns.query.udp(query, "127.0.0.1", port=port, timeout=timeout)


def rdatas(response: dns.message.Message, rdtype: str | None = None) -> list[str]:
    return sorted(rd.to_text() for rrset in response.answer
                  if rdtype is None or rrset.rdtype == dns.rdatatype.from_text(rdtype) for rd in rrset)


def start_dns(server: ServerProcess, upstream_port: int, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "pilothouse", "dns", "--kubeconfig", str(server.kubeconfig),
             "--listen", f"127.0.0.1:{port}", "--upstream", f"127.0.0.1:{upstream_port}"],
            stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # listening, and the informers synced (no more SERVFAIL)
        try:
            if ask(port, "kubernetes.default.svc.cluster.local.", timeout=0.5).rcode() == dns.rcode.NOERROR:
                return process, port
        except (dns.exception.Timeout, OSError):
            pass
        assert process.poll() is None, log.read_text()
        time.sleep(0.1)
    raise AssertionError(f"cluster DNS did not answer:\n{log.read_text()}")


@pytest.fixture(scope="module")
def upstream() -> Iterator[LoopbackUpstream]:
    records = {"www.example.org.": {"A": ["192.0.2.80"]}, "api.example.org.": {"A": ["192.0.2.81"]},
               "10.2.0.192.in-addr.arpa.": {"PTR": ["upstream-ptr.example.org."]}}
    with LoopbackUpstream(records, ttl=60) as running:
        yield running


@pytest.fixture(scope="module")
def dns_port(server: ServerProcess, upstream: LoopbackUpstream,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    server.kubectl("apply", "-f", "-", input=OBJECTS)
    process, port = start_dns(server, upstream.port, tmp_path_factory.mktemp("dns") / "dns.log")
    deadline = time.monotonic() + 10
    while not rdatas(ask(port, "db.shop.svc.cluster.local.")) and time.monotonic() < deadline:
        time.sleep(0.1)
    yield port
    terminate(process)


def test_cluster_ip_service_over_udp_and_tcp(dns_port: int) -> None:
    for tcp in (False, True):
        response = ask(dns_port, "web.shop.svc.cluster.local.", tcp=tcp)
        assert response.rcode() == dns.rcode.NOERROR
        assert response.flags & dns.flags.AA and response.flags & dns.flags.RA
        assert rdatas(response) == ["10.96.100.10"] and response.answer[0].ttl == 5


def test_kubernetes_service_of_the_cluster(server: ServerProcess, dns_port: int) -> None:
    cluster_ip = server.kubectl("get", "service", "kubernetes", "-o", "jsonpath={.spec.clusterIP}").stdout
    assert rdatas(ask(dns_port, "kubernetes.default.svc.cluster.local.")) == [cluster_ip]


def test_srv_for_named_ports(dns_port: int) -> None:
    response = ask(dns_port, "_http._tcp.web.shop.svc.cluster.local.", "SRV")
    assert rdatas(response) == ["0 100 80 web.shop.svc.cluster.local."]
    assert [rd.to_text() for rrset in response.additional for rd in rrset] == ["10.96.100.10"]
    assert rdatas(ask(dns_port, "_dns._udp.web.shop.svc.cluster.local.", "SRV")) == [
        "0 100 53 web.shop.svc.cluster.local."]
    headless = ask(dns_port, "_pg._tcp.db.shop.svc.cluster.local.", "SRV")
    assert rdatas(headless) == ["0 50 5432 10-244-9-8.db.shop.svc.cluster.local.",
                                "0 50 5432 db-0.db.shop.svc.cluster.local."]


def test_headless_service_per_ready_endpoint_and_by_hostname(dns_port: int) -> None:
    assert rdatas(ask(dns_port, "db.shop.svc.cluster.local.")) == ["10.244.9.7", "10.244.9.8"]
    assert rdatas(ask(dns_port, "db-0.db.shop.svc.cluster.local.")) == ["10.244.9.7"]
    # in a random order each time (CoreDNS's loadbalance), so clients taking the first address spread
    firsts = {ask(dns_port, "db.shop.svc.cluster.local.").answer[0][0].to_text() for _ in range(40)}
    assert firsts == {"10.244.9.7", "10.244.9.8"}


def test_external_name_cname_chased_upstream(dns_port: int) -> None:
    response = ask(dns_port, "search.shop.svc.cluster.local.")
    assert rdatas(response, "CNAME") == ["www.example.org."]
    assert rdatas(response, "A") == ["192.0.2.80"]


def test_pod_record(dns_port: int) -> None:
    assert rdatas(ask(dns_port, "10-244-3-4.shop.pod.cluster.local.")) == ["10.244.3.4"]


def test_ptr_records(dns_port: int) -> None:
    assert rdatas(ask(dns_port, dns.reversename.from_address("10.96.100.10").to_text(), "PTR")) == [
        "web.shop.svc.cluster.local."]
    assert rdatas(ask(dns_port, dns.reversename.from_address("10.244.9.7").to_text(), "PTR")) == [
        "db-0.db.shop.svc.cluster.local."]
    # not a cluster address: forwarded
    assert rdatas(ask(dns_port, "10.2.0.192.in-addr.arpa.", "PTR")) == ["upstream-ptr.example.org."]


def test_nxdomain_and_nodata_carry_the_soa(dns_port: int) -> None:
    missing = ask(dns_port, "nothere.shop.svc.cluster.local.")
    assert missing.rcode() == dns.rcode.NXDOMAIN and missing.flags & dns.flags.AA
    soa = missing.authority[0]
    assert soa.name.to_text() == "cluster.local." and soa[0].mname.to_text() == "ns.dns.cluster.local."
    assert (soa[0].refresh, soa[0].retry, soa[0].expire, soa[0].minimum) == (7200, 1800, 86400, 5)
    assert ask(dns_port, "web.nonamespace.svc.cluster.local.").rcode() == dns.rcode.NXDOMAIN
    nodata = ask(dns_port, "web.shop.svc.cluster.local.", "AAAA")
    assert nodata.rcode() == dns.rcode.NOERROR and not nodata.answer and nodata.authority[0].rdtype == dns.rdatatype.SOA


def test_changes_follow_the_watch(server: ServerProcess, dns_port: int) -> None:
    server.kubectl("create", "service", "clusterip", "late", "-n", "shop", "--tcp=8080:8080")
    deadline = time.monotonic() + 5
    while not rdatas(ask(dns_port, "late.shop.svc.cluster.local.")) and time.monotonic() < deadline:
        time.sleep(0.05)
    cluster_ip = server.kubectl("get", "service", "late", "-n", "shop", "-o", "jsonpath={.spec.clusterIP}").stdout
    assert rdatas(ask(dns_port, "late.shop.svc.cluster.local.")) == [cluster_ip]
    server.kubectl("delete", "service", "late", "-n", "shop")
    while ask(dns_port, "late.shop.svc.cluster.local.").rcode() != dns.rcode.NXDOMAIN and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ask(dns_port, "late.shop.svc.cluster.local.").rcode() == dns.rcode.NXDOMAIN


def test_forwarding_with_cache(dns_port: int, upstream: LoopbackUpstream) -> None:
    first = ask(dns_port, "api.example.org.")
    assert rdatas(first) == ["192.0.2.81"] and not first.flags & dns.flags.AA
    assert first.answer[0].ttl == 30  # capped at kubeadm's "cache 30"
    time.sleep(1.1)
    second = ask(dns_port, "api.example.org.", tcp=True)
    assert rdatas(second) == ["192.0.2.81"] and second.answer[0].ttl < 30  # counted down
    assert upstream.asked[("api.example.org.", "A")] == 1
    missing = ask(dns_port, "missing.example.org.")
    assert missing.rcode() == dns.rcode.NXDOMAIN and missing.authority[0].name.to_text() == "example.org."
    ask(dns_port, "missing.example.org.")
    assert upstream.asked[("missing.example.org.", "A")] == 1  # the denial is cached too (its SOA minimum)


def test_servfail_when_no_upstream_answers(server: ServerProcess, tmp_path: Path) -> None:
    gone = LoopbackUpstream({})
    gone.stop()  # a port nobody answers on
    process, port = start_dns(server, gone.port, tmp_path / "dns.log")
    try:
        response = ask(port, "www.example.org.", timeout=10)
        assert response.rcode() == dns.rcode.SERVFAIL
        assert rdatas(ask(port, "web.shop.svc.cluster.local.")) == ["10.96.100.10"]  # cluster names unaffected
    finally:
        terminate(process)


def test_node_credentials_suffice_under_node_rbac(tmp_path: Path, upstream: LoopbackUpstream) -> None:
    """The agent serves DNS as its node (system:node:<name> in system:nodes): under --secure with the
    Node and RBAC authorizers it may list and watch what the DNS needs (the system:coredns role)."""
    secure = start_server_process(tmp_path / "secure", secure=True, extra=("--authorization-mode", "Node,RBAC"))
    try:
        node_config = tmp_path / "node.conf"
        node_config.write_text(subprocess.run(
            [sys.executable, "-m", "pilothouse", "kubeconfig", "--data-dir", str(secure.data_dir),
             "--user", "system:node:dns-node", "--group", "system:nodes"],
            check=True, capture_output=True, text=True).stdout)
        secure.kubectl("create", "service", "clusterip", "guarded", "--tcp=80:80")
        cluster_ip = secure.kubectl("get", "service", "guarded", "-o", "jsonpath={.spec.clusterIP}").stdout
        as_node = ServerProcess(secure.url, secure.data_dir, node_config, secure.process, secure.port)
        process, port = start_dns(as_node, upstream.port, tmp_path / "dns.log")
        try:
            assert rdatas(ask(port, "guarded.default.svc.cluster.local.")) == [cluster_ip]
        finally:
            terminate(process)
    finally:
        secure.stop()
