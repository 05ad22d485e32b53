"""``pilothouse cluster create -f examples/seed-cluster.yaml``: the seed's five hosts as network-namespace
hosts on this machine, used with the real kubectl, stopped and started, then deleted without a trace.

The topology is the example file with one change: its registry is a real private one (docker-registry
with htpasswd auth) served on the server host's network, 10.1.0.1:5000, whose credentials the file
distributes as every node's ``.dockercfg``. Images: a busybox rootfs imported into each host's own
podman storage, and pushed to that registry for the Job, which must pull it.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from pilothouse.cli.cluster.layout import Layout
from pilothouse.machinery.topology import load_cluster
from tests.agent.conftest import TEST_IMAGE, _busybox_rootfs, _unix_request, wait_for
from tests.conftest import KUBECTL

EXAMPLE = Path(__file__).parents[2] / "examples" / "seed-cluster.yaml"
AZURE = ("azure-prd-02", "azure-prd-03", "azure-prd-04")
REGISTRY = "10.1.0.1:5000"
USER, PASSWORD = "seed", "quay-token"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pilothouse", "cluster", *args], capture_output=True, text=True,
                          timeout=timeout)


@dataclass
class SeedCluster:
    name: str
    state_dir: Path
    kubeconfig: Path
    layout: Layout

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = _cli(*args, self.name, "--state-dir", str(self.state_dir))
        if check:
            assert result.returncode == 0, result.stderr
        return result

    def kubectl(self, *args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "HOME": str(self.state_dir.parent)}
        result = subprocess.run([KUBECTL, *args], capture_output=True, text=True, env=env, timeout=60, input=input)
        if check:
            assert result.returncode == 0, f"kubectl {args}: {result.stderr}"
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json").stdout)

    def nodes(self) -> dict[str, Any]:
        return {n["metadata"]["name"]: n for n in self.json("get", "nodes")["items"]}

    def pod_range(self, node: str) -> ipaddress.IPv4Network:
        """The Node's slice of the pod range, as node IPAM gave it (inside the topology's pod range)."""
        cidr = ipaddress.IPv4Network(self.json("get", "node", node)["spec"]["podCIDR"])
        assert cidr.subnet_of(ipaddress.IPv4Network(self.layout.cluster().network.pod_cidr)), cidr
        return cidr

    def running_pods(self, selector: str) -> list[dict[str, Any]]:
        pods = self.json("get", "pods", "-l", selector)["items"]
        # a pod evicted from a lost node stays Terminating until its node comes back (as in Kubernetes)
        return [p for p in pods if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
                and all(c.get("ready") for c in p["status"].get("containerStatuses") or [{}])]


@contextlib.contextmanager
def created_cluster(document: dict[str, Any], prefix: str) -> Iterator[SeedCluster]:
    """``cluster create`` of ``document`` under a fresh name and state directory, deleted at the end
    (skips where network-namespace hosts with podman cannot run)."""
    for tool in ("podman", "runc", "nsenter", "nft"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    # not under pytest's basetemp (other sessions prune it): the state must outlive the test until delete
    directory = Path(tempfile.mkdtemp(prefix=f"pilothouse-{prefix}-"))
    name = f"{prefix}-{secrets.token_hex(2)}"
    state_dir = directory / "state"
    topology = directory / "cluster.yaml"
    topology.write_text(yaml.safe_dump(document, sort_keys=False))
    started = time.monotonic()
    result = _cli("create", "-f", str(topology), "--name", name, "--state-dir", str(state_dir), "--wait", "300")
    layout = Layout(state_dir / name)
    handle = SeedCluster(name, state_dir, directory / "kubeconfig", layout)
    try:
        assert result.returncode == 0, result.stderr + _logs(layout)
        print(f"cluster create: {time.monotonic() - started:.1f}s")
        handle.kubeconfig.write_text(handle.cli("kubeconfig").stdout)
        yield handle
    finally:
        if layout.topology_path.exists():
            _cli("delete", name, "--state-dir", str(state_dir))
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def busybox_cluster(document: dict[str, Any], prefix: str) -> Iterator[SeedCluster]:
    """:func:`created_cluster` with the test busybox image in every host's podman storage."""
    with created_cluster(document, prefix) as handle:
        for host in handle.layout.cluster().hosts:
            _load_busybox(handle.layout.podman_socket(host))
        yield handle


