"""A server started with ``--token-auth-file`` and ``--authorization-mode=RBAC`` over plain HTTP
(``--secure=false``: these tests are about tokens and RBAC, and predate HTTPS), reached by kubectl
through a TLS front (kubectl sends credentials only over TLS) and by the official client with a bearer
token. The server's own HTTPS on the defaults is tests/apiserver/test_tls.py's and tests/test_secure_up.py's."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kubernetes import client

from tests.apiserver.tlsfront import tls_front
from tests.conftest import KUBECTL, ServerProcess, free_port, server_flags, start_server_process, terminate

__all__ = ["TOKENS", "AuthCluster", "auth_cluster", "csr_request"]

#: token → (user, uid, groups) as the token file lists them.
TOKENS = {
    "admin-token": ("root", "uid-root", "system:masters"),
    "alice-token": ("alice", "uid-alice", "devs,qa"),
    "bob-token": ("bob", "uid-bob", ""),
}


@dataclass
class AuthCluster:
    server: ServerProcess
    https_url: str

    def kubectl(self, token: str | None, *args: str, check: bool = True,
                input: str | None = None) -> subprocess.CompletedProcess[str]:
        """The real kubectl through the TLS front, with ``--token`` when given."""
        env = {**os.environ, "HOME": str(self.server.data_dir / "home"), "KUBECONFIG": "/dev/null"}
        credentials = ["--token", token] if token else []
        result = subprocess.run([KUBECTL, "--server", self.https_url, "--insecure-skip-tls-verify",
                                 *credentials, *args], capture_output=True, text=True, env=env, timeout=60,
                                input=input if input is not None else "")
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}")
        return result

    def api(self, token: str) -> client.ApiClient:
        """The official client over plain HTTP with a bearer token."""
        configuration = client.Configuration()
        configuration.host = self.server.url
        configuration.api_key = {"authorization": token}
        configuration.api_key_prefix = {"authorization": "Bearer"}
        return client.ApiClient(configuration)


def _start_closed(data_dir: Path, flags: tuple[str, ...]) -> ServerProcess:
    """A server that answers nobody anonymous, /readyz included: wait for it with a token."""
    port = free_port()
    data_dir.mkdir(parents=True)
    log = open(data_dir / "server.log", "ab")  # noqa: SIM115 - lives as long as the process
    process = subprocess.Popen([sys.executable, "-m", "pilothouse", "server", "--data-dir", str(data_dir),
                                "--port", str(port), *server_flags(False, flags)], stdout=log,
                               stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        try:
            ready = urllib.request.Request(url + "/readyz", headers={"Authorization": "Bearer admin-token"})
            with urllib.request.urlopen(ready, timeout=1) as response:
                if response.read() == b"ok":
                    return ServerProcess(url, data_dir, data_dir / "kubeconfig.yaml", process, port)
        except OSError:
            time.sleep(0.05)
    terminate(process)
    raise RuntimeError("server did not become ready")


@contextmanager
def auth_cluster(directory: Path, *extra: str) -> Iterator[AuthCluster]:
    token_file = directory / "tokens.csv"
    token_file.write_text("".join(f'{token},{user},{uid},"{groups}"\n'
                                  for token, (user, uid, groups) in TOKENS.items()))
    flags = ("--token-auth-file", str(token_file), "--authorization-mode", "RBAC", *extra)
    server = (start_server_process(directory / "data", extra=flags) if "--no-anonymous-auth" not in extra
              else _start_closed(directory / "data", flags))
    try:
        with tls_front(server.port, directory) as url:
            yield AuthCluster(server, url)
    finally:
        server.stop()


def csr_request(common_name: str) -> str:
    """A PEM certificate request for ``common_name``, base64 as a CSR's ``spec.request`` holds it."""
    key = ec.generate_private_key(ec.SECP256R1())
    request = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
               .sign(key, hashes.SHA256()))
    return base64.b64encode(request.public_bytes(serialization.Encoding.PEM)).decode()
