"""The TLS benchmarks' servers serve what they claim (bench/tls_transport.py, bench/insecure_tls_server.py).

A variant that answered errors, or a diagnostic listener that was still plain HTTP, would make their
figures about something else; these check the bytes and the protocol, not the speed.
"""

from __future__ import annotations

import http.client
import os
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import tls_transport
from tests.conftest import free_port, wait_healthy

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture
def pki_dir(tmp_path: Path) -> Path:
    return tmp_path / "pki"


def _serve(variant: str, port: int, pki_dir: Path, size: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([sys.executable, str(BENCH / "tls_transport.py"), "--serve", variant, str(port),
                                str(pki_dir), str(size)], stdout=subprocess.PIPE)
    assert process.stdout is not None
    assert process.stdout.readline() == b"ready\n"
    return process


def _get(url: str, context: ssl.SSLContext | None) -> tuple[bytes, str | None]:
    with urllib.request.urlopen(url, timeout=30, context=context) as response:
        sock = response.fp.raw._sock  # the connection's socket: the cipher it negotiated
        cipher = sock.cipher()[0] if isinstance(sock, ssl.SSLSocket) else None
        return response.read(), cipher


@pytest.mark.parametrize("variant", tls_transport.VARIANTS)
# 8 MB: more than the socket buffers take at once, so the socket-tls transport's write buffering runs.
@pytest.mark.parametrize("size", [1000, 8_000_000])
def test_every_variant_serves_the_body(variant: str, size: int, pki_dir: Path) -> None:
    port = free_port()
    process = _serve(variant, port, pki_dir, size)
    try:
        context = None
        if variant != "plain":
            context = ssl.create_default_context(cafile=str(pki_dir / "ca.crt"))
        scheme = "http" if variant == "plain" else "https"
        body, cipher = _get(f"{scheme}://127.0.0.1:{port}/x", context)
        assert body == tls_transport.body(size)
        assert len(body) == size
        # Plain is plain; every other variant is TLS 1.3 (its suites are the only ones named TLS_*).
        assert (cipher is None) if variant == "plain" else (cipher is not None and cipher.startswith("TLS_"))
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(params=["uvloop", "socket"])
def insecure_over_tls(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, int, Path]]:
    port, insecure_port = free_port(), free_port()
    data_dir = tmp_path / "data"
    process = subprocess.Popen([sys.executable, str(BENCH / "insecure_tls_server.py"), "server", "--data-dir",
                                str(data_dir), "--port", str(port), "--disable", "scheduler,controller-manager",
                                "--secure", "--insecure-port", str(insecure_port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "INSECURE_TLS_TRANSPORT": request.param})
    try:
        wait_healthy(f"https://127.0.0.1:{port}", process, ca=data_dir / "pki" / "ca.crt")
        yield f"127.0.0.1:{insecure_port}", process.pid, data_dir
    finally:
        process.terminate()
        process.wait(10)


def test_insecure_listener_served_over_tls(insecure_over_tls: tuple[str, int, Path]) -> None:
    address, _, data_dir = insecure_over_tls
    context = ssl.create_default_context(cafile=str(data_dir / "pki" / "ca.crt"))
    # Still the insecure listener (no credentials needed for a list), but over TLS.
    body, cipher = _get(f"https://{address}/api/v1/namespaces/default/pods", context)
    assert b'"kind":"PodList"' in body.replace(b" ", b"")
    assert cipher is not None
    with pytest.raises((urllib.error.URLError, ConnectionError, http.client.HTTPException)):
        _get(f"http://{address}/healthz", None)
