"""Issue 13's cross-host done-means on ``pilothouse cluster create``'s network-namespace hosts: a client
pod on host A reaches a Service whose pods run on hosts B and C, by its cluster IP (the service proxy
embedded in A's agent, on ``system:kube-proxy`` credentials under RBAC) and by its DNS name (A's agent's
cluster DNS), both backends answer, and pods reach each other across hosts with their own source address
(busybox httpd's CGI ``REMOTE_ADDR``: no masquerade between pods of the cluster's range). A
NetworkPolicy default-deny on the backends blocks a pod on another host, and an allow rule opens
exactly what it names, enforced by the backends' hosts.

A 3-host file written here, with ranges of its own so that it can run beside the seed's cluster test.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from typing import Any

import pytest

from tests.agent.conftest import TEST_IMAGE, wait_for
from tests.cluster.test_seed_cluster import SeedCluster, _load_busybox, created_cluster

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

TOPOLOGY = {
    "apiVersion": "pilothouse.io/v1alpha1", "kind": "Cluster", "metadata": {"name": "xhost"},
    "network": {"hostSubnet": "10.31.0.0/24", "podCIDR": "10.32.0.0/16", "serviceRange": "10.33.0.0/16"},
    "hosts": [{"name": "host-a", "role": "server", "address": "10.31.0.1"},
              {"name": "host-b", "role": "agent", "address": "10.31.0.2", "labels": {"tier": "backend"}},
              {"name": "host-c", "role": "agent", "address": "10.31.0.3", "labels": {"tier": "backend"}}],
}
BACKENDS = ("host-b", "host-c")

#: a CGI answering the pod's own name (baked in at start) and the client's address as httpd saw it
SERVE = ("mkdir -p /www/cgi-bin && printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho %s $REMOTE_ADDR\\n'"
         " \"$(cat /etc/hostname)\" > /www/cgi-bin/who && chmod +x /www/cgi-bin/who && exec httpd -f -p 8080 -h /www")


def _manifests() -> dict[str, Any]:
    web = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {
        "replicas": 2, "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
            "nodeSelector": {"tier": "backend"},
            "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}]}},
            "containers": [{"name": "web", "image": TEST_IMAGE, "command": ["sh", "-c", SERVE],
                            "ports": [{"containerPort": 8080}]}]}}}}
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": {
        "selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}}
    headless = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web-pods"}, "spec": {
        "clusterIP": "None", "selector": {"app": "web"}, "ports": [{"port": 8080}]}}
    client = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client", "labels": {"app": "client"}},
              "spec": {"nodeSelector": {"kubernetes.io/hostname": "host-a"}, "terminationGracePeriodSeconds": 1,
                       "containers": [{"name": "client", "image": TEST_IMAGE, "command": ["sleep", "3600"]}]}}
    return {"apiVersion": "v1", "kind": "List", "items": [web, service, headless, client]}


@pytest.fixture(scope="module")
def cluster() -> Iterator[SeedCluster]:
    with created_cluster(TOPOLOGY, "xhost") as handle:
        for host in handle.layout.cluster().hosts:
            _load_busybox(handle.layout.podman_socket(host))
        yield handle


def _fetch(cluster: SeedCluster, url: str, pod: str = "client", seconds: int = 5) -> tuple[str, str] | None:
    """(backend pod name, the address it saw) for a GET from ``pod``, None when it failed."""
    # busybox's own -T crashes this static build: coreutils-style timeout instead
    reply = cluster.kubectl("exec", pod, "--", "timeout", str(seconds), "wget", "-qO-", url, check=False)
    words = reply.stdout.split()
    return (words[0], words[1].removeprefix("[::ffff:").removesuffix("]")) if reply.returncode == 0 and \
        len(words) == 2 else None


def _until_each_answers(ask: Callable[[], tuple[str, str] | None], backends: Iterable[str], what: str,
                        source: str | None = None) -> None:
    """``ask`` until each backend pod has answered; with ``source``, every answer saw that address."""
    seen: set[str] = set()

    def each() -> bool:
        answer = ask()
        if answer is not None:
            assert answer[0] in backends and source in (None, answer[1]), (what, answer, backends, source)
            seen.add(answer[0])
        return seen == set(backends)

    wait_for(each, 90, f"both backends answering {what}", interval=0.3)


def _answers_from_both(cluster: SeedCluster, url: str, backends: dict[str, str], client_ip: str) -> None:
    """The client pod asks ``url`` until both backends answered, each seeing the client's own address."""
    _until_each_answers(lambda: _fetch(cluster, url), backends, url, source=client_ip)


