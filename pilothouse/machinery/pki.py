"""Certificates for the cluster: a CA, serving and client certificates, renewal decisions.

Pure functions over the ``cryptography`` package (a well-kept binding to OpenSSL: writing ASN.1 and
signatures by hand would be neither short nor safe). No file or network I/O here: the API server
decides where the PEM bytes live (``apiserver/pkidir.py``), and every function that looks at the
time takes ``now`` so that expiry and renewal are testable with an injected clock.

Shapes follow kubeadm's: a self-signed CA valid for ten years, leaf certificates valid for one year,
the user in the subject (CN = user name, O = groups) as kube-apiserver's x509 authenticator reads it.
Keys are ECDSA P-256: every client we serve (Go's crypto/tls, OpenSSL) accepts them, and a TLS
handshake signs with the server's key, which is several times cheaper with P-256 than with RSA-2048.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "CA_VALIDITY",
    "LEAF_VALIDITY",
    "RENEW_FRACTION",
    "CertKey",
    "client_identity",
    "issue_client",
    "issue_serving",
    "issued_by",
    "load_cert_key",
    "needs_renewal",
    "new_ca",
    "san_names",
    "verify_client",
]

CA_VALIDITY = datetime.timedelta(days=3650)
LEAF_VALIDITY = datetime.timedelta(days=365)
#: Backdate every certificate a little, as kubeadm and client-go's cert helpers do, so a peer whose
#: clock is slightly behind ours does not see a certificate from the future: five minutes, or a tenth
#: of a short life (so that the renewal point stays where the lifetime puts it).
_BACKDATE = datetime.timedelta(minutes=5)
#: Renew when less than this share of a certificate's lifetime is left (client-go's certificate
#: manager rotates at 70-90% of the lifetime; one third left is the same idea, deterministic).
RENEW_FRACTION = 1 / 3

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class CertKey:
    """A certificate and its private key, with their PEM encodings (what files and kubeconfigs hold)."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        # "EC PRIVATE KEY" (SEC 1), as Go's tls.X509KeyPair and OpenSSL both read it.
        return self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                      serialization.NoEncryption())


def load_cert_key(cert_pem: bytes, key_pem: bytes) -> CertKey:
    key = serialization.load_pem_private_key(key_pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("only ECDSA keys are supported for certificates pilothouse signs")
    return CertKey(x509.load_pem_x509_certificate(cert_pem), key)


def _name(common_name: str, organizations: Iterable[str] = ()) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    return x509.Name([*attributes, x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey,
             now: datetime.datetime, not_after: datetime.datetime) -> x509.CertificateBuilder:
    return (x509.CertificateBuilder()
            .subject_name(subject).issuer_name(issuer).public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - min(_BACKDATE, (not_after - now) / 10)).not_valid_after(not_after)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False))


def new_ca(common_name: str, now: datetime.datetime, validity: datetime.timedelta = CA_VALIDITY) -> CertKey:
    """A self-signed CA (kubeadm names the cluster CA ``kubernetes``)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(common_name)
    cert = (_builder(name, name, key.public_key(), now, now + validity)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=True, key_cert_sign=True,
                                         content_commitment=False, data_encipherment=False, key_agreement=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return CertKey(cert, key)


def _leaf(ca: CertKey, subject: x509.Name, usage: x509.ObjectIdentifier, now: datetime.datetime,
          validity: datetime.timedelta, sans: list[x509.GeneralName]) -> CertKey:
    key = ec.generate_private_key(ec.SECP256R1())
    # Capped at the CA's own expiry: a leaf outliving its issuer would fail verification anyway.
    not_after = min(now + validity, ca.cert.not_valid_after_utc)
    builder = (_builder(subject, ca.cert.subject, key.public_key(), now, not_after)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=True, key_cert_sign=False,
                                            content_commitment=False, data_encipherment=False, key_agreement=False,
                                            crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return CertKey(builder.sign(ca.key, hashes.SHA256()), key)


def issue_serving(ca: CertKey, common_name: str, dns_names: Iterable[str], ip_addresses: Iterable[str],
                  now: datetime.datetime, validity: datetime.timedelta = LEAF_VALIDITY) -> CertKey:
    """A TLS server certificate for these names and addresses (kubeadm's ``apiserver.crt``)."""
    sans: list[x509.GeneralName] = [x509.DNSName(name) for name in dict.fromkeys(dns_names)]
    sans += [x509.IPAddress(ipaddress.ip_address(address)) for address in dict.fromkeys(ip_addresses)]
    return _leaf(ca, _name(common_name), ExtendedKeyUsageOID.SERVER_AUTH, now, validity, sans)


def issue_client(ca: CertKey, user: str, groups: Iterable[str], now: datetime.datetime,
                 validity: datetime.timedelta = LEAF_VALIDITY) -> CertKey:
    """A TLS client certificate naming a Kubernetes user: CN = user name, O = each group."""
    return _leaf(ca, _name(user, groups), ExtendedKeyUsageOID.CLIENT_AUTH, now, validity, [])


def san_names(cert: x509.Certificate) -> tuple[set[str], set[str]]:
    """(DNS names, IP addresses) of a certificate's subjectAltName."""
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set(), set()
    return (set(sans.get_values_for_type(x509.DNSName)),
            {str(address) for address in sans.get_values_for_type(x509.IPAddress)})


def issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    """Whether ``ca``'s key signed ``cert`` (a CA replaced on disk makes every leaf of the old one stale)."""
    try:
        cert.verify_directly_issued_by(ca)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def needs_renewal(cert: x509.Certificate, now: datetime.datetime, fraction: float = RENEW_FRACTION) -> bool:
    """True once less than ``fraction`` of the certificate's lifetime is left (or it is not yet valid)."""
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    if now < start:
        return True
    return (end - now) < (end - start) * fraction


def client_identity(cert: x509.Certificate) -> tuple[str, tuple[str, ...]]:
    """(user, groups) as kube-apiserver's x509 authenticator reads them: CN and every O."""
    common = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    organizations = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return (str(common[0].value) if common else "", tuple(str(o.value) for o in organizations))


def verify_client(cert: x509.Certificate, cas: Iterable[x509.Certificate], now: datetime.datetime) -> str | None:
    """None when ``cert`` is a client certificate issued by one of ``cas`` and valid at ``now``;
    otherwise why not (kube-apiserver's x509 authenticator refuses the same cases)."""
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        return "x509: certificate has expired or is not yet valid"
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if ExtendedKeyUsageOID.CLIENT_AUTH not in usages and ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE not in usages:
            return "x509: certificate specifies an incompatible key usage"
    except x509.ExtensionNotFound:
        pass  # no EKU: any usage, as Go's verifier allows
    if any(issued_by(cert, ca) for ca in cas):
        return None
    return "x509: certificate signed by unknown authority"
