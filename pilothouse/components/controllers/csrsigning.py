"""The CSR signing controller: approved CertificateSigningRequests for the signers the cluster CA
stands for get their certificate in ``status.certificate``
(``pkg/controller/certificates/signer/signer.go``).

kube-controller-manager signs ``kubernetes.io/kube-apiserver-client``,
``kubernetes.io/kube-apiserver-client-kubelet`` and ``kubernetes.io/kubelet-serving`` with the files
``--cluster-signing-cert-file``/``--cluster-signing-key-file`` name (``pilothouse server --secure``
passes its ``<data-dir>/pki/ca.crt`` and ``ca.key``). Without them the controller signs nothing.
The certificate lasts ``spec.expirationSeconds`` (at least 10 minutes) or a year
(``--cluster-signing-duration``), never past the CA; the subject and key are the request's.
"""

from __future__ import annotations

import base64
import datetime
import logging
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from pilothouse.client import errors
from pilothouse.client.informer import EventHandler, Informer
from pilothouse.client.rest import resource
from pilothouse.components.controllers.base import Controller, ControllerContext
from pilothouse.machinery import pki
from pilothouse.machinery.meta import Object

__all__ = ["CSRS", "SIGNERS", "CSRSigningController", "sign"]

log = logging.getLogger("pilothouse.controllers.csrsigning")


CSRS = resource("certificates.k8s.io", "v1", "certificatesigningrequests")
SIGNERS = ("kubernetes.io/kube-apiserver-client", "kubernetes.io/kube-apiserver-client-kubelet",
           "kubernetes.io/kubelet-serving")
DEFAULT_DURATION = datetime.timedelta(days=365)
MIN_DURATION = datetime.timedelta(minutes=10)
BACKDATE = datetime.timedelta(minutes=5)
_EXTENDED = {"client auth": ExtendedKeyUsageOID.CLIENT_AUTH, "server auth": ExtendedKeyUsageOID.SERVER_AUTH}


def _conditions(csr: Object) -> set[str]:
    return {str(c.get("type")) for c in (csr.get("status") or {}).get("conditions") or []}


def sign(ca: pki.CertKey, request_pem: bytes, usages: list[str], now: datetime.datetime,
         duration: datetime.timedelta) -> bytes:
    """The certificate for a PKCS#10 request: its subject, SANs and key; the requested usages."""
    request = x509.load_pem_x509_csr(request_pem)
    if not request.is_signature_valid:
        raise ValueError("the request's signature is invalid")
    not_after = min(now + duration, ca.cert.not_valid_after_utc)
    usage_set = set(usages)
    builder = (x509.CertificateBuilder().subject_name(request.subject).issuer_name(ca.cert.subject)
               .public_key(request.public_key()).serial_number(x509.random_serial_number())
               # Backdated by 5 minutes for clock skew, as the Kubernetes signer does; by a tenth of a
               # shorter life (a test's --cluster-signing-duration of seconds), so that the 70-90%
               # point a client rotates at still lies ahead of it, as machinery/pki.py backdates.
               .not_valid_before(now - min(BACKDATE, duration / 10)).not_valid_after(not_after)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(
                   digital_signature="digital signature" in usage_set, key_encipherment="key encipherment" in usage_set,
                   key_cert_sign=False, content_commitment=False, data_encipherment=False, key_agreement=False,
                   crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False))
    extended = [_EXTENDED[u] for u in usages if u in _EXTENDED]
    if extended:
        builder = builder.add_extension(x509.ExtendedKeyUsage(extended), critical=False)
    try:
        sans = request.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        builder = builder.add_extension(sans, critical=False)
    except x509.ExtensionNotFound:
        pass
    return builder.sign(ca.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


class CSRSigningController(Controller):
    name = "csrsigning"
    workers = 1

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        cert_file = str(ctx.options.get("cluster_signing_cert_file") or "")
        key_file = str(ctx.options.get("cluster_signing_key_file") or "")
        self.ca: pki.CertKey | None = None
        seconds = ctx.options.get("cluster_signing_duration")
        self.duration = datetime.timedelta(seconds=float(seconds)) if seconds else DEFAULT_DURATION
        try:
            if cert_file and key_file:
                self.ca = pki.load_cert_key(Path(cert_file).read_bytes(), Path(key_file).read_bytes())
        except (OSError, ValueError) as error:  # plain HTTP servers have no CA
            log.info("cluster signing files unreadable (%s)", error)
        self.informer: Informer = ctx.informers.informer(CSRS)
        if self.ca is None:
            log.info("no --cluster-signing-cert-file/--cluster-signing-key-file: CSRs are not signed")
            return
        self.informer.add_handler(EventHandler.on_object(self.enqueue))

    async def sync(self, key: str) -> None:
        csr = self.informer.get(key)
        if self.ca is None or csr is None:
            return
        spec, status = csr.get("spec") or {}, csr.get("status") or {}
        conditions = _conditions(csr)
        if (spec.get("signerName") not in SIGNERS or status.get("certificate") or "Approved" not in conditions
                or conditions & {"Denied", "Failed"}):
            return
        duration = self.duration
        if spec.get("expirationSeconds"):
            # signer.go's duration(): the requested one, at most the signer's, at least 10 minutes
            requested = datetime.timedelta(seconds=int(spec["expirationSeconds"]))
            duration = self.duration if requested > self.duration else max(MIN_DURATION, requested)
        now = datetime.datetime.now(datetime.UTC)
        try:
            certificate = sign(self.ca, base64.b64decode(spec.get("request") or ""), list(spec.get("usages") or []),
                               now, duration)
        except ValueError as error:
            status = {**status, "conditions": [*(status.get("conditions") or []), {
                "type": "Failed", "status": "True", "reason": "SignerValidationFailure", "message": str(error),
                "lastUpdateTime": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "lastTransitionTime": now.strftime("%Y-%m-%dT%H:%M:%SZ")}]}
        else:
            status = {**status, "certificate": base64.b64encode(certificate).decode()}
        try:
            await self.client.update_status(CSRS, {**csr, "status": status})
        except errors.NotFoundError:
            pass
