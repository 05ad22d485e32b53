"""kubelet TLS bootstrapping: with only a bootstrap kubeconfig (the CA and a bootstrap token), the agent
asks for its client certificate through the CertificateSigningRequest API
(``pkg/kubelet/certificate/bootstrap/bootstrap.go``).

It sends a ``kubernetes.io/kube-apiserver-client-kubelet`` request for ``CN=system:node:<name>``,
``O=system:nodes`` (digital signature, client auth), waits until the CSR approving controller
approved it and the signing controller issued it, writes certificate and key to
``<root-dir>/pki/kubelet-client-<time>.pem`` with ``kubelet-client-current.pem`` pointing at it, and
a kubeconfig naming that file, which the agent then runs with. An existing kubeconfig whose
certificate has not expired skips all this, as kubelet does.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import logging
import os
import secrets
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pilothouse.client.kubeconfig import load_kubeconfig
from pilothouse.client.rest import APIClient, resource
from pilothouse.machinery.kubeconfig import build_kubeconfig

__all__ = ["BootstrapError", "bootstrap_client_certificate", "client_certificate_valid", "request_node_certificate",
           "store_client_certificate"]

log = logging.getLogger("pilothouse.agent.bootstrap")

CSRS = resource("certificates.k8s.io", "v1", "certificatesigningrequests")
SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"


class BootstrapError(Exception):
    pass


def client_certificate_valid(kubeconfig: Path) -> bool:
    """kubelet's isClientConfigStillValid: the kubeconfig exists and its certificate has not expired."""
    try:
        document: dict[str, Any] = yaml.safe_load(kubeconfig.read_text()) or {}
        user = (document.get("users") or [{}])[0].get("user") or {}
        path = user.get("client-certificate")
        pem = (kubeconfig.parent / str(path)).read_bytes() if path else base64.b64decode(
            user.get("client-certificate-data") or "")
        cert = x509.load_pem_x509_certificate(pem)
    except (OSError, ValueError, IndexError, AttributeError):
        return False
    return cert.not_valid_after_utc > datetime.datetime.now(datetime.UTC)


async def _await_certificate(client: APIClient, name: str, timeout: float) -> bytes:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        csr = await client.get(CSRS, name)
        status = csr.get("status") or {}
        for condition in status.get("conditions") or []:
            if condition.get("type") in ("Denied", "Failed"):
                raise BootstrapError(f"certificate signing request {name} is {condition['type'].lower()}: "
                                     f"{condition.get('message', '')}")
        if status.get("certificate"):
            return base64.b64decode(status["certificate"])
        await asyncio.sleep(1.0)
    raise BootstrapError(f"timed out waiting for the certificate of {name}")


async def request_node_certificate(client: APIClient, node_name: str, timeout: float) -> tuple[bytes, bytes]:
    """A new key and the certificate the cluster issued for it through a ``node-csr-*`` CSR made with
    ``client`` (a bootstrap token's, or the node's own when rotating): (certificate PEM, key PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"),
                         x509.NameAttribute(NameOID.COMMON_NAME, f"system:node:{node_name}")])
    request = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    name = f"node-csr-{secrets.token_hex(8)}"
    await client.create(CSRS, {
        "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": {"name": name},
        "spec": {"request": base64.b64encode(request.public_bytes(serialization.Encoding.PEM)).decode(),
                 "signerName": SIGNER, "usages": ["digital signature", "client auth"]}})
    log.info("waiting for the client certificate of CSR %s", name)
    certificate = await _await_certificate(client, name, timeout)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return certificate, key_pem


def store_client_certificate(pki_dir: Path, certificate: bytes, key_pem: bytes) -> Path:
    """Write ``<pki_dir>/kubelet-client-<time>.pem`` and point ``kubelet-client-current.pem`` at it
    (one rename, so a reader sees the old pair or the new one); the latter's path."""
    pki_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d-%H-%M-%S-%f")
    pem_path = pki_dir / f"kubelet-client-{stamp}.pem"
    fd = os.open(pem_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(certificate + key_pem)
    current = pki_dir / "kubelet-client-current.pem"
    temporary = pki_dir / "kubelet-client-current.pem.tmp"
    temporary.unlink(missing_ok=True)
    temporary.symlink_to(pem_path.name)
    temporary.replace(current)
    log.info("client certificate written to %s", pem_path)
    return current


async def bootstrap_client_certificate(bootstrap_kubeconfig: str, kubeconfig: Path, root_dir: Path,
                                       node_name: str, timeout: float = 900.0) -> None:
    if client_certificate_valid(kubeconfig):
        return
    target = load_kubeconfig(bootstrap_kubeconfig)
    async with APIClient(target, user_agent=f"pilothouse-agent/{node_name}") as client:
        certificate, key_pem = await request_node_certificate(client, node_name, timeout)
    current = store_client_certificate(root_dir / "pki", certificate, key_pem)
    document = build_kubeconfig(target.server, user="default-auth", ca_pem=target.ca_pem)
    # Paths, not data: a rotated certificate replaces the symlink and the kubeconfig stays.
    document["users"][0]["user"] = {"client-certificate": str(current.resolve().parent / current.name),
                                    "client-key": str(current.resolve().parent / current.name)}
    kubeconfig.parent.mkdir(parents=True, exist_ok=True)
    kubeconfig.write_text(yaml.safe_dump(document, sort_keys=False))
    os.chmod(kubeconfig, 0o600)
