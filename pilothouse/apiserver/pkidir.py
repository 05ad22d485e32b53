"""The cluster's PKI on disk (``<data-dir>/pki``) and the API server's TLS listener context.

Layout, after kubeadm's ``/etc/kubernetes/pki``::

    ca.crt, ca.key                                   the cluster CA (created on first start)
    apiserver.crt, apiserver.key                     the serving certificate (renewed before expiry)
    apiserver-kubelet-client.crt/.key                the API server's client certificate towards agents

Bring-your-own: ``--tls-cert-file``/``--tls-private-key-file`` replace the serving pair (reloaded
when the files change, as kube-apiserver's dynamic serving certificates are), ``--client-ca-file``
replaces the CA that client certificates are verified against. The certificate code itself is in
:mod:`pilothouse.machinery.pki`; this module owns the files and the ``ssl.SSLContext``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import logging
import os
import socket
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pilothouse.machinery import pki

__all__ = ["SHARED_FILES", "ClusterPKI", "TLSOptions", "adopt_shared", "host_names_and_addresses", "utcnow"]

log = logging.getLogger("pilothouse.apiserver.pki")

#: The Service names every in-cluster client resolves the API server by.
KUBERNETES_SERVICE_NAMES = ("kubernetes", "kubernetes.default", "kubernetes.default.svc",
                            "kubernetes.default.svc.cluster.local")


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@dataclass
class TLSOptions:
    """kube-apiserver's serving flags, plus what the tests inject (a short life, a frequent check)."""

    tls_cert_file: str | None = None
    tls_private_key_file: str | None = None
    client_ca_file: str | None = None
    #: Extra subjectAltNames (k3s's --tls-san): names or addresses the server is also reached by.
    tls_sans: tuple[str, ...] = ()
    serving_validity: datetime.timedelta = pki.LEAF_VALIDITY
    #: Seconds between checks of the serving certificate's remaining life.
    check_interval: float = 3600.0
    #: Another server's PKI directory (``--cluster-pki-from``): its CA and service-account key are
    #: this server's too, as ``kubeadm join --control-plane`` copies them to every control-plane node.
    cluster_pki_from: str | None = None
    #: kubeadm's ``--upload-certs`` and ``--certificate-key`` (apiserver/uploadcerts.py).
    upload_certs: bool = False
    certificate_key: str = ""


def host_names_and_addresses(bind_address: str) -> tuple[list[str], list[str]]:
    """The names and addresses this host is reached by: loopback, the hostname and FQDN and what they
    resolve to, the bind address when it is a specific one, the default route's source addresses."""
    names = ["localhost"]
    addresses = ["127.0.0.1", "::1"]
    for name in (socket.gethostname(), socket.getfqdn()):
        if name and name not in names:
            names.append(name.lower())
        with contextlib.suppress(OSError):
            for *_, sockaddr in socket.getaddrinfo(name, None):
                addresses.append(str(sockaddr[0]).split("%", 1)[0])
    if bind_address not in ("", "0.0.0.0", "::"):
        addresses.append(bind_address)
    addresses += _outbound_addresses()
    return names, list(dict.fromkeys(addresses))


def _outbound_addresses() -> list[str]:
    """The addresses other hosts most likely reach this one by: the source address the kernel picks for
    the default route (a UDP connect sends nothing; it only selects the route)."""
    found = []
    for family, target in ((socket.AF_INET, "192.0.2.1"), (socket.AF_INET6, "2001:db8::1")):
        with contextlib.suppress(OSError), socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect((target, 9))
            found.append(str(probe.getsockname()[0]))
    return found


