"""kubelet's client certificate rotation (``--rotate-certificates``, on by default;
``k8s.io/client-go/util/certificate/certificate_manager.go``).

At a random moment between 70% and 90% of the current certificate's life the agent makes a new key
and asks for a certificate with its own node identity (a CSR the approving controller auto-approves
through ``certificatesigningrequests/selfnodeclient``), writes the pair beside the old one, moves
``kubelet-client-current.pem`` to it, and loads it into the TLS context every client of the agent
shares. It then closes the open connections, as kubelet does: the API server authenticated them once
at the handshake, with the old certificate. No restart: the kubeconfig names the symlink.

Only a kubeconfig whose ``client-certificate`` and ``client-key`` name one file (kubelet's
``kubelet-client-current.pem`` layout, which TLS bootstrapping writes) is rotated; embedded data or
a certificate someone else manages is left alone.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import random
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509

from pilothouse.client.rest import APIClient
from pilothouse.components.agent.bootstrap import request_node_certificate, store_client_certificate

__all__ = ["ClientCertificateRotation", "rotated_file", "rotation_deadline"]

log = logging.getLogger("pilothouse.agent.certrotation")

#: how long to wait for the signer before trying again (kubelet retries with backoff)
CSR_TIMEOUT = 300.0
RETRY = 5.0


def rotation_deadline(cert: x509.Certificate, rng: random.Random | None = None) -> datetime.datetime:
    """``nextRotationDeadline``: notBefore + 70-90% of the certificate's whole life."""
    not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
    share = 0.7 + 0.2 * (rng or random).random()
    return not_before + (not_after - not_before) * share


def rotated_file(kubeconfig: Path) -> Path | None:
    """The one file holding the client certificate and key that the kubeconfig names, or None."""
    try:
        document: dict[str, Any] = yaml.safe_load(kubeconfig.read_text()) or {}
        user = (document.get("users") or [{}])[0].get("user") or {}
    except (OSError, yaml.YAMLError, AttributeError, IndexError):
        return None
    cert, key = user.get("client-certificate"), user.get("client-key")
    if not cert or cert != key:
        return None
    return kubeconfig.parent / str(cert)


class ClientCertificateRotation:
    def __init__(self, client: APIClient, current: Path, node_name: str) -> None:
        self.client = client
        self.current = current
        self.node_name = node_name
        self.rotations = 0

    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.current.read_bytes())

    async def run(self) -> None:
        while True:
            deadline = rotation_deadline(self.certificate())
            wait = (deadline - datetime.datetime.now(datetime.UTC)).total_seconds()
            log.info("client certificate rotation in %.0fs (at %s)", max(wait, 0), deadline.isoformat())
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                await self.rotate()
            except asyncio.CancelledError:
                raise
            except Exception:  # the API server away, the CSR denied: keep the old one, try again
                log.warning("client certificate rotation failed; retrying in %.0fs", RETRY, exc_info=True)
                await asyncio.sleep(RETRY)

    async def rotate(self) -> None:
        certificate, key_pem = await request_node_certificate(self.client, self.node_name, CSR_TIMEOUT)
        current = store_client_certificate(self.current.parent, certificate, key_pem)
        context = self.client.config.ssl_context
        if context is not None:
            # New handshakes present the new pair; every client built on this context shares it.
            context.load_cert_chain(current)
        await self.client.close()  # kubelet closes its connections: they carry the old identity
        self.rotations += 1
        log.info("rotated the client certificate (%d)", self.rotations)