def _ready(node: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"].get("conditions") or [])


def _topology(directory: Path) -> Path:
    """The example, with its registry replaced by the test's (plain HTTP, hence insecure)."""
    document = yaml.safe_load(EXAMPLE.read_text())
    document["registry"] = {"server": REGISTRY, "username": USER, "password": PASSWORD, "insecure": True}
    path = directory / "seed.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def _load_busybox(socket_path: Path) -> None:
    repo, _, tag = TEST_IMAGE.rpartition(":")
    status, body = _unix_request(socket_path, "POST", f"/images/create?fromSrc=-&repo={urllib.parse.quote(repo)}"
                                 "&tag=latest", _busybox_rootfs(), {"Content-Type": "application/x-tar"})
    assert status == 200, body
    status, body = _unix_request(socket_path, "POST", f"/images/{urllib.parse.quote(repo + ':latest', safe='')}/tag"
                                 f"?repo={urllib.parse.quote(repo)}&tag={tag}")
    assert status in (200, 201), body


def _start_registry(layout: Layout, netns: str, directory: Path) -> subprocess.Popen[bytes]:
    """docker-registry with htpasswd auth inside the server host's namespace, on 10.1.0.1:5000."""
    htpasswd = directory / "htpasswd"
    subprocess.run(["htpasswd", "-Bbc", str(htpasswd), USER, PASSWORD], check=True, capture_output=True)
    config = directory / "registry.yml"
    config.write_text(f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: "
                      f"{directory / 'registry'}\nhttp:\n  addr: {REGISTRY}\n"
                      f"auth:\n  htpasswd:\n    realm: seed\n    path: {htpasswd}\n")
    log = open(directory / "registry.log", "ab")  # noqa: SIM115 - lives with the process
    return subprocess.Popen(["nsenter", f"--net=/var/run/netns/{netns}", "--", "docker-registry", "serve",
                             str(config)], stdout=log, stderr=subprocess.STDOUT)


@pytest.fixture(scope="module")
def seed() -> Iterator[SeedCluster]:
    for tool in ("podman", "runc", "docker-registry", "htpasswd", "nsenter"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    # not under pytest's basetemp: other pytest sessions on this machine prune old basetemps, and a
    # cluster's state must outlive the test until its delete has run
    directory = Path(tempfile.mkdtemp(prefix="pilothouse-seed-"))
    name = f"seed-{secrets.token_hex(2)}"
    state_dir = directory / "state"
    started = time.monotonic()
    result = _cli("create", "-f", str(_topology(directory)), "--name", name, "--state-dir", str(state_dir),
                  "--wait", "300")
    layout = Layout(state_dir / name)
    kubeconfig = directory / "kubeconfig"
    cluster = SeedCluster(name, state_dir, kubeconfig, layout)
    registry: subprocess.Popen[bytes] | None = None
    try:
        assert result.returncode == 0, result.stderr + _logs(layout)
        print(f"cluster create: {time.monotonic() - started:.1f}s\n{result.stderr}")
        kubeconfig.write_text(cluster.cli("kubeconfig").stdout)
        topology = layout.cluster()
        for host in topology.hosts:
            _load_busybox(layout.podman_socket(host))
        registry = _start_registry(layout, layout.netns(topology.server), directory)
        _push_to_registry(layout, topology)
        yield cluster
    finally:
        if registry is not None:
            registry.terminate()
            registry.wait(10)
        if layout.topology_path.exists():
            _cli("delete", name, "--state-dir", str(state_dir))
        shutil.rmtree(directory, ignore_errors=True)


def _push_to_registry(layout: Layout, topology: Any) -> None:
    """Tag the server host's busybox as REGISTRY/test/busybox:v1 and push it with the credentials."""
    socket_path = layout.podman_socket(topology.server)
    repo = f"{REGISTRY}/test/busybox"
    status, body = _unix_request(socket_path, "POST", f"/images/{urllib.parse.quote(TEST_IMAGE, safe='')}/tag"
                                 f"?repo={repo}&tag=v1")
    assert status in (200, 201), body
    auth = base64.urlsafe_b64encode(json.dumps({"username": USER, "password": PASSWORD,
                                                "serveraddress": REGISTRY}).encode()).decode()

    def pushed() -> bool:
        status, body = _unix_request(socket_path, "POST", f"/images/{urllib.parse.quote(repo, safe='')}/push?tag=v1",
                                     headers={"X-Registry-Auth": auth})
        return status == 200 and b'"error"' not in body

    wait_for(pushed, 30, "push to the private registry", interval=1)


def _logs(layout: Layout) -> str:
    text = ""
    for log in sorted(layout.directory.glob("hosts/*/host.log")):
        text += f"\n--- {log}\n" + log.read_text(errors="replace")[-3000:]
    return text


def test_five_nodes_ready_with_the_seeds_labels_and_taints(seed: SeedCluster) -> None:
    nodes = seed.nodes()
    assert sorted(nodes) == ["azure-prd-01", *AZURE, "ded-prd-01"]
    assert all(_ready(n) for n in nodes.values())
    topology = load_cluster(EXAMPLE.read_text())
    for name, node in nodes.items():
        host = topology.host(name)
        assert {k: v for k, v in node["metadata"]["labels"].items() if k in host.labels} == host.labels
        assert [{"key": t["key"], "value": t.get("value", ""), "effect": t["effect"]}
                for t in node["spec"].get("taints") or []] == [
            {"key": t.key, "value": t.value, "effect": t.effect} for t in host.taints]
        # each node is its own host: its address on the seed's network, its own engine
        assert [a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP"] == [host.address]
    listing = _cli("list", "--state-dir", str(seed.state_dir))
    assert f"{seed.name}" in listing.stdout and "running  5/5" in listing.stdout, listing.stdout


DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      nodeSelector: {host: azure}
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - {labelSelector: {matchLabels: {app: web}}, topologyKey: kubernetes.io/hostname}
      containers:
      - name: web
        image: %s
        command: [sh, -c, 'echo web on $(cat /etc/hostname); httpd -f -p 8080 -h /etc']
"""

JOB = """
apiVersion: batch/v1
kind: Job
metadata: {name: crunch}
spec:
  backoffLimit: 0
  template:
    metadata: {labels: {app: crunch}}
    spec:
      restartPolicy: Never
      nodeSelector: {workload: processing}
      tolerations: [{key: workload, operator: Equal, value: processing, effect: NoSchedule}]
      containers:
      - name: crunch
        image: %s/test/busybox:v1
        imagePullPolicy: Always
        command: [sh, -c, 'echo crunched $((6 * 7)); sleep 1']
"""


def test_workloads_land_where_the_seed_wants_them(seed: SeedCluster) -> None:
    seed.kubectl("apply", "-f", "-", input=DEPLOYMENT % TEST_IMAGE)
    pods = wait_for(lambda: len(seed.running_pods("app=web")) == 3 and seed.running_pods("app=web"), 120,
                    "three web replicas running")
    assert sorted(p["spec"]["nodeName"] for p in pods) == list(AZURE)  # one per Azure host
    # each pod's address comes from its Node's slice of the pod range (node IPAM's)
    for pod in pods:
        host_range = seed.pod_range(pod["spec"]["nodeName"])
        assert ipaddress.IPv4Address(pod["status"]["podIP"]) in host_range, (pod["status"]["podIP"], host_range)
    # logs and exec reach a pod on every Azure host; pods reach each other across hosts
    for pod, other in zip(pods, pods[1:] + pods[:1], strict=True):
        name = pod["metadata"]["name"]
        assert "web on" in seed.kubectl("logs", name).stdout
        reply = seed.kubectl("exec", name, "--", "sh", "-c",
                             f"printf 'GET /hostname HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {other['status']['podIP']} 8080")
        assert "200 OK" in reply.stdout, reply.stdout

    # the Job pinned to ded-prd-01 pulls from the private registry with the file's credentials
    seed.kubectl("apply", "-f", "-", input=JOB % REGISTRY)
    wait_for(lambda: seed.json("get", "job", "crunch")["status"].get("succeeded") == 1, 120, "job succeeded")
    job_pod = seed.json("get", "pods", "-l", "app=crunch")["items"][0]
    assert job_pod["spec"]["nodeName"] == "ded-prd-01"
    assert "crunched 42" in seed.kubectl("logs", "job/crunch").stdout


FAILOVER = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: failover}
spec:
  replicas: 2
  selector: {matchLabels: {app: failover}}
  template:
    metadata: {labels: {app: failover}}
    spec:
      nodeSelector: {host: azure}
      terminationGracePeriodSeconds: 1
      tolerations:  # leave a lost node after 5 s instead of the default 300
      - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 5}
      - {key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: 5}
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - {labelSelector: {matchLabels: {app: failover}}, topologyKey: kubernetes.io/hostname}
      containers:
      - {name: main, image: %s, command: [sleep, "3600"]}
"""


def test_a_stopped_host_goes_not_ready_and_its_pods_move(seed: SeedCluster) -> None:
    seed.kubectl("apply", "-f", "-", input=FAILOVER % TEST_IMAGE)
    pods = wait_for(lambda: len(seed.running_pods("app=failover")) == 2 and seed.running_pods("app=failover"), 120,
                    "two failover replicas running")
    lost = pods[0]["spec"]["nodeName"]
    seed.cli("stop", "--host", lost)
    try:
        wait_for(lambda: not _ready(seed.nodes()[lost]), 120, f"{lost} NotReady", interval=2)
        moved = wait_for(lambda: (lambda running: len(running) == 2 and lost not in
                                  {p["spec"]["nodeName"] for p in running} and running)(
                                      seed.running_pods("app=failover")), 120, "replaced on the other hosts",
                         interval=2)
        assert {p["spec"]["nodeName"] for p in moved} <= set(AZURE) - {lost}
    finally:
        seed.cli("start", "--host", lost)
    assert _ready(seed.nodes()[lost])


def test_stop_and_start_keep_the_state(seed: SeedCluster) -> None:
    before = {p["metadata"]["name"] for p in seed.json("get", "pods", "-l", "app=web")["items"]}
    seed.cli("stop")
    listing = _cli("list", "--state-dir", str(seed.state_dir))
    assert "stopped" in listing.stdout, listing.stdout
    topology = seed.layout.cluster()
    for host in topology.hosts:
        assert subprocess.run(["ip", "netns", "pids", seed.layout.netns(host)], capture_output=True,
                              text=True).stdout.split() == [], host.name
    started = seed.cli("start")
    assert all(f"{h}: node Ready" in started.stderr for h in AZURE), started.stderr
    # the same objects, their pods running again on the same hosts
    pods = wait_for(lambda: len(seed.running_pods("app=web")) == 3 and seed.running_pods("app=web"), 180,
                    "web replicas running again")
    assert {p["metadata"]["name"] for p in pods} == before
    name = pods[0]["metadata"]["name"]
    assert seed.kubectl("exec", name, "--", "echo", "back").stdout.strip() == "back"


def test_delete_leaves_nothing(seed: SeedCluster) -> None:
    layout = seed.layout
    topology = layout.cluster()
    run_dir = layout.run_dir(topology.server).parent
    seed.cli("delete")
    namespaces = subprocess.run(["ip", "netns"], capture_output=True, text=True).stdout
    assert f"pilothouse-{seed.name}-" not in namespaces
    links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout
    assert f"ph{layout.key}" not in links
    routes = subprocess.run(["ip", "route", "show", "table", "all"], capture_output=True, text=True).stdout
    assert "10.1.0.0/24" not in routes and "10.2.0.0/16" not in routes and "10.100.0.0/16" not in routes
    mounts = Path("/proc/self/mounts").read_text()
    assert str(seed.state_dir) not in mounts and str(run_dir) not in mounts
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        assert str(layout.directory) not in text and str(run_dir) not in text, text
    assert not layout.directory.exists() and not run_dir.exists()
