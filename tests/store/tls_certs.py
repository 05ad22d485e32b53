"""Throwaway PKI for TLS tests: a CA, a server certificate for 127.0.0.1/localhost and a client certificate.

The etcd TLS tests need real certificates (etcd verifies client certificates itself, so nothing can be
mocked), and checking PEM files into the repository would mean expiring test fixtures; generating them
takes a few milliseconds with EC keys. Needs the ``cryptography`` package (a test extra).

The server certificate carries both the serverAuth and clientAuth key usages on purpose: etcd 3.4's
JSON gateway dials etcd's own gRPC port with the server certificate as its *client* certificate, so with
``--client-cert-auth`` a serverAuth-only certificate makes every gateway request fail.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["CertFiles", "make_ca", "make_tls_files"]


@dataclass(frozen=True)
class CertFiles:
    """PEM file paths of one generated PKI."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


@dataclass(frozen=True)
class _Issuer:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)  # etcd and OpenSSL do not insist, but a world-readable key is a bad example
    return path


def _write_cert(cert: x509.Certificate, path: Path) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _builder(subject: str, issuer: x509.Name | None, public_key: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.datetime.now(datetime.UTC)
    return (x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(issuer or name)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            # Backdated a little so a clock a few seconds behind does not reject a fresh certificate.
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1)))


def _new_ca(common_name: str) -> _Issuer:
    key = _key()
    cert = (_builder(common_name, None, key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return _Issuer(cert, key)


def _leaf(ca: _Issuer, common_name: str, usages: list[x509.ObjectIdentifier],
          sans: list[x509.GeneralName]) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    builder = (_builder(common_name, ca.cert.subject, key.public_key())
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False, key_cert_sign=False,
                                            crl_sign=False, content_commitment=False, data_encipherment=False,
                                            key_agreement=False, encipher_only=False, decipher_only=False),
                              critical=True)
               .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
                              critical=False))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca.key, hashes.SHA256()), key


def make_ca(directory: Path, name: str = "ca") -> tuple[Path, Path]:
    """A lone CA (e.g. the "wrong CA" of a test): ``(cert_path, key_path)`` under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = _new_ca(f"pilothouse test {name}")
    return _write_cert(ca.cert, directory / f"{name}.crt"), _write_key(ca.key, directory / f"{name}.key")


def make_tls_files(directory: Path) -> CertFiles:
    """A CA, a server cert (127.0.0.1, ::1, localhost) and a client cert, all written under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = _new_ca("pilothouse test ca")
    server, server_key = _leaf(
        ca, "etcd-server", [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
         x509.IPAddress(ipaddress.ip_address("::1"))])
    client, client_key = _leaf(ca, "kube-apiserver-etcd-client", [ExtendedKeyUsageOID.CLIENT_AUTH], [])
    return CertFiles(
        ca_cert=_write_cert(ca.cert, directory / "ca.crt"),
        ca_key=_write_key(ca.key, directory / "ca.key"),
        server_cert=_write_cert(server, directory / "server.crt"),
        server_key=_write_key(server_key, directory / "server.key"),
        client_cert=_write_cert(client, directory / "client.crt"),
        client_key=_write_key(client_key, directory / "client.key"),
    )
