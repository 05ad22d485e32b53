"""x509 client-certificate authentication, as kube-apiserver's ``--client-ca-file`` authenticator.

The TLS listener asks every client for a certificate and OpenSSL verifies the chain against the
client CA during the handshake (a certificate from another CA ends the handshake). This authenticator
then reads the verified peer certificate: CN is the user name, each O a group, plus
``system:authenticated``. It checks issuer, validity and key usage once more itself, so that it holds
whatever the listener's settings, and remembers the answer per certificate: a keep-alive connection
presents the same bytes on every request, and an ECDSA verification per request would be waste.

It also remembers the answer per TLS connection (until the certificate expires): a connection's
peer certificate is fixed once its handshake is done (the listener refuses renegotiation, as Go's
TLS server, kube-apiserver's, does), so later requests on it skip re-encoding the certificate,
hashing it and looking it up.
"""

from __future__ import annotations

import datetime
import ssl
import weakref
from collections import OrderedDict
from collections.abc import Callable

from aiohttp import web
from cryptography import x509

from pilothouse.apiserver.auth import UserInfo
from pilothouse.machinery import pki
from pilothouse.machinery.errors import StatusError

__all__ = ["X509Authenticator"]

_CACHE_SIZE = 1024
#: (user, until when the answer holds), (None, None) for a connection whose certificate names nobody.
_Answer = tuple[UserInfo | None, datetime.datetime | None]


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class X509Authenticator:
    def __init__(self, cas: list[x509.Certificate],
                 clock: Callable[[], datetime.datetime] = _utcnow) -> None:
        self.cas = cas
        self.clock = clock
        #: DER → (user, notAfter); a bounded LRU.
        self._verified: OrderedDict[bytes, tuple[UserInfo, datetime.datetime]] = OrderedDict()
        #: TLS connection → (user, notAfter), or (None, None) for one without a certificate; an entry
        #: goes with its connection.
        self._connections: weakref.WeakKeyDictionary[ssl.SSLObject | ssl.SSLSocket, _Answer] = (
            weakref.WeakKeyDictionary())

    async def authenticate(self, request: web.Request) -> UserInfo | None:
        transport = request.transport
        ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
        if not isinstance(ssl_object, ssl.SSLObject | ssl.SSLSocket):
            return None
        known = self._connections.get(ssl_object)
        if known is not None and (known[1] is None or self.clock() <= known[1]):
            return known[0]
        answer = self._connections[ssl_object] = self._authenticate(ssl_object)
        return answer[0]

    def _authenticate(self, ssl_object: ssl.SSLObject | ssl.SSLSocket) -> _Answer:
        """(user, until when the answer holds): (None, None) when the certificate names nobody."""
        der = ssl_object.getpeercert(binary_form=True)
        if not der:
            return None, None
        now = self.clock()
        known = self._verified.get(der)
        if known is not None and now <= known[1]:
            self._verified.move_to_end(der)
            return known
        cert = x509.load_der_x509_certificate(der)
        if pki.verify_client(cert, self.cas, now) is not None:
            # kube-apiserver answers 401 for a certificate it cannot verify, whatever else was sent.
            raise StatusError(401, "Unauthorized", "Unauthorized")
        name, groups = pki.client_identity(cert)
        if not name:
            return None, None
        answer = self._verified[der] = (UserInfo(name, (*groups, "system:authenticated")), cert.not_valid_after_utc)
        if len(self._verified) > _CACHE_SIZE:
            self._verified.popitem(last=False)
        return answer
