"""Cluster DNS end to end with real pods under podman: the agent serves DNS on its bridge's gateway and
writes each pod's resolv.conf; busybox's ``nslookup`` inside a pod resolves Services (by short name
through the search path, and fully qualified), a headless Service's pods, an ExternalName, and gets
NXDOMAIN for a missing name; a pod's hostname is its name, or spec.hostname with its FQDN in
/etc/hosts, and a pod reaches another by that FQDN (pod addresses need no service proxy)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest

from tests.agent.conftest import (  # noqa: F401  (fixtures)
    AgentProcess,
    PodmanFixture,
    busybox_image,
    podman,
    start_ready_agent,
    wait_for,
)
from tests.conftest import ServerProcess, start_server_process

NODE = "dns-node"
GATEWAY = "10.244.0.1"  # the agent's pod bridge (default --pod-cidr), where its DNS listens
LOOP = "trap 'exit 0' TERM; while :; do sleep 1; done"


def manifests(image: str) -> str:
    pod = """
apiVersion: v1
kind: Pod
metadata: {{name: {name}, labels: {{app: {app}}}}}
spec:
  nodeName: dns-node
  terminationGracePeriodSeconds: 1
{extra}
  containers:
  - name: main
    image: {image}
    imagePullPolicy: IfNotPresent
    command: ["/bin/sh", "-c", {command}]
