"""The HTTPS read path's cost (issue 11's benchmark): a LIST answer leaves in as few TLS writes as it can.

Counted on the wire: a raw TCP socket whose TLS is driven through memory BIOs, so that every TLS
record the server sends is seen (and counted) before it is decrypted. The lists are also read with
the real kubectl and the official client, small (one write, Content-Length) and large (streamed).
"""

from __future__ import annotations

import base64
import json
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from tests.conftest import ServerProcess, start_server_process

#: TLS's largest record payload: one write of N bytes is ceil(N / 16384) records.
MAX_RECORD = 16384
APPLICATION_DATA = 23


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_server_process(tmp_path_factory.mktemp("tlscost"),
                                  extra=("--disable", "scheduler,controller-manager"), secure=True)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def api(secure: ServerProcess) -> k8s.CoreV1Api:
    return k8s.CoreV1Api(k8s_config.new_client_from_config(str(secure.kubeconfig)))


def _admin_context(server: ServerProcess, directory: Path) -> ssl.SSLContext:
    """The written kubeconfig's CA and admin certificate."""
    user = yaml.safe_load(server.kubeconfig.read_text())["users"][0]["user"]
    cert, key = directory / "admin.crt", directory / "admin.key"
    cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
    key.write_bytes(base64.b64decode(user["client-key-data"]))
    context = ssl.create_default_context(cafile=str(server.data_dir / "pki" / "ca.crt"))
    context.load_cert_chain(cert, key)
    return context


class CountingTLS:
    """One keep-alive HTTPS connection that counts the application-data records of each answer."""

    def __init__(self, server: ServerProcess, context: ssl.SSLContext) -> None:
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_hostname="127.0.0.1")
        self.raw = b""
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._send()
                self.incoming.write(self._recv())
        self._send()

    def _send(self) -> None:
        data = self.outgoing.read()
        if data:
            self.sock.sendall(data)

    def _recv(self) -> bytes:
        data = self.sock.recv(1 << 20)
        assert data, "connection closed"
        return data

    def get(self, path: str) -> tuple[int, bytes, bytes]:
        """(application-data records, head, body) of ``GET path``."""
        self.tls.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n\r\n".encode())
        self._send()
        records, plain = 0, b""
        while not _complete(plain):
            self.raw += self._recv()
            while len(self.raw) >= 5 and len(self.raw) >= 5 + int.from_bytes(self.raw[3:5], "big"):
                end = 5 + int.from_bytes(self.raw[3:5], "big")
                records += self.raw[0] == APPLICATION_DATA
                self.incoming.write(self.raw[:end])
                self.raw = self.raw[end:]
            try:
                while True:
                    plain += self.tls.read(1 << 20)
            except ssl.SSLWantReadError:
                pass
        head, _, body = plain.partition(b"\r\n\r\n")
        return records, head, body

    def close(self) -> None:
        self.sock.close()


def _complete(plain: bytes) -> bool:
    head, found, body = plain.partition(b"\r\n\r\n")
    if not found:
        return False
    lowered = head.lower()
    if b"transfer-encoding: chunked" in lowered:
        return body.endswith(b"0\r\n\r\n")
    length = int(lowered.split(b"content-length:")[1].split(b"\r\n")[0])
    return len(body) >= length


def _dechunk(body: bytes) -> bytes:
    out, rest = b"", body
    while True:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return out
        out, rest = out + rest[:size], rest[size + 2:]


def _fill(api: k8s.CoreV1Api, namespace: str, count: int, size: int) -> None:
    api.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=namespace)))
    for i in range(count):
        api.create_namespaced_config_map(namespace, k8s.V1ConfigMap(
            metadata=k8s.V1ObjectMeta(name=f"cm-{i:03d}"), data={"blob": "x" * size}))


def test_small_list_leaves_in_one_write(secure: ServerProcess, api: k8s.CoreV1Api, tmp_path: Path) -> None:
    _fill(api, "small", 20, 300)
    connection = CountingTLS(secure, _admin_context(secure, tmp_path))
    try:
        connection.get("/readyz")  # the session tickets TLS 1.3 sends after the handshake go by first
        records, head, body = connection.get("/api/v1/namespaces/small/configmaps")
    finally:
        connection.close()
    assert head.startswith(b"HTTP/1.1 200"), head
    assert b"content-length:" in head.lower() and b"chunked" not in head.lower(), head
    items = json.loads(body)["items"]
    assert sorted(item["metadata"]["name"] for item in items) == [f"cm-{i:03d}" for i in range(20)]
    # One write is ceil(size / 16 KiB) records; the head may be a record of its own (aiohttp hands
    # headers and body to writelines on Pythons where that is safe). The streamed answer was four.
    assert records <= -(-(len(head) + 4 + len(body)) // MAX_RECORD) + 1, records


def test_large_list_still_streams_whole(secure: ServerProcess, api: k8s.CoreV1Api, tmp_path: Path) -> None:
    _fill(api, "large", 40, 9000)  # ~360 KB: past the 256 KiB gathered before streaming starts
    connection = CountingTLS(secure, _admin_context(secure, tmp_path))
    try:
        connection.get("/readyz")
        records, head, body = connection.get("/api/v1/namespaces/large/configmaps")
    finally:
        connection.close()
    assert b"transfer-encoding: chunked" in head.lower(), head
    listed = json.loads(_dechunk(body))
    assert len(listed["items"]) == 40 and listed["metadata"]["resourceVersion"]
    # Sent in ~256 KiB writes, not one per piece: within a few records of the fewest possible.
    assert records <= -(-len(body) // MAX_RECORD) + 3, records
    # The real clients read both shapes.
    assert len(api.list_namespaced_config_map("large").items) == 40
    assert len(api.list_namespaced_config_map("small").items) == 20
    table = secure.kubectl("get", "configmaps", "-n", "large", "--no-headers").stdout.splitlines()
    assert len([line for line in table if line.startswith("cm-")]) == 40
    names = secure.kubectl("get", "configmaps", "-n", "small", "-o", "name").stdout.split()
    assert len([name for name in names if name.startswith("configmap/cm-")]) == 20
