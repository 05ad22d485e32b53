"""Client certificates on the scheduler's component server (issue 14's leftover), as kube-scheduler
authenticates them: a certificate signed by the client CA (default: the kubeconfig's cluster CA) is
its CN and O, and RBAC decides through a SubjectAccessReview like for a token; a certificate from
another CA fails the handshake. The server runs on its secure defaults (HTTPS, Node,RBAC)."""

from __future__ import annotations

import base64
import datetime
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from pilothouse.machinery import pki
from tests.conftest import ServerProcess, free_port, start_server_process, terminate
from tests.metrics.test_component_metrics import Component, _start, _wait_serving


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_server_process(tmp_path_factory.mktemp("secure"), secure=True,
                                  extra=("--disable", "scheduler,controller-manager"))
    yield server
    server.stop()


def credentials(kubeconfig_text: str, directory: Path, name: str) -> tuple[Path, Path]:
    user = yaml.safe_load(kubeconfig_text)["users"][0]["user"]
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
    key.write_bytes(base64.b64decode(user["client-key-data"]))
    return cert, key


def kubeconfig_for(server: ServerProcess, user: str) -> str:
    """``pilothouse kubeconfig --user``: a kubeconfig with a new certificate from the cluster CA."""
    return subprocess.run([sys.executable, "-m", "pilothouse", "kubeconfig", "--data-dir", str(server.data_dir),
                           "--user", user], capture_output=True, text=True, check=True).stdout


def fetch(url: str, cert: tuple[Path, Path] | None) -> tuple[int, str]:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the component's self-signed serving certificate
    if cert is not None:
        context.load_cert_chain(*cert)
    try:
        with urllib.request.urlopen(url, timeout=10, context=context) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_client_certificates_authenticate_on_the_scheduler(secure: ServerProcess, tmp_path: Path) -> None:
    port = free_port()
    scheduler_conf = tmp_path / "scheduler.conf"
    scheduler_conf.write_text(kubeconfig_for(secure, "system:kube-scheduler"))
    process = _start(["scheduler", "--kubeconfig", str(scheduler_conf), "--leader-elect=false",
                      "--secure-port", str(port)], tmp_path / "scheduler.log")
    scheduler = Component("scheduler", f"https://127.0.0.1:{port}", process)
    try:
        _wait_serving(scheduler)
        admin = credentials(secure.kubeconfig.read_text(), tmp_path, "admin")  # kubernetes-admin, system:masters
        status, body = fetch(scheduler.url + "/metrics", admin)
        assert status == 200 and "scheduler_pending_pods" in body

        carol = credentials(kubeconfig_for(secure, "carol"), tmp_path, "carol")
        status, body = fetch(scheduler.url + "/metrics", carol)
        assert status == 403 and 'User \\"carol\\" cannot get path \\"/metrics\\"' in body
        assert fetch(scheduler.url + "/metrics", None)[0] == 403  # anonymous: no role either
        assert fetch(scheduler.url + "/healthz", carol)[0] == 200

        # a certificate from a CA the scheduler does not trust: the handshake fails
        now = datetime.datetime.now(datetime.UTC)
        stranger_ca = pki.new_ca("stranger-ca", now)
        stranger = pki.issue_client(stranger_ca, "kubernetes-admin", ["system:masters"], now)
        cert, key = tmp_path / "stranger.crt", tmp_path / "stranger.key"
        cert.write_bytes(stranger.cert_pem)
        key.write_bytes(stranger.key_pem)
        with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionResetError)):
            fetch(scheduler.url + "/metrics", (cert, key))
    finally:
        terminate(process)