def _write(path: Path, data: bytes, private: bool) -> None:
    """Atomically, and private keys readable by the owner only from their first byte."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    tmp.replace(path)


#: What every API server of one cluster holds alike (kubeadm's ``--upload-certs`` set, less the
#: front-proxy and etcd CAs pilothouse does not make): the CA that signs serving and client
#: certificates, and the key that signs service-account tokens. Each server keeps its own serving
#: certificate (its own names) and its own client certificate towards agents, issued from that CA.
SHARED_FILES = {"ca.crt": False, "ca.key": True, "sa.key": True}


def adopt_shared(source: Path, directory: Path) -> None:
    """Copy the cluster-wide files from ``source`` where ``directory`` lacks them; a data dir that
    already holds different ones belongs to another cluster and is refused (FileExistsError), as
    kubeadm refuses to overwrite a CA it did not write."""
    for name, private in SHARED_FILES.items():
        try:
            wanted = (source / name).read_bytes()
        except OSError as error:
            raise FileNotFoundError(f"--cluster-pki-from {source}: cannot read {name}: {error.strerror}") from None
        target = directory / name
        if not target.exists():
            _write(target, wanted, private)
            log.info("copied the cluster's %s from %s", name, source)
        elif target.read_bytes() != wanted:
            raise FileExistsError(f"{target} differs from {source / name}: this data dir belongs to another "
                                  f"cluster (remove its pki directory to join this one)")


class ClusterPKI:
    """One data dir's PKI: creates and renews its files, issues client certificates, and owns the
    listener's SSLContext (``clock`` is injectable so renewal is testable without waiting)."""

    def __init__(self, directory: Path, options: TLSOptions | None = None,
                 clock: Callable[[], datetime.datetime] = utcnow) -> None:
        self.directory = directory
        self.options = options or TLSOptions()
        self.clock = clock
        self.ca: pki.CertKey | None = None
        self._context: ssl.SSLContext | None = None
        self._serving_names: tuple[list[str], list[str]] = ([], [])
        self._loaded_mtimes = (0.0, 0.0)

    # ------------------------------------------------------------ files

    @property
    def ca_cert_path(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def serving_cert_path(self) -> Path:
        return Path(self.options.tls_cert_file) if self.options.tls_cert_file else self.directory / "apiserver.crt"

    @property
    def serving_key_path(self) -> Path:
        if self.options.tls_private_key_file:
            return Path(self.options.tls_private_key_file)
        return self.directory / "apiserver.key"

    @property
    def client_ca_path(self) -> Path:
        return Path(self.options.client_ca_file) if self.options.client_ca_file else self.ca_cert_path

    def _store(self, name: str, pair: pki.CertKey) -> None:
        _write(self.directory / f"{name}.crt", pair.cert_pem, private=False)
        _write(self.directory / f"{name}.key", pair.key_pem, private=True)

    def _load(self, name: str) -> pki.CertKey | None:
        cert, key = self.directory / f"{name}.crt", self.directory / f"{name}.key"
        if not (cert.exists() and key.exists()):
            return None
        return pki.load_cert_key(cert.read_bytes(), key.read_bytes())

    # ------------------------------------------------------------ lifecycle

    def ensure(self, bind_address: str, service_ip: str) -> None:
        """Create what is missing and renew what is due: the CA, the serving certificate (unless
        brought), the API server's client certificate towards agents."""
        self.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        if self.options.cluster_pki_from:
            adopt_shared(Path(self.options.cluster_pki_from), self.directory)
        now = self.clock()
        self.ca = self._load("ca")
        if self.ca is None:
            self.ca = pki.new_ca("kubernetes", now)
            self._store("ca", self.ca)
            log.info("created the cluster CA in %s", self.directory)
        names, addresses = host_names_and_addresses(bind_address)
        for san in self.options.tls_sans:
            try:
                addresses.append(str(ipaddress.ip_address(san)))
            except ValueError:
                names.append(san)
        self._serving_names = ([*KUBERNETES_SERVICE_NAMES, *names], [service_ip, *addresses])
        if not self.options.tls_cert_file:
            self._renew_serving()
        if self.options.client_ca_file and self.ca.cert not in self.client_cas():
            log.warning("--client-ca-file does not hold the cluster CA: the certificates in the kubeconfigs "
                        "this server writes will not authenticate")
        kubelet_client = self._load("apiserver-kubelet-client")
        if kubelet_client is None or self._stale(kubelet_client, now):
            self._store("apiserver-kubelet-client",
                        pki.issue_client(self.ca, "kube-apiserver-kubelet-client", ["system:masters"], now))

    def _stale(self, pair: pki.CertKey, now: datetime.datetime) -> bool:
        """Due for renewal, or not signed by the current CA (one copied in from another server)."""
        assert self.ca is not None
        return pki.needs_renewal(pair.cert, now) or not pki.issued_by(pair.cert, self.ca.cert)

    def _renew_serving(self) -> bool:
        """Issue a new serving certificate when there is none, it is due for renewal or was signed by
        another CA, or it does not name every current name and address (the host was renamed, a
        --tls-san was added)."""
        assert self.ca is not None
        now = self.clock()
        current = self._load("apiserver")
        dns, ips = self._serving_names
        if (current is not None and not self._stale(current, now)
                and pki.san_names(current.cert) == (set(dns), {str(ipaddress.ip_address(a)) for a in ips})):
            return False
        self._store("apiserver", pki.issue_serving(self.ca, "kube-apiserver", dns, ips, now,
                                                   self.options.serving_validity))
        log.info("issued a new serving certificate (valid %s)", self.options.serving_validity)
        return True

    def issue_client(self, user: str, groups: Iterable[str]) -> pki.CertKey:
        """A client certificate signed by the cluster CA (for a kubeconfig)."""
        if self.ca is None:
            self.ca = self._load("ca")
        if self.ca is None:
            raise RuntimeError(f"no cluster CA in {self.directory}: start the server with --secure first")
        return pki.issue_client(self.ca, user, groups, self.clock())

    def ca_bundle(self) -> bytes:
        """What a client should trust to verify the serving certificate: the cluster CA, plus the rest of
        a brought serving certificate's chain (its issuers)."""
        bundle = self.ca_cert_path.read_bytes()
        if self.options.tls_cert_file:
            chain = x509.load_pem_x509_certificates(self.serving_cert_path.read_bytes())
            for issuer in chain[1:]:
                bundle += issuer.public_bytes(serialization.Encoding.PEM)
        return bundle

    def client_cas(self) -> list[x509.Certificate]:
        return x509.load_pem_x509_certificates(self.client_ca_path.read_bytes())

    def kubelet_client_context(self) -> ssl.SSLContext:
        """How the API server dials agents: with its ``apiserver-kubelet-client`` certificate, not
        verifying the agent's (self-signed) serving certificate, as kube-apiserver does without
        ``--kubelet-certificate-authority``."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.load_cert_chain(self.directory / "apiserver-kubelet-client.crt",
                                self.directory / "apiserver-kubelet-client.key")
        return context

    # ------------------------------------------------------------ serving

    def ssl_context(self) -> ssl.SSLContext:
        """The listener's context: our certificate, client certificates requested and verified
        against the client CA when given (kube-apiserver asks for one but does not require it)."""
        if self._context is None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            # No renegotiation, as Go's TLS server: a connection's client certificate is then fixed
            # at its handshake, which is what lets x509auth remember its user per connection.
            context.options |= ssl.OP_NO_RENEGOTIATION
            # kubectl's SPDY/websocket upgrades need HTTP/1.1; aiohttp serves nothing else.
            context.set_alpn_protocols(["http/1.1"])
            context.verify_mode = ssl.CERT_OPTIONAL
            context.load_verify_locations(cafile=str(self.client_ca_path))
            self._context = context
            self._load_serving()
        return self._context

    def _load_serving(self) -> None:
        """(Re)load the serving pair into the live context. OpenSSL copies the certificate into each
        connection when the connection is made, so connections already open keep theirs and new ones
        get the new one: nothing is dropped."""
        assert self._context is not None
        files = str(self.serving_cert_path), str(self.serving_key_path)
        # Before reading: a file replaced while we read is then seen as changed at the next check.
        mtimes = self._mtimes()
        # Tried on a scratch context first: a failed load can leave a context holding the new
        # certificate with the old key (a pair caught mid-replacement on disk), and every later
        # handshake would fail. The live context only ever gets a pair that loaded whole.
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(*files)
        self._context.load_cert_chain(*files)
        self._loaded_mtimes = mtimes

    def _mtimes(self) -> tuple[float, float]:
        return self.serving_cert_path.stat().st_mtime, self.serving_key_path.stat().st_mtime

    def refresh(self) -> bool:
        """One renewal check: a due certificate is re-issued (or a brought one re-read after it
        changed on disk) and swapped into the listener. True when the certificate changed."""
        brought = bool(self.options.tls_cert_file)
        changed = self._mtimes() != self._loaded_mtimes if brought else self._renew_serving()
        if changed and self._context is not None:
            self._load_serving()
        return changed

    async def keep_fresh(self) -> None:
        """Check every ``check_interval`` seconds for as long as the server runs."""
        while True:
            await asyncio.sleep(self.options.check_interval)
            try:
                self.refresh()
            except (OSError, ValueError, ssl.SSLError):
                log.exception("serving certificate renewal failed; keeping the current one")
