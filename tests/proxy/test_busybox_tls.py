"""Why the in-pod API checks are TCP only: busybox's own TLS client (the pods' busybox-static 1.35,
the pause and test images' ``/bin/busybox``) cannot complete a handshake with the API server, and no
server setting fixes that without weakening the defaults (docs/decisions/pod-api-tls.md).

Its ClientHello (TLS 1.2 only) carries no ``signature_algorithms`` extension, so the server must
assume SHA-1 for the ServerKeyExchange signature (RFC 5246 7.4.1.4.1), and OpenSSL 3 refuses SHA-1
signatures at every security level but 0 (RFC 9155 deprecates them); the static-RSA suites it also
offers need no signature but have no forward secrecy. The tests pin each half: the real server
refuses busybox, busybox sends no signature algorithms, and the same certificate and key at security
level 0 (SHA-1 allowed, nothing else changed) complete the handshake. A busybox that sends the
extension fails the second test and should then pass the first: the in-pod checks can then be HTTPS.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import struct
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ServerProcess, start_server_process

BUSYBOX = "/bin/busybox"
pytestmark = pytest.mark.skipif(shutil.which(BUSYBOX) is None, reason="needs busybox-static")
#: the TLS extension numbers (RFC 8446 4.2)
SERVER_NAME, SUPPORTED_GROUPS, SIGNATURE_ALGORITHMS = 0, 10, 13


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_server_process(tmp_path_factory.mktemp("secure"), secure=True)
    yield server
    server.stop()


def busybox_wget(url: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    """busybox wget as in a pod: no ``openssl`` on the PATH, so its own TLS code is used."""
    empty = tmp / "no-openssl"
    empty.mkdir(exist_ok=True)
    return subprocess.run([BUSYBOX, "wget", "-O-", "--no-check-certificate", url], capture_output=True, text=True,
                          timeout=20, env={**os.environ, "PATH": str(empty)})


def test_busybox_cannot_handshake_with_the_api_server(secure: ServerProcess, tmp_path: Path) -> None:
    reply = busybox_wget(secure.url + "/healthz", tmp_path)
    # the server's asyncio transport closes without an alert: busybox sees the reset mid-handshake
    assert reply.returncode != 0 and "while expecting handshake record" in reply.stderr, reply.stderr


def _client_hello_extensions(tmp: Path) -> list[int]:
    """The extension numbers of busybox's ClientHello, read off a plain socket."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(15)
    port = listener.getsockname()[1]
    client = threading.Thread(target=busybox_wget, args=(f"https://127.0.0.1:{port}/", tmp), daemon=True)
    client.start()
    connection, _ = listener.accept()
    with connection, listener:
        record = b""
        while len(record) < 5 or len(record) < 5 + struct.unpack(">H", record[3:5])[0]:
            chunk = connection.recv(4096)
            assert chunk, record
            record += chunk
    hello = record[9:]  # record header (5), handshake header (4)
    at = 2 + 32  # version, random
    at += 1 + hello[at]  # session id
    at += 2 + struct.unpack(">H", hello[at:at + 2])[0]  # cipher suites
    at += 1 + hello[at]  # compression methods
    end = at + 2 + struct.unpack(">H", hello[at:at + 2])[0]
    at += 2
    extensions = []
    while at < end:
        kind, length = struct.unpack(">HH", hello[at:at + 4])
        extensions.append(kind)
        at += 4 + length
    return extensions


def test_busybox_sends_no_signature_algorithms(tmp_path: Path) -> None:
    extensions = _client_hello_extensions(tmp_path)
    assert SERVER_NAME in extensions and SUPPORTED_GROUPS in extensions, extensions
    assert SIGNATURE_ALGORITHMS not in extensions, extensions


def _handshakes(secure: ServerProcess, tmp: Path, ciphers: str | None) -> bool:
    """busybox against a TLS 1.2+ server holding the API server's own certificate and key."""
    pki = secure.data_dir / "pki"
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(pki / "apiserver.crt", pki / "apiserver.key")
    if ciphers is not None:
        context.set_ciphers(ciphers)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(15)
    port = listener.getsockname()[1]
    outcome: list[bool] = []

    def serve() -> None:
        connection, _ = listener.accept()
        try:
            with context.wrap_socket(connection, server_side=True) as tls:
                tls.recv(1024)
                tls.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
                outcome.append(True)
        except ssl.SSLError:
            outcome.append(False)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    busybox_wget(f"https://127.0.0.1:{port}/", tmp)
    thread.join(15)
    listener.close()
    return outcome == [True]


def test_only_sha1_signatures_would_let_it_in(secure: ServerProcess, tmp_path: Path) -> None:
    assert not _handshakes(secure, tmp_path, None)  # Python's defaults, as the server's context
    # the same suites, SHA-1 handshake signatures allowed (security level 0): the handshake completes
    assert _handshakes(secure, tmp_path, "ECDHE+AESGCM:ECDHE+AES:@SECLEVEL=0")
