"""Egress NetworkPolicy across ``pilothouse cluster create``'s network-namespace hosts (issue 13): a
default-deny egress policy on a client pod on host A stops it reaching pods on hosts B and C and its
cluster DNS (host A's agent, on the pod's gateway: the policy's input-hook lookup); each allow rule
opens exactly what it names, enforced on the client's host (egress is the source's node's):

- ports with no peers: DNS (53/UDP, 53/TCP) anywhere, and nothing else;
- a podSelector and a port: the policy namespace's web pods on both other hosts, by pod IP and through
  the Service (DNAT comes before the forward hook), not a pod of the same labels in another namespace,
  and not another port;
- a namespaceSelector: that namespace's pods;
- an ipBlock: the one address it names.

Its own ranges and cluster name, so that it can run beside the other cluster tests.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest

from tests.agent.conftest import TEST_IMAGE, wait_for
from tests.cluster.test_seed_cluster import SeedCluster, busybox_cluster
from tests.cluster.test_services_across_hosts import SERVE, _blocked, _fetch, _manifests

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

TOPOLOGY = {
    "apiVersion": "pilothouse.io/v1alpha1", "kind": "Cluster", "metadata": {"name": "egress"},
    "network": {"hostSubnet": "10.41.0.0/24", "podCIDR": "10.42.0.0/16", "serviceRange": "10.43.0.0/16"},
    "hosts": [{"name": "host-a", "role": "server", "address": "10.41.0.1"},
              {"name": "host-b", "role": "agent", "address": "10.41.0.2", "labels": {"tier": "backend"}},
              {"name": "host-c", "role": "agent", "address": "10.41.0.3", "labels": {"tier": "backend"}}],
}
OTHER_NS = "egress-other"
#: busybox nslookup applies no search path
WEB_NAME = "web.default.svc.cluster.local"


@pytest.fixture(scope="module")
def cluster() -> Iterator[SeedCluster]:
    with busybox_cluster(TOPOLOGY, "egress") as handle:
        yield handle


def _peer() -> list[dict[str, Any]]:
    """A pod labelled as the web pods are, in another namespace (labelled team=other), on host-c."""
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": OTHER_NS, "labels": {"team": "other"}}}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "peer", "namespace": OTHER_NS,
                                                           "labels": {"app": "web"}},
           "spec": {"nodeSelector": {"kubernetes.io/hostname": "host-c"}, "terminationGracePeriodSeconds": 1,
                    "containers": [{"name": "peer", "image": TEST_IMAGE, "command": ["sh", "-c", SERVE]}]}}
    return [namespace, pod]


def _egress(name: str, *rules: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": name},
            "spec": {"podSelector": {"matchLabels": {"app": "client"}}, "policyTypes": ["Egress"],
                     "egress": list(rules)}}


def _resolves(cluster: SeedCluster, name: str) -> bool:
    reply = cluster.kubectl("exec", "client", "--", "timeout", "4", "nslookup", name, check=False)
    return reply.returncode == 0 and "Address" in reply.stdout.split("Name:", 1)[-1]


def _reaches(cluster: SeedCluster, url: str) -> bool:
    return _fetch(cluster, url, "client", 3) is not None


def _settled(cluster: SeedCluster, open_urls: list[str], closed_urls: list[str], what: str) -> None:
    """Wait until every ``open_urls`` answers the client, then check every ``closed_urls`` does not."""
    for url in open_urls:
        wait_for(partial(_reaches, cluster, url), 60, f"{what}: {url} open")
    for url in closed_urls:
        assert _blocked(cluster, url, "client"), (what, url)


def test_egress_policy_between_hosts(cluster: SeedCluster) -> None:
    cluster.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                          "items": [*_manifests()["items"], *_peer()]}))
    web = wait_for(lambda: len(cluster.running_pods("app=web")) == 2 and cluster.running_pods("app=web"), 180,
                   "two web replicas running")
    wait_for(lambda: cluster.running_pods("app=client"), 120, "client running")
    peer = wait_for(lambda: [p for p in cluster.json("get", "pods", "-n", OTHER_NS)["items"]
                             if p["status"].get("phase") == "Running"], 120, "peer running")[0]
    by_node = {p["spec"]["nodeName"]: f"http://{p['status']['podIP']}:8080/cgi-bin/who" for p in web}
    assert sorted(by_node) == ["host-b", "host-c"]
    web_b, web_c = by_node["host-b"], by_node["host-c"]
    peer_url = f"http://{peer['status']['podIP']}:8080/cgi-bin/who"
    service_url = f"http://{cluster.json('get', 'service', 'web')['spec']['clusterIP']}/cgi-bin/who"
    everything = [web_b, web_c, peer_url, service_url]
    try:
        _settled(cluster, everything, [], "before any policy")
        wait_for(lambda: _resolves(cluster, WEB_NAME), 30, "DNS before any policy")

        # default deny: no pod on another host, no Service, no DNS
        cluster.kubectl("apply", "-f", "-", input=json.dumps(_egress("client-deny")))
        wait_for(lambda: _blocked(cluster, web_b, "client"), 60, "egress denied")
        _settled(cluster, [], everything, "default deny")
        assert not _resolves(cluster, WEB_NAME), "DNS passed a default-deny egress"

        # ports without peers: DNS to anywhere, and only DNS
        dns = {"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}
        cluster.kubectl("apply", "-f", "-", input=json.dumps(_egress("client-dns", dns)))
        wait_for(lambda: _resolves(cluster, WEB_NAME), 60, "DNS allowed")
        _settled(cluster, [], everything, "DNS only")

        # a podSelector on another port than the pods serve opens nothing
        cluster.kubectl("apply", "-f", "-", input=json.dumps(_egress("client-web", {
            "to": [{"podSelector": {"matchLabels": {"app": "web"}}}], "ports": [{"port": 9090}]})))
        _settled(cluster, [], everything, "web pods on 9090")
        # ... on their port: the policy namespace's web pods on both hosts, and through the Service;
        # not the pod of the same labels in another namespace
        cluster.kubectl("apply", "-f", "-", input=json.dumps(_egress("client-web", {
            "to": [{"podSelector": {"matchLabels": {"app": "web"}}}], "ports": [{"port": 8080}]})))
        _settled(cluster, [web_b, web_c], [peer_url], "web pods on 8080")
        wait_for(partial(_reaches, cluster, service_url), 30, "the Service")

        # a namespaceSelector: the other namespace's pods
        cluster.kubectl("apply", "-f", "-", input=json.dumps(_egress("client-other-ns", {
            "to": [{"namespaceSelector": {"matchLabels": {"team": "other"}}}]})))
        _settled(cluster, [peer_url, web_b], [], "the other namespace")
        cluster.kubectl("delete", "networkpolicy", "client-web", "client-other-ns")
        _settled(cluster, [], [web_b, web_c, peer_url], "namespaceSelector and podSelector rules removed")

        # an ipBlock: host-b's web pod, and not host-c's
        address_b = web_b.split("//")[1].split(":")[0]
        cluster.kubectl("apply", "-f", "-", input=json.dumps(_egress("client-block", {
            "to": [{"ipBlock": {"cidr": f"{address_b}/32"}}], "ports": [{"protocol": "TCP", "port": 8080}]})))
        _settled(cluster, [web_b], [web_c, peer_url], "ipBlock")
        assert _resolves(cluster, WEB_NAME)  # the DNS rule still holds
    finally:
        cluster.kubectl("delete", "networkpolicy", "--all", check=False)
        cluster.kubectl("delete", "namespace", OTHER_NS, "--wait=false", check=False)
