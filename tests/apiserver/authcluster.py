"""A server on the defaults (HTTPS, ``--authorization-mode=Node,RBAC``) with a ``--token-auth-file``,
reached by the real kubectl and the official client with bearer tokens over its own TLS, verified
against the cluster CA it creates."""

from __future__ import annotations

import base64
import os
import ssl
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

from tests.conftest import KUBECTL, ServerProcess, free_port, start_server_process, terminate

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

    @property
    def ca(self) -> Path:
        return self.server.data_dir / "pki" / "ca.crt"

    @property
    def context(self) -> ssl.SSLContext:
        """For urllib: the cluster CA, no client certificate (a token or nobody is the caller)."""
        return ssl.create_default_context(cafile=str(self.ca))

    def kubectl(self, token: str | None, *args: str, check: bool = True,
                input: str | None = None) -> subprocess.CompletedProcess[str]:
        """The real kubectl over HTTPS, with ``--token`` when given."""
        env = {**os.environ, "HOME": str(self.server.data_dir / "home"), "KUBECONFIG": "/dev/null"}
        credentials = ["--token", token] if token else []
        result = subprocess.run([KUBECTL, "--server", self.server.url, "--certificate-authority", str(self.ca),
                                 *credentials, *args], capture_output=True, text=True, env=env, timeout=60,
                                input=input if input is not None else "")
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}")
        return result

    def api(self, token: str) -> client.ApiClient:
        """The official client over HTTPS with a bearer token."""
        configuration = client.Configuration()
        configuration.host = self.server.url
        configuration.ssl_ca_cert = str(self.ca)
        configuration.api_key = {"authorization": token}
        configuration.api_key_prefix = {"authorization": "Bearer"}
        return client.ApiClient(configuration)


def _start_closed(data_dir: Path, flags: tuple[str, ...]) -> ServerProcess:
    """A server that answers nobody anonymous, /readyz included: wait for it with a token."""
    port = free_port()
    data_dir.mkdir(parents=True)
    log = open(data_dir / "server.log", "ab")  # noqa: SIM115 - lives as long as the process
    process = subprocess.Popen([sys.executable, "-m", "pilothouse", "server", "--data-dir", str(data_dir),
                                "--port", str(port), *flags], stdout=log, stderr=subprocess.STDOUT)
    url = f"https://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        try:
            context = ssl.create_default_context(cafile=str(data_dir / "pki" / "ca.crt"))
            ready = urllib.request.Request(url + "/readyz", headers={"Authorization": "Bearer admin-token"})
            with urllib.request.urlopen(ready, timeout=1, context=context) as response:
                if response.read() == b"ok":
                    return ServerProcess(url, data_dir, data_dir / "kubeconfig.yaml", process, port)
        except OSError:  # the CA not written yet, the port not open yet
            time.sleep(0.05)
    terminate(process)
    raise RuntimeError("server did not become ready")


@contextmanager
def auth_cluster(directory: Path, *extra: str) -> Iterator[AuthCluster]:
    token_file = directory / "tokens.csv"
    token_file.write_text("".join(f'{token},{user},{uid},"{groups}"\n'
                                  for token, (user, uid, groups) in TOKENS.items()))
    flags = ("--token-auth-file", str(token_file), *extra)
    server = (start_server_process(directory / "data", extra=flags, secure=True)
              if "--no-anonymous-auth" not in extra else _start_closed(directory / "data", flags))
    try:
        yield AuthCluster(server)
    finally:
        server.stop()


def csr_request(common_name: str) -> str:
    """A PEM certificate request for ``common_name``, base64 as a CSR's ``spec.request`` holds it."""
    key = ec.generate_private_key(ec.SECP256R1())
    request = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
               .sign(key, hashes.SHA256()))
    return base64.b64encode(request.public_bytes(serialization.Encoding.PEM)).decode()
