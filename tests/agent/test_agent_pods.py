"""The node agent with real containers under podman: one server and one agent for the module.

Pods use a busybox image built from busybox-static; the registry test pulls from a local registry
with htpasswd auth through an imagePullSecret of the seed's ``.dockercfg`` kind.
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.agent.conftest import (
    AgentProcess,
    PodmanFixture,
    RegistryFixture,
    get_pod,
    ready_pods,
    start_ready_agent,
    wait_for,
)
from tests.conftest import ServerProcess

NODE = "agent-node"
STATIC_MANIFEST = """
apiVersion: v1
kind: Pod
metadata: {name: static-web, namespace: default, labels: {tier: static}}
spec:
  containers:
  - name: web
    image: IMAGE
    imagePullPolicy: IfNotPresent
    command: ["/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]
"""


@pytest.fixture(scope="module")
def agent(server: ServerProcess, podman: PodmanFixture, busybox_image: str,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    directory = tmp_path_factory.mktemp("agent")
    manifests = directory / "manifests"
    manifests.mkdir()
    (manifests / "web.yaml").write_text(STATIC_MANIFEST.replace("IMAGE", busybox_image))
    proc = start_ready_agent(server, podman, directory, NODE, manifests_dir=str(manifests))
    yield proc
    proc.stop()


def container_status(pod: dict[str, Any] | None, index: int = 0) -> dict[str, Any]:
    statuses = ((pod or {}).get("status") or {}).get("containerStatuses") or []
    return statuses[index] if len(statuses) > index else {}


def pod_yaml(name: str, image: str, command: str, *, extra: str = "", container_extra: str = "",
             grace: int = 5) -> str:
    return f"""
apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  nodeName: {NODE}
  terminationGracePeriodSeconds: {grace}
{extra}
  containers:
  - name: main
    image: {image}
    imagePullPolicy: IfNotPresent
    command: ["/bin/sh", "-c", {json.dumps(command)}]
{container_extra}
"""


LOOP = "trap 'exit 0' TERM; while :; do sleep 1; done"


def running(server: ServerProcess, name: str) -> dict[str, Any] | None:
    pod = get_pod(server, name)
    return pod if pod and pod["status"].get("phase") == "Running" and \
        "running" in container_status(pod).get("state", {}) else None


def test_node_registered_with_lease(server: ServerProcess, agent: AgentProcess) -> None:
    node = json.loads(server.kubectl("get", "node", NODE, "-o", "json").stdout)
    assert node["metadata"]["labels"]["kubernetes.io/hostname"] == NODE
    assert node["metadata"]["labels"]["kubernetes.io/os"] == "linux"
    info = node["status"]["nodeInfo"]
    assert info["kubeletVersion"] == "v1.32.0"
    assert info["containerRuntimeVersion"].startswith("podman://")
    assert int(node["status"]["capacity"]["cpu"]) >= 1 and node["status"]["capacity"]["pods"] == "110"
    assert {a["type"] for a in node["status"]["addresses"]} == {"InternalIP", "Hostname"}
    assert node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"] == agent.options["port"]
    reasons = {c["type"]: c["reason"] for c in node["status"]["conditions"]}
    assert reasons["Ready"] == "KubeletReady" and reasons["MemoryPressure"] == "KubeletHasSufficientMemory"
    lease = json.loads(server.kubectl("get", "lease", NODE, "-n", "kube-node-lease", "-o", "json").stdout)
    assert lease["spec"]["holderIdentity"] == NODE and lease["spec"]["leaseDurationSeconds"] == 40


def test_deployment_runs(server: ServerProcess, agent: AgentProcess, podman: PodmanFixture,
                         busybox_image: str) -> None:
    server.kubectl("create", "deployment", "web", f"--image={busybox_image}", "--replicas=2", "--",
                   "/bin/sh", "-c", LOOP)

    pods = wait_for(lambda: ready_pods(server, "app=web", 2), 40, "2 web pods Running")
    for pod in pods:
        containers = podman.containers(f"io.kubernetes.pod.uid={pod['metadata']['uid']}")
        assert {c["State"] for c in containers} == {"running"}  # sandbox + app container
        assert len(containers) == 2
    server.kubectl("delete", "deployment", "web")


def test_env_and_volumes(server: ServerProcess, agent: AgentProcess, busybox_image: str) -> None:
    server.kubectl("create", "configmap", "cfg", "--from-literal=color=blue")
    server.kubectl("apply", "-f", "-", input=pod_yaml(
        "envpod", busybox_image, "cat /cfg/color; echo; echo $MY_NAME $MY_NS $COLOR $(COLOR)x; " + LOOP,
        extra="  volumes:\n  - name: cfg\n    configMap: {name: cfg}",
        container_extra="    env:\n    - {name: MY_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}\n"
                        "    - {name: MY_NS, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}\n"
                        "    - {name: COLOR, valueFrom: {configMapKeyRef: {name: cfg, key: color}}}\n"
                        "    volumeMounts: [{name: cfg, mountPath: /cfg}]"))
    pod = wait_for(lambda: running(server, "envpod"), 30, "envpod Running")
    assert pod["status"]["qosClass"] == "BestEffort"
    server.kubectl("delete", "pod", "envpod", "--wait=false")


def test_kill_restarts_with_crash_backoff(server: ServerProcess, agent: AgentProcess, podman: PodmanFixture,
                                          busybox_image: str) -> None:
    server.kubectl("apply", "-f", "-", input=pod_yaml("crasher", busybox_image, LOOP))
    pod = wait_for(lambda: running(server, "crasher"), 30, "crasher Running")
    uid = pod["metadata"]["uid"]

    def kill() -> None:
        for container in podman.containers(f"io.kubernetes.pod.uid={uid}"):
            if container["Labels"].get("io.pilothouse.role") == "container" and container["State"] == "running":
                podman.cli("kill", container["Id"])
    kill()
    pod = wait_for(lambda: (p := running(server, "crasher")) and container_status(p)["restartCount"] == 1 and p,
                   10, "restarted once")
    assert container_status(pod)["lastState"]["terminated"]["exitCode"] == 137
    kill()

    def backing_off() -> dict[str, Any] | None:
        status = container_status(get_pod(server, "crasher"))
        waiting = status.get("state", {}).get("waiting") or {}
        return status if waiting.get("reason") == "CrashLoopBackOff" else None
    status = wait_for(backing_off, 10, "CrashLoopBackOff")
    assert status["state"]["waiting"]["message"] == \
        f"back-off 10s restarting failed container=main pod=crasher_default({uid})"
    # after the 10 s back-off it runs again, with restartCount 2
    wait_for(lambda: (p := running(server, "crasher")) and container_status(p)["restartCount"] == 2, 20,
             "restarted after back-off")
    server.kubectl("delete", "pod", "crasher", "--wait=false")


def test_liveness_failure_restarts(server: ServerProcess, agent: AgentProcess, busybox_image: str) -> None:
    probe = ("    livenessProbe:\n      exec: {command: [cat, /tmp/healthy]}\n"
             "      periodSeconds: 1\n      failureThreshold: 2")
    server.kubectl("apply", "-f", "-", input=pod_yaml(
        "unhealthy", busybox_image, "touch /tmp/healthy; sleep 2; rm /tmp/healthy; " + LOOP,
        container_extra=probe, grace=1))
    wait_for(lambda: container_status(get_pod(server, "unhealthy")).get("restartCount", 0) >= 1, 25,
             "liveness restart")
    server.kubectl("delete", "pod", "unhealthy", "--wait=false")


def test_readiness_gates_ready(server: ServerProcess, agent: AgentProcess, podman: PodmanFixture,
                               busybox_image: str) -> None:
    probe = ("    readinessProbe:\n      exec: {command: [cat, /tmp/ready]}\n"
             "      periodSeconds: 1\n      failureThreshold: 1")
    server.kubectl("apply", "-f", "-", input=pod_yaml("gated", busybox_image, LOOP, container_extra=probe))
    pod = wait_for(lambda: running(server, "gated"), 30, "gated Running")
    time.sleep(1.5)
    pod = get_pod(server, "gated")
    ready = {c["type"]: c for c in pod["status"]["conditions"]}["Ready"]
    assert ready["status"] == "False" and ready["reason"] == "ContainersNotReady"
    container_id = container_status(pod)["containerID"].split("://")[1]
    podman.cli("exec", container_id, "touch", "/tmp/ready")

    def is_ready() -> bool:
        conditions = {c["type"]: c["status"] for c in get_pod(server, "gated")["status"]["conditions"]}
        return conditions["Ready"] == "True" and conditions["ContainersReady"] == "True"
    wait_for(is_ready, 10, "Ready after the probe passes")
    server.kubectl("delete", "pod", "gated", "--wait=false")


def test_pods_reach_each_other_on_their_addresses(server: ServerProcess, agent: AgentProcess,
                                                  busybox_image: str) -> None:
    """The agent's pod network: each pod its own address on the node's bridge, pod to pod traffic,
    and the pod's own name in its /etc/hosts (as the kubelet writes it)."""
    server.kubectl("apply", "-f", "-", input=pod_yaml(
        "server-pod", busybox_image,
        "mkdir -p /www; echo from-server-pod > /www/index.html; exec httpd -f -p 8080 -h /www"))
    server.kubectl("apply", "-f", "-", input=pod_yaml("client-pod", busybox_image, LOOP))
    target = wait_for(lambda: running(server, "server-pod"), 30, "server-pod Running")
    client = wait_for(lambda: running(server, "client-pod"), 30, "client-pod Running")
    address = target["status"]["podIP"]
    assert address and address != client["status"]["podIP"]
    assert target["status"]["podIPs"] == [{"ip": address}]
    # busybox-static's wget crashes with -T here: bound it with timeout(1) instead
    fetched = wait_for(lambda: server.kubectl("exec", "client-pod", "--", "timeout", "5", "wget", "-qO-",
                                              f"http://{address}:8080/index.html", check=False).stdout, 20,
                       "wget from the other pod")
    assert fetched == "from-server-pod\n"
    hosts = server.kubectl("exec", "server-pod", "--", "cat", "/etc/hosts").stdout
    assert f"{address}\tserver-pod" in hosts
    # forwarding on the bridge is accepted even where FORWARD drops by default (dockerd's policy)
    for direction in ("-i", "-o"):
        assert subprocess.run(["iptables", "-w", "-C", "FORWARD", direction, "pilothouse0", "-j", "ACCEPT"],
                              capture_output=True).returncode == 0
    server.kubectl("delete", "pod", "server-pod", "client-pod", "--wait=false")


def test_memory_limit_oomkilled(server: ServerProcess, agent: AgentProcess, busybox_image: str) -> None:
    server.kubectl("apply", "-f", "-", input=pod_yaml(
        "hog", busybox_image, "x=aaaaaaaaaaaaaaaa; while :; do x=$x$x; done",
        extra="  restartPolicy: Never", container_extra="    resources: {limits: {memory: 20Mi}}"))

    def terminated() -> dict[str, Any] | None:
        state = container_status(get_pod(server, "hog")).get("state", {})
        return state.get("terminated")
    result = wait_for(terminated, 30, "hog terminated")
    assert result["exitCode"] == 137
    assert result["reason"] == "OOMKilled"
    assert get_pod(server, "hog")["status"]["phase"] == "Failed"
    server.kubectl("delete", "pod", "hog", "--wait=false")


def test_pull_secret_wrong_password_backs_off(server: ServerProcess, agent: AgentProcess,
                                              registry: RegistryFixture) -> None:
    for name, password in (("bad-cred", "wrong-password"), ("good-cred", None)):
        data = base64.b64encode(registry.dockercfg(password).encode()).decode()
        server.kubectl("apply", "-f", "-", input=json.dumps({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "type": "kubernetes.io/dockercfg",
            "data": {".dockercfg": data}}))
    server.kubectl("apply", "-f", "-", input=pod_yaml(
        "badpull", registry.image, LOOP, extra="  imagePullSecrets: [{name: bad-cred}]"))

    def waiting_reason(name: str, reason: str) -> dict[str, Any] | None:
        waiting = container_status(get_pod(server, name)).get("state", {}).get("waiting") or {}
        return waiting if waiting.get("reason") == reason else None
    err = wait_for(lambda: waiting_reason("badpull", "ErrImagePull") or waiting_reason("badpull", "ImagePullBackOff"),
                   30, "pull error")
    assert "unauthorized" in err["message"].lower() or "authentication" in err["message"].lower()
    backoff = wait_for(lambda: waiting_reason("badpull", "ImagePullBackOff"), 15, "ImagePullBackOff")
    assert registry.image in backoff["message"]
    server.kubectl("apply", "-f", "-", input=pod_yaml(
        "goodpull", registry.image, LOOP, extra="  imagePullSecrets: [{name: good-cred}]"))
    wait_for(lambda: running(server, "goodpull"), 40, "pulled with the right password")
    server.kubectl("delete", "pod", "badpull", "goodpull", "--wait=false")


def test_delete_stops_containers_within_grace(server: ServerProcess, agent: AgentProcess, podman: PodmanFixture,
                                              busybox_image: str) -> None:
    # sh as PID 1 ignores SIGTERM without a trap: the agent must SIGKILL at the end of the grace period
    server.kubectl("apply", "-f", "-", input=pod_yaml("stubborn", busybox_image, "while :; do sleep 1; done",
                                                      grace=3))
    pod = wait_for(lambda: running(server, "stubborn"), 30, "stubborn Running")
    uid = pod["metadata"]["uid"]
    started = time.monotonic()
    server.kubectl("delete", "pod", "stubborn", "--wait=false")
    # Graceful deletion: the pod stays, marked, until its agent has stopped the containers.
    terminating = get_pod(server, "stubborn")
    assert terminating is not None and terminating["metadata"]["deletionTimestamp"]
    assert terminating["metadata"]["deletionGracePeriodSeconds"] == 3

    def stopped() -> bool:
        return not [c for c in podman.containers(f"io.kubernetes.pod.uid={uid}") if c["State"] == "running"]
    wait_for(stopped, 12, "containers stopped", interval=0.1)
    elapsed = time.monotonic() - started
    # SIGTERM is ignored by PID 1 here: the container dies by SIGKILL at the end of its 3 s grace
    assert 2.0 <= elapsed <= 8.0, elapsed
    wait_for(lambda: get_pod(server, "stubborn") is None, 10, "pod removed from the API")


def test_run_interactive_and_remove(server: ServerProcess, agent: AgentProcess, busybox_image: str) -> None:
    """``kubectl run -i --rm``: attach, the pod finishes when its process exits, kubectl deletes it."""
    result = server.kubectl("run", "-i", "--rm", "--restart=Never", "oneshot", f"--image={busybox_image}",
                            "--command", "--", "sh", "-c", "read line; echo got:$line", input="hello\n",
                            timeout=90)
    assert "got:hello" in result.stdout
    wait_for(lambda: get_pod(server, "oneshot") is None, 30, "oneshot removed")


def test_static_pod_runs_with_mirror(server: ServerProcess, agent: AgentProcess) -> None:
    name = f"static-web-{NODE}"
    pod = wait_for(lambda: running(server, name), 30, "static pod Running")
    annotations = pod["metadata"]["annotations"]
    assert annotations["kubernetes.io/config.source"] == "file"
    assert "kubernetes.io/config.mirror" in annotations
    assert pod["metadata"]["ownerReferences"][0]["kind"] == "Node"
    # deleting the mirror does not stop the static pod: the mirror comes back
    server.kubectl("delete", "pod", name, "--wait=false")
    wait_for(lambda: running(server, name), 20, "mirror recreated")


def test_zz_restart_adopts_running_containers(server: ServerProcess, agent: AgentProcess, podman: PodmanFixture,
                                              busybox_image: str) -> None:
    server.kubectl("apply", "-f", "-", input=pod_yaml("survivor", busybox_image, LOOP))
    pod = wait_for(lambda: running(server, "survivor"), 30, "survivor Running")
    before = {c["Id"] for c in podman.containers(f"io.kubernetes.pod.uid={pod['metadata']['uid']}")}
    status_before = container_status(pod)
    agent.stop()
    assert {c["State"] for c in podman.containers(f"io.kubernetes.pod.uid={pod['metadata']['uid']}")} == {"running"}
    agent.start()
    time.sleep(6)  # a full sync and relist
    pod = wait_for(lambda: running(server, "survivor"), 20, "survivor Running after restart")
    after = {c["Id"]: c["State"] for c in podman.containers(f"io.kubernetes.pod.uid={pod['metadata']['uid']}")}
    assert set(after) == before and set(after.values()) == {"running"}
    status = container_status(pod)
    assert status["containerID"] == status_before["containerID"] and status["restartCount"] == 0
    server.kubectl("delete", "pod", "survivor", "--wait=false")