---"""
    serve = json.dumps("mkdir -p /www; hostname > /www/index.html; exec httpd -f -p 8080 -h /www")
    return "\n".join([
        pod.format(name="web-1", app="web", extra="", image=image, command=serve),
        pod.format(name="db-0", app="db", extra="  hostname: db-0\n  subdomain: db", image=image, command=serve),
        pod.format(name="client", app="client", extra="", image=image, command=json.dumps(LOOP)),
        pod.format(name="hostnet", app="hostnet", image=image, command=json.dumps(LOOP),
                   extra="  hostNetwork: true\n  dnsPolicy: ClusterFirstWithHostNet"),
        pod.format(name="custom", app="custom", image=image, command=json.dumps(LOOP),
                   extra="  dnsPolicy: None\n  dnsConfig:\n    nameservers: [192.0.2.53]\n"
                         "    searches: [example.test]\n    options: [{name: ndots, value: '2'}]"),
        """
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  clusterIP: None
  selector: {app: db}
  ports: [{name: http, port: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: alias}
spec: {type: ExternalName, externalName: web.default.svc.cluster.local}
"""])


@pytest.fixture(scope="module")
def agent(server: ServerProcess, podman: PodmanFixture, busybox_image: str,  # noqa: F811
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    proc = start_ready_agent(server, podman, tmp_path_factory.mktemp("agent"), NODE)
    server.kubectl("apply", "-f", "-", input=manifests(busybox_image))
    try:
        for name in ("web-1", "db-0", "client", "custom", "hostnet"):
            wait_for(lambda n=name: server.kubectl("get", "pod", n, "-o", "jsonpath={.status.phase}").stdout
                     == "Running", 60, f"{name} Running")
    except AssertionError:
        proc.stop()
        raise AssertionError(proc.log()) from None
    yield proc
    server.kubectl("delete", "pod", "web-1", "db-0", "client", "custom", "hostnet", "--wait=false")
    proc.stop()


def in_pod(server: ServerProcess, pod: str, command: str) -> tuple[int, str]:
    result = server.kubectl("exec", pod, "--", "/bin/sh", "-c", command, check=False)
    return result.returncode, result.stdout + result.stderr


def pod_ip(server: ServerProcess, name: str) -> str:
    return server.kubectl("get", "pod", name, "-o", "jsonpath={.status.podIP}").stdout


def test_resolv_conf_by_dns_policy(server: ServerProcess, agent: AgentProcess) -> None:
    _, resolv = in_pod(server, "client", "cat /etc/resolv.conf")
    lines = resolv.splitlines()
    assert lines[0].startswith("search default.svc.cluster.local svc.cluster.local cluster.local")
    assert lines[1:] == [f"nameserver {GATEWAY}", "options ndots:5"]
    _, custom = in_pod(server, "custom", "cat /etc/resolv.conf")
    assert custom == "search example.test\nnameserver 192.0.2.53\noptions ndots:2\n"
    # the DNS port is open to the bridge even where INPUT drops by default
    for protocol in ("udp", "tcp"):
        assert subprocess.run(["iptables", "-w", "-C", "INPUT", "-i", "pilothouse0", "-d", GATEWAY, "-p", protocol,
                               "--dport", "53", "-j", "ACCEPT"], capture_output=True).returncode == 0


def test_nslookup_service_by_short_and_full_name(server: ServerProcess, agent: AgentProcess) -> None:
    cluster_ip = server.kubectl("get", "service", "web", "-o", "jsonpath={.spec.clusterIP}").stdout
    wait_for(lambda: in_pod(server, "client", "nslookup web.default.svc.cluster.local")[0] == 0, 30, "nslookup")
    code, output = in_pod(server, "client", "nslookup web.default.svc.cluster.local")
    assert code == 0 and f"Address: {cluster_ip}" in output, output
    # a short name through the search path; busybox's nslookup asks every search domain and exits 1
    # when any of them is NXDOMAIN (it does so against CoreDNS too), so the answer is what counts
    _, output = in_pod(server, "client", "nslookup web")
    assert f"Name:\tweb.default.svc.cluster.local\nAddress: {cluster_ip}" in output, output


def test_headless_service_and_pod_fqdn(server: ServerProcess, agent: AgentProcess) -> None:
    db_ip = wait_for(lambda: pod_ip(server, "db-0"), 30, "db-0 address")
    _, headless = wait_for(lambda: (r := in_pod(server, "client", "nslookup db.default.svc.cluster.local"))[0] == 0
                           and db_ip in r[1] and r, 30, "headless service resolves")
    assert f"Address: {db_ip}" in headless
    _, hostname = in_pod(server, "db-0", "hostname")
    assert hostname.strip() == "db-0"
    _, hosts = in_pod(server, "db-0", "cat /etc/hosts")
    assert f"{db_ip}\tdb-0.db.default.svc.cluster.local\tdb-0" in hosts
    # the pod's FQDN reaches it: pod addresses are on the bridge, no service proxy needed
    _, page = wait_for(lambda: (r := in_pod(server, "client",
                                            "timeout 5 wget -qO- http://db-0.db.default.svc.cluster.local:8080/"))[0]
                       == 0 and r, 30, "wget by FQDN")
    assert page.strip() == "db-0"


def test_pod_hostname_is_its_name(server: ServerProcess, agent: AgentProcess) -> None:
    assert in_pod(server, "web-1", "hostname")[1].strip() == "web-1"


def test_external_name_and_nxdomain(server: ServerProcess, agent: AgentProcess) -> None:
    cluster_ip = server.kubectl("get", "service", "web", "-o", "jsonpath={.spec.clusterIP}").stdout
    code, output = in_pod(server, "client", "nslookup alias.default.svc.cluster.local")
    assert code == 0 and "canonical name = web.default.svc.cluster.local" in output and cluster_ip in output, output
    code, output = in_pod(server, "client", "nslookup nothere.default.svc.cluster.local")
    assert code != 0 and "NXDOMAIN" in output, output


def test_host_network_pod_with_cluster_dns(server: ServerProcess, agent: AgentProcess) -> None:
    """ClusterFirstWithHostNet: the cluster DNS from the host's network namespace; the node's hostname."""
    import socket

    _, resolv = in_pod(server, "hostnet", "cat /etc/resolv.conf")
    assert f"nameserver {GATEWAY}\n" in resolv and "options ndots:5" in resolv
    assert in_pod(server, "hostnet", "hostname")[1].strip() == socket.gethostname()
    code, output = in_pod(server, "hostnet", "nslookup web.default.svc.cluster.local")
    assert code == 0 and "Name:\tweb.default.svc.cluster.local" in output, output


def test_second_cluster_on_the_host_gets_a_dns_address_of_its_own(
        server: ServerProcess, agent: AgentProcess, podman: PodmanFixture, busybox_image: str,  # noqa: F811
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """Another cluster's agent on the same bridge finds the gateway's port 53 taken: it serves its DNS on
    an address of the range put on the bridge, its pods resolve its Services there (not the first's)."""
    directory = tmp_path_factory.mktemp("second")
    other = start_server_process(directory / "server")
    second = None
    try:
        second = start_ready_agent(other, podman, directory / "agent", "dns-node-2")
        other.kubectl("create", "service", "clusterip", "other", "--tcp=80:80")
        other.kubectl("apply", "-f", "-", input=f"""
apiVersion: v1
kind: Pod
metadata: {{name: client2}}
spec:
  nodeName: dns-node-2
  terminationGracePeriodSeconds: 1
  containers:
  - {{name: main, image: {busybox_image}, imagePullPolicy: IfNotPresent, command: ["/bin/sh", "-c", "{LOOP}"]}}
""")
        wait_for(lambda: other.kubectl("get", "pod", "client2", "-o", "jsonpath={.status.phase}").stdout
                 == "Running", 60, "client2 Running")
        _, resolv = in_pod(other, "client2", "cat /etc/resolv.conf")
        nameserver = next(line.split()[1] for line in resolv.splitlines() if line.startswith("nameserver"))
        assert nameserver != GATEWAY and nameserver.startswith("10.244."), resolv
        cluster_ip = other.kubectl("get", "service", "other", "-o", "jsonpath={.spec.clusterIP}").stdout
        code, output = in_pod(other, "client2", "nslookup other.default.svc.cluster.local")
        assert code == 0 and f"Address: {cluster_ip}" in output, output
        code, output = in_pod(other, "client2", "nslookup web.default.svc.cluster.local")  # the first cluster's
        assert code != 0 and "NXDOMAIN" in output, output
        other.kubectl("delete", "pod", "client2", "--wait=false")
    finally:
        if second is not None:
            second.stop()
        other.stop()
    # the agent gave its address back when it stopped
    assert f"inet {nameserver}/32" not in subprocess.run(["ip", "addr", "show", "pilothouse0"], capture_output=True,
                                                          text=True).stdout
