"""``--insecure-port``/``--insecure-bind-address``: kube-apiserver 1.x's plain-HTTP listener, no authn/authz.

A ``--secure`` server with ``--authorization-mode=RBAC`` and the insecure port: plain HTTP answers
``/healthz`` and serves the API (reads and writes, with the real kubectl) without credentials, as
``system:unsecured``; the secure port still refuses an anonymous caller. Without the flag nothing listens.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import KUBECTL, ServerProcess, free_port, start_server_process

NO_COMPONENTS = ("--disable", "scheduler,controller-manager")


@pytest.fixture(scope="module")
def insecure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, int]]:
    port = free_port()
    server = start_server_process(tmp_path_factory.mktemp("insecure"), secure=True,
                                  extra=(*NO_COMPONENTS, "--authorization-mode", "RBAC", "--insecure-port",
                                         str(port), "--insecure-bind-address", "127.0.0.1"))
    yield server, port
    server.stop()


def test_healthz_and_api_over_plain_http(insecure: tuple[ServerProcess, int], tmp_path: Path) -> None:
    server, port = insecure
    base = f"http://127.0.0.1:{port}"
    with urllib.request.urlopen(base + "/healthz", timeout=5) as response:
        assert response.read() == b"ok"
    # No credentials, yet the superuser: kube-apiserver's insecure handler skipped authn and authz.
    review = urllib.request.Request(base + "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                                    b'{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}',
                                    {"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(review, timeout=5) as response:
        user = json.load(response)["status"]["userInfo"]
    assert user["username"] == "system:unsecured"
    assert "system:masters" in user["groups"]
    # The real kubectl with a bare --server and no kubeconfig reads and writes through it.
    env = {**os.environ, "HOME": str(tmp_path), "KUBECONFIG": str(tmp_path / "none")}
    kubectl = [KUBECTL, "--server", base]
    created = subprocess.run([*kubectl, "create", "configmap", "plain", "--from-literal=a=b"],
                             capture_output=True, text=True, env=env, timeout=60)
    assert created.returncode == 0, created.stderr
    got = subprocess.run([*kubectl, "get", "configmap", "plain", "-o", "jsonpath={.data.a}"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert got.returncode == 0 and got.stdout == "b", got.stderr
    # The secure port still authorizes: anonymous (no client certificate) is refused there.
    context = ssl.create_default_context(cafile=str(server.data_dir / "pki" / "ca.crt"))
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(server.url + "/api/v1/namespaces/default/configmaps", timeout=5, context=context)
    assert refused.value.code in (401, 403)


def _listening_ports(pid: int) -> set[int]:
    """TCP ports a process listens on, from /proc (its socket inodes in LISTEN state)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except FileNotFoundError:  # closed since listed (a store connection, a client's socket)
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: TCP_LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def test_insecure_server_listens_on_both(insecure: tuple[ServerProcess, int]) -> None:
    server, port = insecure
    assert _listening_ports(server.process.pid) == {server.port, port}


def test_nothing_listens_without_the_flag(tmp_path: Path) -> None:
    server = start_server_process(tmp_path / "secure", secure=True, extra=NO_COMPONENTS)
    try:
        assert _listening_ports(server.process.pid) == {server.port}
        # The secure port speaks only TLS: plain HTTP on it gets no API.
        with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
            urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=5).read()
    finally:
        server.stop()
