"""kubectl logs/exec/attach/port-forward end to end: the real kubectl → the API server (in-process,
with the node-proxy handlers) → the agent's streaming server → real podman containers.

The pods' containers are created here through the runtime with the labels the agent uses, and the
Node and pod status are written through the API as an agent would: this proves the streaming path
on its own, whatever state the rest of the agent is in.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes import client, config
from kubernetes.stream import portforward, stream

from pilothouse.apiserver.nodeproxy import NODE_PROXY_HANDLERS
from pilothouse.apiserver.serve import RunningServer, ServerConfig, start_server
from pilothouse.components.agent.runtime.docker import DockerRuntime
from pilothouse.components.agent.runtime.interface import (
    LABEL_CONTAINER_NAME,
    LABEL_POD_NAME,
    LABEL_POD_NAMESPACE,
    LABEL_POD_UID,
    LABEL_ROLE,
    ContainerSpec,
)
from pilothouse.components.agent.server import StreamingServer
from pilothouse.components.agent.streaming.lookup import RuntimeLabelLookup
from tests.agent.conftest import PodmanFixture
from tests.conftest import KUBECTL, create_default_service_account, free_port

T = TypeVar("T")
NODE = "stream-node"


class Env:
    """An event loop in a thread hosting the API server, the runtime and the streaming server."""

    def __init__(self, directory: Path, podman: PodmanFixture, image: str) -> None:
        self.directory = directory
        self.image = image
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.runtime = DockerRuntime(podman.endpoint)
        self.api: RunningServer = self.run(start_server(ServerConfig(directory / "api", port=0)))
        self.api.api.rest.subresources.update(NODE_PROXY_HANDLERS)
        create_default_service_account(self.api.url)  # no controller manager runs here
        self.run(self.runtime.start())
        self.pause_image = self.run(self.runtime.ensure_pause_image())
        self.streaming = StreamingServer(self.runtime, RuntimeLabelLookup(self.runtime), address="127.0.0.1", port=0)
        self.run(self.streaming.start())
        self.container_ids: list[str] = []

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        for container_id in reversed(self.container_ids):  # a sandbox after the containers in it
            with contextlib.suppress(Exception):  # best effort cleanup
                self.run(self.runtime.remove_container(container_id))
        self.run(self.streaming.stop())
        self.run(self.runtime.close())
        self.run(self.api.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    # ------------------------------------------------------------------ API access

    def request(self, method: str, path: str, body: Any = None,
                content_type: str = "application/json") -> tuple[int, bytes]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.api.url + path, data=data, method=method,
                                     headers={"Content-Type": content_type} if data else {})
        try:
            with urllib.request.urlopen(req, timeout=30) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def kubectl(self, *args: str, input: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([KUBECTL, *args], input=input, capture_output=True, text=True, timeout=timeout,
                              env=self.kubectl_env())

    def kubectl_env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": str(self.api.config.kubeconfig_path),
                "HOME": str(self.directory / "home")}

    def core_v1(self) -> client.CoreV1Api:
        """The official Python client, from this server's kubeconfig."""
        return client.CoreV1Api(config.new_client_from_config(str(self.api.config.kubeconfig_path)))

    # ------------------------------------------------------------------ playing the agent

    def register_node(self) -> None:
        status, body = self.request("POST", "/api/v1/nodes", {"apiVersion": "v1", "kind": "Node",
                                                               "metadata": {"name": NODE}})
        assert status == 201, body
        patch = {"status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"},
                                          {"type": "Hostname", "address": NODE}],
                            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.streaming.port}},
                            "conditions": [{"type": "Ready", "status": "True"}]}}
        status, body = self.request("PATCH", f"/api/v1/nodes/{NODE}/status", patch, "application/merge-patch+json")
        assert status == 200, body

    def create_container(self, pod: str, uid: str, name: str, script: str, sandbox: str, *,
                         stdin: bool = False, start: bool = True) -> str:
        labels = {LABEL_POD_NAMESPACE: "default", LABEL_POD_NAME: pod, LABEL_POD_UID: uid,
                  LABEL_CONTAINER_NAME: name, LABEL_ROLE: "container"}
        spec = ContainerSpec(name=f"st-{pod}-{name}-{len(self.container_ids)}", image=self.image, labels=labels,
                             command=["/bin/sh", "-c", script], sandbox_id=sandbox, stdin=stdin, stdin_once=stdin)
        container_id = self.run(self.runtime.create_container(spec))
        self.container_ids.append(container_id)
        if start:
            self.run(self.runtime.start_container(container_id))
        return container_id

    def create_pod(self, name: str, containers: dict[str, str], *, stdin: bool = False,
                   annotations: dict[str, str] | None = None) -> str:
        """A pod bound to the node, its sandbox and containers running, its status Running."""
        manifest = {"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": name, "annotations": annotations or {}},
                    "spec": {"nodeName": NODE, "containers": [
                        {"name": c, "image": self.image, "stdin": stdin, "stdinOnce": stdin} for c in containers]}}
        status, body = self.request("POST", "/api/v1/namespaces/default/pods", manifest)
        assert status == 201, body
        uid: str = json.loads(body)["metadata"]["uid"]
        sandbox_labels = {LABEL_POD_NAMESPACE: "default", LABEL_POD_NAME: name, LABEL_POD_UID: uid,
                          LABEL_ROLE: "sandbox"}
        sandbox = self.run(self.runtime.create_container(ContainerSpec(
            name=f"st-{name}-sandbox", image="localhost/pilothouse/pause:latest", labels=sandbox_labels,
            command=["/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 3600 & wait; done"])))
        self.container_ids.append(sandbox)
        self.run(self.runtime.start_container(sandbox))
        for container, script in containers.items():
            self.create_container(name, uid, container, script, sandbox, stdin=stdin)
        ip = self.run(self.runtime.inspect_container(sandbox)).ip
        patch = {"status": {"phase": "Running", "podIP": ip, "hostIP": "127.0.0.1",
                            "conditions": [{"type": "Ready", "status": "True"}]}}
        status, body = self.request("PATCH", f"/api/v1/namespaces/default/pods/{name}/status", patch,
                                    "application/merge-patch+json")
        assert status == 200, body
        return uid