def _from_here(url: str) -> tuple[str, str] | None:
    with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=3) as response:
        name, address = response.read().decode().split()
        return name, address
    return None


def _web(cluster: SeedCluster) -> list[dict[str, Any]]:
    """The manifests applied (idempotent: each test can run alone), once both web replicas run."""
    cluster.kubectl("apply", "-f", "-", input=json.dumps(_manifests()))
    pods: list[dict[str, Any]] = wait_for(
        lambda: len(cluster.running_pods("app=web")) == 2 and cluster.running_pods("app=web"), 180,
        "two web replicas running")
    return pods


def test_a_service_on_two_hosts_answers_a_pod_on_a_third(cluster: SeedCluster) -> None:
    pods = _web(cluster)
    backends = {p["metadata"]["name"]: p["status"]["podIP"] for p in pods}
    assert sorted(p["spec"]["nodeName"] for p in pods) == list(BACKENDS)
    client = wait_for(lambda: cluster.running_pods("app=client"), 120, "client running")[0]
    assert client["spec"]["nodeName"] == "host-a"
    client_ip = client["status"]["podIP"]
    # each on its own Node's slice of the pod range (node IPAM's)
    for pod in [*pods, client]:
        host_range = cluster.pod_range(pod["spec"]["nodeName"])
        assert ipaddress.IPv4Address(pod["status"]["podIP"]) in host_range, (pod["status"]["podIP"], host_range)

    # pod to pod across hosts (A -> B, A -> C): the backend sees the client pod's own address
    for name, address in backends.items():
        answer = wait_for(partial(_fetch, cluster, f"http://{address}:8080/cgi-bin/who"), 60, f"pod {name}")
        assert answer == (name, client_ip), answer

    # by the Service's cluster IP: A's embedded proxy sends to B's and C's pods, no masquerade in-cluster
    cluster_ip = cluster.json("get", "service", "web")["spec"]["clusterIP"]
    assert cluster_ip.startswith("10.33.")
    _answers_from_both(cluster, f"http://{cluster_ip}/cgi-bin/who", backends, client_ip)

    # by its DNS name, from A's agent's cluster DNS (the pod's resolv.conf), short and full
    resolv = cluster.kubectl("exec", "client", "--", "cat", "/etc/resolv.conf").stdout
    gateway = cluster.pod_range("host-a").network_address + 1
    assert f"nameserver {gateway}" in resolv, resolv
    for name in ("web.default.svc.cluster.local", "web"):
        _answers_from_both(cluster, f"http://{name}/cgi-bin/who", backends, client_ip)
    # a headless Service's name resolves, on host-a, to both pods on the other hosts
    wait_for(lambda: all(a in cluster.kubectl("exec", "client", "--", "nslookup", "web-pods.default.svc.cluster.local",
                                              check=False).stdout for a in backends.values()), 30, "headless lookup")


def test_nodeport_on_every_host_and_the_api_from_a_pod(cluster: SeedCluster) -> None:
    backends = {p["metadata"]["name"] for p in _web(cluster)}
    cluster.kubectl("expose", "deployment", "web", "--name", "web-np", "--type", "NodePort", "--port", "80",
                    "--target-port", "8080")
    port = cluster.json("get", "service", "web-np")["spec"]["ports"][0]["nodePort"]
    # from this machine (outside the cluster) to every host's address, host-a's too, which runs no backend
    for host in cluster.layout.cluster().hosts:
        url = f"http://{host.address}:{port}/cgi-bin/who"
        _until_each_answers(partial(_from_here, url), backends, f"NodePort on {host.name}")

    # a pod on host-b reaches the API server on host-a through the kubernetes Service, by its DNS name: a
    # TCP connection (busybox's TLS client cannot handshake with the server; nc fails on a refused port)
    pod = next(p["metadata"]["name"] for p in cluster.running_pods("app=web") if p["spec"]["nodeName"] == "host-b")
    wait_for(lambda: cluster.kubectl("exec", pod, "--", "nc", "-w", "3", "kubernetes.default.svc", "443",
                                     check=False, input="").returncode == 0, 60, "the API from a pod")
    refused = cluster.kubectl("exec", pod, "--", "nc", "-w", "3", cluster.layout.cluster().server.address, "6444",
                              check=False, input="")
    assert refused.returncode != 0 and "refused" in refused.stderr, refused.stderr


