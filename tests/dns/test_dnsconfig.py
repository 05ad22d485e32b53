"""A pod's resolv.conf and hostname by dnsPolicy (pilothouse.components.agent.dnsconfig), as the kubelet
forms them (pkg/kubelet/network/dns, GeneratePodHostNameAndDomain)."""

from __future__ import annotations

from typing import Any

from pilothouse.components.agent.dnsconfig import (
    name_files,
    parse_resolv_conf,
    pod_dns_config,
    pod_hostname,
    sandbox_hostname,
)
from pilothouse.components.agent.podnet import hosts_file

HOST = parse_resolv_conf("# host\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nsearch corp.example. lab.example\n"
                         "options edns0 trust-ad\n")


def pod(namespace: str = "team", **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "web-0", "namespace": namespace}, "spec": spec}


def test_cluster_first() -> None:
    config = pod_dns_config(pod(), HOST, ["10.244.0.1"], "cluster.local")
    assert config.render() == ("search team.svc.cluster.local svc.cluster.local cluster.local corp.example "
                               "lab.example\nnameserver 10.244.0.1\noptions ndots:5\n")
    assert config.warnings == []


def test_cluster_first_on_host_network_is_default_and_with_host_net_is_cluster() -> None:
    default = pod_dns_config(pod(hostNetwork=True), HOST, ["10.244.0.1"], "cluster.local")
    assert default.nameservers == ["127.0.0.53", "10.0.0.2"]  # the host's own namespace: loopback works
    with_host_net = pod_dns_config(pod(hostNetwork=True, dnsPolicy="ClusterFirstWithHostNet"), HOST,
                                   ["10.244.0.1"], "cluster.local")
    assert with_host_net.nameservers == ["10.244.0.1"] and with_host_net.options == ["ndots:5"]


def test_default_drops_loopback_resolvers_for_a_pod_network_pod() -> None:
    config = pod_dns_config(pod(dnsPolicy="Default"), HOST, ["10.244.0.1"], "cluster.local")
    assert config.render() == "search corp.example lab.example\nnameserver 10.0.0.2\noptions edns0 trust-ad\n"


def test_no_cluster_dns_falls_back_to_default_with_a_warning() -> None:
    config = pod_dns_config(pod(), HOST, [], "cluster.local")
    assert config.nameservers == ["10.0.0.2"]
    assert [reason for reason, _ in config.warnings] == ["MissingClusterDNS"]


def test_none_with_dns_config() -> None:
    spec = {"dnsPolicy": "None",
            "dnsConfig": {"nameservers": ["1.2.3.4"], "searches": ["ns1.svc.cluster-domain.example"],
                          "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]}}
    assert pod_dns_config(pod(**spec), HOST, ["10.244.0.1"], "cluster.local").render() == (
        "search ns1.svc.cluster-domain.example\nnameserver 1.2.3.4\noptions ndots:2 edns0\n")


def test_dns_config_merges_into_cluster_first() -> None:
    spec = {"dnsConfig": {"nameservers": ["10.244.0.1", "9.9.9.9"], "searches": ["cluster.local", "extra.example"],
                          "options": [{"name": "ndots", "value": "1"}, {"name": "single-request"}]}}
    config = pod_dns_config(pod(**spec), HOST, ["10.244.0.1"], "cluster.local")
    assert config.nameservers == ["10.244.0.1", "9.9.9.9"]
    assert config.searches[-1] == "extra.example" and config.searches.count("cluster.local") == 1
    assert config.options == ["ndots:1", "single-request"]


def test_limits_cut_with_warnings() -> None:
    spec = {"dnsPolicy": "None", "dnsConfig": {"nameservers": ["1.1.1.1", "2.2.2.2", "3.3.3.3", "4.4.4.4"],
                                               "searches": [f"d{i}.example" for i in range(40)]}}
    config = pod_dns_config(pod(**spec), HOST, [], "cluster.local")
    assert config.nameservers == ["1.1.1.1", "2.2.2.2", "3.3.3.3"] and len(config.searches) == 32
    assert [reason for reason, _ in config.warnings] == ["DNSConfigForming", "DNSConfigForming"]


def test_hostname_and_fqdn() -> None:
    assert pod_hostname(pod(), "cluster.local") == ("web-0", "")
    assert pod_hostname(pod(hostname="db-0", subdomain="db"), "cluster.local") == ("db-0", "db.team.svc.cluster.local")
    long = {"metadata": {"name": "x" * 62 + "-yz", "namespace": "n"}, "spec": {}}
    assert pod_hostname(long, "cluster.local")[0] == "x" * 62  # cut to 63, no trailing dash
    hosts = hosts_file("db-0", "10.244.0.9", "db.team.svc.cluster.local",
                       [{"ip": "127.0.0.2", "hostnames": ["foo.local", "bar.local"]}])
    assert "10.244.0.9\tdb-0.db.team.svc.cluster.local\tdb-0\n" in hosts
    assert hosts.endswith("# Entries added by HostAliases.\n127.0.0.2\tfoo.local\tbar.local\n")


def test_set_hostname_as_fqdn() -> None:
    assert sandbox_hostname(pod(hostname="db-0", subdomain="db"), "cluster.local") == "db-0"
    assert sandbox_hostname(pod(hostname="db-0", subdomain="db", setHostnameAsFQDN=True), "cluster.local") \
        == "db-0.db.team.svc.cluster.local"
    assert sandbox_hostname(pod(setHostnameAsFQDN=True), "cluster.local") == "web-0"  # no subdomain: no FQDN


def test_name_files_hosts_only_on_the_bridge() -> None:
    subdomained = pod(hostname="db-0", subdomain="db")
    files, warnings = name_files(subdomained, "10.244.0.9", HOST, ["10.244.0.1"], "cluster.local")
    assert set(files) == {"/etc/resolv.conf", "/etc/hosts"} and warnings == []
    assert "10.244.0.9\tdb-0.db.team.svc.cluster.local\tdb-0\n" in files["/etc/hosts"]
    engine_networked, warned = name_files(pod(), "", HOST, [], "cluster.local")
    assert set(engine_networked) == {"/etc/resolv.conf"} and [r for r, _ in warned] == ["MissingClusterDNS"]