@pytest.fixture(scope="module")
def env(podman: PodmanFixture, busybox_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    environment = Env(tmp_path_factory.mktemp("streaming"), podman, busybox_image)
    try:
        environment.register_node()
        environment.create_pod("web", {"app": "echo one; echo two; echo three >&2; "
                                              "mkdir -p /www; echo hello-from-pod > /www/index.html; "
                                              "exec httpd -f -p 80 -h /www"})
        yield environment
    finally:
        environment.close()


def _wait_output(env: Env, pod: str, text: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = env.kubectl("logs", pod)
        if text in result.stdout:
            return
        time.sleep(0.2)
    raise AssertionError(f"{pod} never logged {text!r}")


# ---------------------------------------------------------------------- logs


def test_logs_and_tail(env: Env) -> None:
    _wait_output(env, "web", "three")
    result = env.kubectl("logs", "web")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "one\ntwo\nthree\n"
    tail = env.kubectl("logs", "web", "--tail=1")
    assert tail.stdout == "three\n"
    limited = env.kubectl("logs", "web", "--limit-bytes=5")
    assert limited.stdout == "one\nt"
    stamped = env.kubectl("logs", "web", "--timestamps", "--tail=1")
    assert stamped.stdout.endswith(" three\n") and stamped.stdout[:4].isdigit()


def test_logs_follow_streams_as_produced(env: Env) -> None:
    env.create_pod("ticker", {"tick": "i=0; while :; do echo tick$i; i=$((i+1)); sleep 0.3; done"})
    process = subprocess.Popen([KUBECTL, "logs", "-f", "ticker"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=env.kubectl_env())
    try:
        assert process.stdout is not None
        started = time.monotonic()
        lines = [process.stdout.readline() for _ in range(4)]
        assert lines == ["tick0\n", "tick1\n", "tick2\n", "tick3\n"]
        assert time.monotonic() - started < 15
        assert process.poll() is None  # still following
    finally:
        process.terminate()
        process.wait(10)


def test_logs_follow_ends_when_the_container_exits(env: Env) -> None:
    env.create_pod("short", {"main": "sleep 1; echo bye"})
    result = env.kubectl("logs", "-f", "short", timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "bye\n"


def test_logs_previous_instance(env: Env) -> None:
    uid = env.create_pod("crashy", {"app": "echo first-life"})
    sandbox = next(c for c in env.run(env.runtime.list_containers({LABEL_POD_NAME: "crashy"}))
                   if c.labels.get(LABEL_ROLE) == "sandbox")
    time.sleep(1.1)  # the second life starts visibly later (second-precision timestamps)
    env.create_container("crashy", uid, "app", "echo second-life; sleep 3600", sandbox.id)
    _wait_output(env, "crashy", "second-life")
    assert env.kubectl("logs", "crashy").stdout == "second-life\n"
    previous = env.kubectl("logs", "crashy", "--previous")
    assert previous.returncode == 0, previous.stderr
    assert previous.stdout == "first-life\n"
    none = env.kubectl("logs", "web", "--previous")
    assert none.returncode == 1
    assert 'previous terminated container "app" in pod "web" not found' in none.stderr


def test_log_errors_are_statuses(env: Env) -> None:
    env.create_pod("duo", {"a": "sleep 3600", "b": "sleep 3600"})
    status, body = env.request("GET", "/api/v1/namespaces/default/pods/duo/log")
    assert status == 400
    assert json.loads(body)["message"] == "a container name must be specified for pod duo, choose one of: [a b]"
    status, body = env.request("GET", "/api/v1/namespaces/default/pods/web/log?container=nope")
    assert (status, json.loads(body)["message"]) == (400, "container nope is not valid for pod web")
    status, body = env.request("GET", "/api/v1/namespaces/default/pods/web/log?tailLines=-1")
    assert status == 422 and json.loads(body)["reason"] == "Invalid"
    pending = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "unscheduled"},
               "spec": {"containers": [{"name": "c", "image": env.image}]}}
    assert env.request("POST", "/api/v1/namespaces/default/pods", pending)[0] == 201
    assert env.request("GET", "/api/v1/namespaces/default/pods/unscheduled/log") == (200, b"")
    status, body = env.request("GET", "/api/v1/namespaces/default/pods/unscheduled/exec?command=ls&stdout=1")
    assert (status, json.loads(body)["message"]) == (400, "pod unscheduled does not have a host assigned")


# ---------------------------------------------------------------------- exec


def test_exec_exit_code_and_streams(env: Env) -> None:
    result = env.kubectl("exec", "web", "--", "sh", "-c", "echo hi; echo oops >&2; exit 3")
    assert result.returncode == 3
    assert result.stdout == "hi\n"
    assert "oops" in result.stderr
    assert "command terminated with exit code 3" in result.stderr
    ok = env.kubectl("exec", "-v=6", "web", "--", "cat", "/www/index.html")
    assert (ok.returncode, ok.stdout) == (0, "hello-from-pod\n")
    assert "fallback" not in ok.stderr.lower(), ok.stderr  # the websocket path, not SPDY
    assert "v5.channel.k8s.io" in ok.stderr


def test_logs_from_the_official_python_client(env: Env) -> None:
    api = env.core_v1()
    assert api.read_namespaced_pod_log("web", "default") == "one\ntwo\nthree\n"
    assert api.read_namespaced_pod_log("web", "default", tail_lines=1) == "three\n"
    with pytest.raises(client.ApiException) as error:
        api.read_namespaced_pod_log("web", "default", container="nope")
    assert error.value.status == 400 and "container nope is not valid" in error.value.body


def test_exec_from_the_official_python_client(env: Env) -> None:
    """kubernetes.stream (websocket-client, ``v4.channel.k8s.io``) exec and its exit code."""
    api = env.core_v1()
    output = stream(api.connect_get_namespaced_pod_exec, "web", "default",
                    command=["cat", "/www/index.html"], stderr=True, stdin=False, stdout=True, tty=False)
    assert output == "hello-from-pod\n"
    session = stream(api.connect_get_namespaced_pod_exec, "web", "default",
                     command=["sh", "-c", "read x; echo got:$x; echo err >&2; exit 4"], stderr=True, stdin=True,
                     stdout=True, tty=False, _preload_content=False)
    session.write_stdin("line\n")
    session.run_forever(timeout=10)
    assert session.read_stdout(timeout=5) == "got:line\n" and session.read_stderr(timeout=5) == "err\n"
    assert session.returncode == 4
    session.close()


def test_exec_large_output_arrives_whole(env: Env) -> None:
    result = env.kubectl("exec", "web", "--", "sh", "-c", "head -c 3000000 /dev/zero | tr '\\0' a; echo; echo end")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "a" * 3000000 + "\nend\n"


def test_exec_with_piped_stdin(env: Env) -> None:
    result = env.kubectl("exec", "-i", "web", "--", "tr", "a-z", "A-Z", input="hello\nworld\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "HELLO\nWORLD\n"


def test_exec_with_a_tty(env: Env) -> None:
    command = f"{KUBECTL} exec -it web -- sh -c 'tty; stty size; echo in-tty'"
    result = subprocess.run(["script", "-qec", command, "/dev/null"], capture_output=True, text=True, timeout=60,
                            env=env.kubectl_env(), stdin=subprocess.DEVNULL)
    assert "in-tty" in result.stdout, result.stdout + result.stderr
    assert "/dev/pts/" in result.stdout


def test_exec_in_a_missing_container_is_an_error(env: Env) -> None:
    result = env.kubectl("exec", "web", "-c", "nope", "--", "true")
    assert result.returncode != 0
    assert "nope" in result.stderr


# ---------------------------------------------------------------------- attach


def test_attach_with_stdin(env: Env) -> None:
    env.create_pod("reader", {"main": "while read line; do echo got:$line; done; echo done"}, stdin=True)
    result = env.kubectl("attach", "-i", "reader", input="a\nb\n", timeout=30)
    assert result.returncode == 0, result.stderr
    assert "got:a\ngot:b\n" in result.stdout


def test_attach_follows_output(env: Env) -> None:
    env.create_pod("talker", {"main": "sleep 2; echo attached-output; sleep 1"})
    result = env.kubectl("attach", "talker", timeout=30)
    assert result.returncode == 0, result.stderr
    assert "attached-output" in result.stdout


# ---------------------------------------------------------------------- port-forward


def test_port_forward_to_httpd(env: Env) -> None:
    local = free_port()
    process = subprocess.Popen([KUBECTL, "port-forward", "pod/web", f"{local}:80"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env.kubectl_env())
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert f"Forwarding from 127.0.0.1:{local} -> 80" in line, line
        for _ in range(3):  # a connection (and a SPDY stream pair) each
            with urllib.request.urlopen(f"http://127.0.0.1:{local}/index.html", timeout=10) as response:
                assert response.read() == b"hello-from-pod\n"
        env.kubectl("exec", "web", "--", "sh", "-c", "head -c 2000000 /dev/urandom > /www/big.bin")
        expected = env.kubectl("exec", "web", "--", "md5sum", "/www/big.bin").stdout.split()[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{local}/big.bin", timeout=30) as response:
            body = response.read()
        assert len(body) == 2000000 and hashlib.md5(body).hexdigest() == expected
        assert process.poll() is None
    finally:
        process.terminate()
        process.wait(10)


def test_port_forward_from_the_official_python_client(env: Env) -> None:
    """kubernetes.stream.portforward: the websocket port-forward protocol (a data and an error
    channel per port, each opened by the port number), as the kubelet serves it."""
    api = env.core_v1()
    forward = portforward(api.connect_get_namespaced_pod_portforward, "web", "default", ports="80")
    sock = forward.socket(80)
    sock.settimeout(10)
    sock.sendall(b"GET /index.html HTTP/1.0\r\nHost: web\r\n\r\n")
    received = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            break
        received += chunk
    sock.close()
    assert received.startswith(b"HTTP/1.") and received.endswith(b"hello-from-pod\n")
    assert forward.error(80) is None
    forward.close()
    closed = portforward(api.connect_get_namespaced_pod_portforward, "web", "default", ports="81")
    sock = closed.socket(81)
    sock.settimeout(10)
    assert sock.recv(4096) == b""
    assert "error forwarding port 81 to pod default/web" in (closed.error(81) or "")
    closed.close()


def test_port_forward_to_a_closed_port_reports_the_error(env: Env) -> None:
    local = free_port()
    process = subprocess.Popen([KUBECTL, "port-forward", "pod/web", f"{local}:81"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env.kubectl_env())
    try:
        assert process.stdout is not None
        assert "Forwarding from" in process.stdout.readline()
        with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
            urllib.request.urlopen(f"http://127.0.0.1:{local}/", timeout=10).read()
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=10)
    assert "error forwarding port 81 to pod default/web" in stderr


def test_exec_of_a_missing_binary_fails_fast(env: Env) -> None:
    result = env.kubectl("exec", "web", "--", "/no/such/binary", timeout=30)
    # as with runc under containerd: the runtime's complaint on stderr, exit code 127
    assert result.returncode == 127, result.stderr
    assert "/no/such/binary" in result.stderr
    assert "command terminated with exit code 127" in result.stderr
