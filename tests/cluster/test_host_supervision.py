"""What a host of ``pilothouse cluster create`` does for itself, as the seed's systemd units did:

- node IPAM gives each Node its pod range (the controller manager's ``--allocate-node-cidrs`` over the
  topology's pod range); agents route to the other Nodes' ranges themselves (``proto 199`` routes of
  components/podnetwork, direct over the hosts' bridge: the seed's and the cross-host services' tests
  send pod traffic over them), and a server host without an agent routes from its address, so the
  API server reaches pods;
- the host supervisor restarts a podman service that dies (``Restart=always``), and the agent goes on
  running pods through it;
- a simulated-engine host registers its Node with the topology's taints, as a podman host does.

A 3-host file of its own ranges (so it can run beside the other cluster tests): a server without an
agent, a podman agent, a simulated agent with labels and taints.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pilothouse.cli.cluster.layout import Layout
from tests.agent.conftest import TEST_IMAGE, _unix_request, wait_for
from tests.cluster.test_seed_cluster import SeedCluster, _load_busybox, created_cluster

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

TOPOLOGY = {
    "apiVersion": "pilothouse.io/v1alpha1", "kind": "Cluster", "metadata": {"name": "hostsup"},
    "network": {"hostSubnet": "10.41.0.0/24", "podCIDR": "10.42.0.0/16", "podSubnetPrefix": 25,
                "serviceRange": "10.43.0.0/16"},
    "hosts": [{"name": "boss", "role": "server", "address": "10.41.0.1", "agent": False},
              {"name": "worker", "role": "agent", "address": "10.41.0.2"},
              {"name": "sim", "role": "agent", "address": "10.41.0.3", "engine": "simulated",
               "labels": {"kind": "simulated"},
               "taints": ["dedicated=sim:NoSchedule", {"key": "quiet", "effect": "PreferNoSchedule"}]}],
}


@pytest.fixture(scope="module")
def cluster() -> Iterator[SeedCluster]:
    with created_cluster(TOPOLOGY, "hostsup") as handle:
        yield handle


def _routes(layout: Layout, host: str) -> list[dict[str, str]]:
    netns = layout.netns(layout.cluster().host(host))
    out = subprocess.run(["ip", "-n", netns, "-j", "route", "show", "proto", "199"], capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out or "[]")  # type: ignore[no-any-return]


def test_node_ipam_gives_the_ranges_and_the_server_host_routes_them(cluster: SeedCluster) -> None:
    nodes = cluster.nodes()
    assert sorted(nodes) == ["sim", "worker"]
    ranges = {name: cluster.pod_range(name) for name in nodes}  # each inside 10.42.0.0/16
    assert all(r.prefixlen == 25 for r in ranges.values()), ranges  # the file's podSubnetPrefix
    assert ranges["sim"] != ranges["worker"], ranges
    # the agent-less server host routes to the worker's range through its address, directly (the
    # simulated Node's address is no host's: not on the bridge, so not routed); cluster create set
    # up none of it: it is pod-routes' (proto 199), from the Node objects
    wanted = {"dst": str(ranges["worker"]), "gateway": cluster.layout.cluster().host("worker").address}
    routes = wait_for(lambda: [r for r in _routes(cluster.layout, "boss") if {k: r.get(k) for k in wanted} == wanted],
                      60, f"boss's route to {wanted}")
    assert len(_routes(cluster.layout, "boss")) == len(routes), _routes(cluster.layout, "boss")


def test_a_simulated_host_registers_with_its_taints(cluster: SeedCluster) -> None:
    node = cluster.nodes()["sim"]
    assert node["metadata"]["labels"]["kind"] == "simulated"
    assert node["spec"]["taints"] == [{"key": "dedicated", "value": "sim", "effect": "NoSchedule"},
                                      {"key": "quiet", "effect": "PreferNoSchedule"}]


def _podman_service_pid(layout: Layout, host: str) -> int | None:
    socket_path = str(layout.podman_socket(layout.cluster().host(host))).encode()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if args and args[0].endswith(b"podman") and b"service" in args and any(socket_path in a for a in args):
            return int(cmdline.parent.name)
    return None


def _pings(socket_path: Path) -> bool:
    try:
        return _unix_request(socket_path, "GET", "/_ping", timeout=5)[0] == 200
    except OSError:  # not listening yet
        return False


def test_a_podman_service_that_dies_is_restarted(cluster: SeedCluster) -> None:
    layout = cluster.layout
    host = layout.cluster().host("worker")
    killed = _podman_service_pid(layout, "worker")
    assert killed is not None
    os.kill(killed, signal.SIGKILL)
    restarted = wait_for(lambda: (pid := _podman_service_pid(layout, "worker")) not in (None, killed) and pid, 60,
                         "podman service started again")
    assert restarted != killed
    wait_for(lambda: _pings(layout.podman_socket(host)), 60, "podman answering")
    log = layout.log_file(host).read_text(errors="replace")
    assert "podman service exited with -9; restarting in 1s" in log, log[-2000:]

    # the agent runs a new pod through the new service (its image loaded through it too)
    _load_busybox(layout.podman_socket(host))
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "after-restart"},
           "spec": {"nodeName": "worker", "terminationGracePeriodSeconds": 1,
                    "containers": [{"name": "c", "image": TEST_IMAGE,
                                    "command": ["httpd", "-f", "-p", "8080", "-h", "/etc"]}]}}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(pod))
    running = wait_for(lambda: [p for p in cluster.running_pods("!app") if p["metadata"]["name"] == "after-restart"],
                       120, "the pod running after the restart")
    pod_ip = running[0]["status"]["podIP"]
    assert ipaddress.IPv4Address(pod_ip) in cluster.pod_range("worker")
    assert cluster.kubectl("exec", "after-restart", "--", "echo", "hello").stdout.strip() == "hello"
    # the server's host reaches the pod on its own address (the API server's side of a webhook)
    fetch = ("import urllib.request, sys; "
             f"sys.stdout.write(urllib.request.urlopen('http://{pod_ip}:8080/hostname', timeout=5).read().decode())")
    reply = subprocess.run(["ip", "netns", "exec", layout.netns(layout.cluster().host("boss")), sys.executable, "-c",
                            fetch], capture_output=True, text=True, timeout=30)
    assert reply.stdout.strip() == "after-restart", reply.stderr
