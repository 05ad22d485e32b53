"""kube-apiserver's max-in-flight filter (priority and fairness off, as that filter needs) and its
request deadline against a real server: with the mutating seats held by clients that never finish
their bodies (slow-loris writers), one more write is a 429 ``TooManyRequests`` Status with
``Retry-After``, reads and watches still pass, a ``system:masters`` caller is never refused, and the
stalled writes end in a 504 at ``--request-timeout``, freeing their seats."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import urllib.request
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from pilothouse.client.rest import APIClient, resource
from tests.conftest import ServerProcess, start_server_process
from tests.hostile.tokenserver import start_token_server

TOKENS = {"admin-token": ("root", "system:masters"), "alice-token": ("alice", "devs")}
REQUEST_TIMEOUT = 4.0


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_token_server(tmp_path_factory.mktemp("limits"), TOKENS, "--enable-priority-and-fairness=false",
                                "--max-requests-inflight", "4", "--max-mutating-requests-inflight", "2",
                                "--request-timeout", f"{REQUEST_TIMEOUT:g}s", "--min-request-timeout", "2")
    yield server
    server.stop()


def core(server: ServerProcess, token: str) -> client.CoreV1Api:
    configuration = client.Configuration()
    configuration.host = server.url
    if token:
        configuration.api_key = {"authorization": token}
        configuration.api_key_prefix = {"authorization": "Bearer"}
    return client.CoreV1Api(client.ApiClient(configuration))


def configmap(name: str) -> client.V1ConfigMap:
    return client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name), data={"k": "v"})


def stalled_write(server: ServerProcess, name: str) -> socket.socket:
    """A create whose body never arrives whole: its handler waits on the body, holding a seat."""
    url = urlsplit(server.url)
    sock = socket.create_connection((url.hostname or "", url.port or 80))
    body = json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}).encode()
    sock.sendall(b"POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: x\r\n"
                 b"Authorization: Bearer alice-token\r\nContent-Type: application/json\r\n"
                 + f"Content-Length: {len(body) + 100}\r\n\r\n".encode() + body)
    return sock


def read_answer(sock: socket.socket, timeout: float) -> tuple[int, dict[str, object]]:
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def test_mutating_flood_is_answered_429_with_retry_after(limited: ServerProcess) -> None:
    alice, admin = core(limited, "alice-token"), core(limited, "admin-token")
    alice.create_namespaced_config_map("default", configmap("before"))
    stalled = [stalled_write(limited, f"stalled-{i}") for i in range(2)]
    started = time.monotonic()
    try:
        time.sleep(0.5)  # both handlers are waiting on their bodies, in their seats
        with pytest.raises(ApiException) as refused:
            alice.create_namespaced_config_map("default", configmap("one-too-many"))
        assert refused.value.status == 429
        assert refused.value.headers["Retry-After"] == "1"
        status = json.loads(refused.value.body)
        assert (status["kind"], status["reason"], status["details"]["retryAfterSeconds"]) == \
            ("Status", "TooManyRequests", 1)
        # The seats taken, as kube-apiserver's gauge shows them.
        request = urllib.request.Request(limited.url + "/metrics", headers={"Authorization": "Bearer admin-token"})
        with urllib.request.urlopen(request, timeout=30) as response:
            scraped = response.read().decode()
        assert 'apiserver_current_inflight_requests{request_kind="mutating"} 2.0' in scraped, scraped[:2000]
        # Reads have seats of their own; a watch holds none; system:masters is never refused.
        assert alice.read_namespaced_config_map("before", "default").data == {"k": "v"}
        watch = alice.list_namespaced_config_map("default", watch=True, timeout_seconds=1, _preload_content=False)
        assert watch.status == 200
        watch.release_conn()
        admin.create_namespaced_config_map("default", configmap("masters-pass"))
        # The stalled writes end at --request-timeout with kube-apiserver's 504.
        for sock in stalled:
            code, answer = read_answer(sock, REQUEST_TIMEOUT + 10)
            assert code == 504 and answer["reason"] == "Timeout", answer
        assert time.monotonic() - started >= REQUEST_TIMEOUT - 0.5
    finally:
        for sock in stalled:
            sock.close()
    # Their seats come back once the connections are gone.
    deadline = time.monotonic() + 15
    while True:
        try:
            alice.create_namespaced_config_map("default", configmap("after"))
            break
        except ApiException as error:
            if error.status != 429 or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_kubectl_sees_too_many_requests(limited: ServerProcess) -> None:
    """The real kubectl, as a non-masters user, against full mutating seats: client-go retries a 429
    with Retry-After (up to ten times), so its create waits for the seats and then succeeds."""
    stalled = [stalled_write(limited, f"kubectl-stalled-{i}") for i in range(2)]
    try:
        time.sleep(0.5)
        started = time.monotonic()
        result = limited.kubectl("--token", "alice-token", "create", "configmap", "via-kubectl", check=False,
                                 timeout=120)
        assert result.returncode == 0, result.stderr
        assert time.monotonic() - started >= REQUEST_TIMEOUT - 1.5  # it waited for the seats
    finally:
        for sock in stalled:
            sock.close()


def test_pilothouse_client_waits_out_a_429(limited: ServerProcess) -> None:
    """pilothouse's own client (the controllers', the agent's) retries a 429 after its Retry-After, as
    client-go does, instead of failing the write."""
    stalled = [stalled_write(limited, f"client-stalled-{i}") for i in range(2)]

    async def create() -> None:
        async with APIClient(limited.url, token="alice-token") as api:
            await api.create(resource("", "v1", "configmaps"), {"apiVersion": "v1", "kind": "ConfigMap",
                                                                "metadata": {"name": "via-client"}})

    try:
        time.sleep(0.5)
        started = time.monotonic()
        asyncio.run(create())
        assert time.monotonic() - started >= REQUEST_TIMEOUT - 1.5  # it waited for the seats
    finally:
        for sock in stalled:
            sock.close()


def test_watch_without_timeout_ends_at_min_request_timeout(limited: ServerProcess) -> None:
    """No timeoutSeconds: the watch lives between --min-request-timeout (2s here) and twice it."""
    alice = core(limited, "alice-token")
    started = time.monotonic()
    stream = alice.list_namespaced_config_map("default", watch=True, _preload_content=False,
                                              _request_timeout=30)
    for _ in stream.stream():
        pass
    lasted = time.monotonic() - started
    assert 2.0 <= lasted < 4.0 + 1.0, lasted


@pytest.fixture(scope="module")
def impatient(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_server_process(tmp_path_factory.mktemp("idle") / "data", extra=(
        "--disable", "scheduler,controller-manager", "--idle-connection-timeout", "2"))
    yield server
    server.stop()


def closed_after(sock: socket.socket, trickle: bytes) -> float:
    """Seconds until the server closes ``sock`` while we send ``trickle`` a byte every 0.3 s."""
    started = time.monotonic()
    sock.settimeout(0.3)
    for byte in trickle:
        try:
            sock.sendall(bytes([byte]))
            if sock.recv(1024) == b"":
                return time.monotonic() - started
        except TimeoutError:
            continue
        except OSError:  # reset or broken pipe: closed
            return time.monotonic() - started
    return float("inf")


def test_slow_loris_headers_are_cut_off(impatient: ServerProcess) -> None:
    """A client that trickles its request headers, or sends nothing, loses its connection at the idle
    timeout (kube-apiserver: ReadHeaderTimeout 32s, IdleTimeout 90s; 2s here)."""
    url = urlsplit(impatient.url)
    address = (url.hostname or "", url.port or 80)
    trickle = b"GET /api/v1/namespaces HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200
    with socket.create_connection(address) as sock:
        assert closed_after(sock, trickle) < 6.0
    with socket.create_connection(address) as sock:
        sock.settimeout(10)
        started = time.monotonic()
        assert sock.recv(1024) == b""  # nothing sent: closed too
        assert time.monotonic() - started < 6.0
    # A well-behaved client is served as before.
    assert core(impatient, "").list_namespace().items