def _policy(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": name},
            "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"], **spec}}


def _blocked(cluster: SeedCluster, url: str, pod: str) -> bool:
    return _fetch(cluster, url, pod, 2) is None


def test_network_policy_between_hosts(cluster: SeedCluster) -> None:
    pods = _web(cluster)
    backends = {p["metadata"]["name"]: p["status"]["podIP"] for p in pods}
    # a second pod on host-a that no allow rule names
    other = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "other", "labels": {"app": "other"}},
             "spec": {"nodeSelector": {"kubernetes.io/hostname": "host-a"}, "terminationGracePeriodSeconds": 1,
                      "containers": [{"name": "other", "image": TEST_IMAGE, "command": ["sleep", "3600"]}]}}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(other))
    client_ip = wait_for(lambda: cluster.running_pods("app=client"), 120, "client running")[0]["status"]["podIP"]
    other_pod = wait_for(lambda: cluster.running_pods("app=other"), 120, "other running")[0]
    assert other_pod["spec"]["nodeName"] == "host-a" and {p["spec"]["nodeName"] for p in pods} == set(BACKENDS)
    urls = {name: f"http://{address}:8080/cgi-bin/who" for name, address in backends.items()}
    cluster_ip = cluster.json("get", "service", "web")["spec"]["clusterIP"]
    try:
        for name, url in urls.items():  # open before any policy, from both pods on host-a
            for pod in ("client", "other"):
                assert wait_for(partial(_fetch, cluster, url, pod), 60, f"{pod} -> {name}")[0] == name

        # default deny for the backends' ingress: nothing from host-a reaches host-b's or host-c's pods
        cluster.kubectl("apply", "-f", "-", input=json.dumps(_policy("web-deny")))
        for name, url in urls.items():
            for pod in ("client", "other"):
                wait_for(partial(_blocked, cluster, url, pod), 60, f"{pod} -> {name} blocked")

        # allow the client pods, on the port the backends serve: the client again, by pod IP and through
        # the Service (its source address kept across hosts is what the backends' hosts match); not other
        allow = _policy("web-allow-clients", ingress=[{
            "from": [{"podSelector": {"matchLabels": {"app": "client"}}}], "ports": [{"port": 8080}]}])
        cluster.kubectl("apply", "-f", "-", input=json.dumps(allow))
        for name, url in urls.items():
            assert wait_for(partial(_fetch, cluster, url), 60, f"client -> {name} allowed") == (name, client_ip)
        _answers_from_both(cluster, f"http://{cluster_ip}/cgi-bin/who", backends, client_ip)
        for url in [*urls.values(), f"http://{cluster_ip}/cgi-bin/who"]:
            assert _blocked(cluster, url, "other"), url

        # an allow rule for another port opens nothing on 8080
        cluster.kubectl("delete", "networkpolicy", "web-allow-clients")
        cluster.kubectl("apply", "-f", "-", input=json.dumps(_policy("web-allow-9090", ingress=[{
            "from": [{"podSelector": {"matchLabels": {"app": "client"}}}], "ports": [{"port": 9090}]}])))
        for name, url in urls.items():
            wait_for(partial(_blocked, cluster, url, "client"), 60, f"client -> {name} blocked again")
    finally:
        cluster.kubectl("delete", "networkpolicy", "--all", check=False)
        cluster.kubectl("delete", "pod", "other", "--wait=false", check=False)
