"""x509 client-certificate authentication, as kube-apiserver's ``--client-ca-file`` authenticator.

The TLS listener asks every client for a certificate and OpenSSL verifies the chain against the
client CA during the handshake (a certificate from another CA ends the handshake). This authenticator
then reads the verified peer certificate: CN is the user name, each O a group, plus
``system:authenticated``. It checks issuer, validity and key usage once more itself, so that it holds
whatever the listener's settings, and remembers the answer per certificate: a keep-alive connection
presents the same bytes on every request, and an ECDSA verification per request would be waste.
"""

from __future__ import annotations

import datetime
import ssl
from collections import OrderedDict
from collections.abc import Callable

from aiohttp import web
from cryptography import x509

from pilothouse.apiserver.auth import UserInfo
from pilothouse.machinery import pki
from pilothouse.machinery.errors import StatusError

__all__ = ["X509Authenticator"]

_CACHE_SIZE = 1024


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class X509Authenticator:
    def __init__(self, cas: list[x509.Certificate],
                 clock: Callable[[], datetime.datetime] = _utcnow) -> None:
        self.cas = cas
        self.clock = clock
        #: DER → (user, notAfter); a bounded LRU.
        self._verified: OrderedDict[bytes, tuple[UserInfo, datetime.datetime]] = OrderedDict()

    async def authenticate(self, request: web.Request) -> UserInfo | None:
        transport = request.transport
        ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
        if not isinstance(ssl_object, ssl.SSLObject | ssl.SSLSocket):
            return None
        der = ssl_object.getpeercert(binary_form=True)
        if not der:
            return None
        now = self.clock()
        known = self._verified.get(der)
        if known is not None and now <= known[1]:
            self._verified.move_to_end(der)
            return known[0]
        cert = x509.load_der_x509_certificate(der)
        if pki.verify_client(cert, self.cas, now) is not None:
            # kube-apiserver answers 401 for a certificate it cannot verify, whatever else was sent.
            raise StatusError(401, "Unauthorized", "Unauthorized")
        name, groups = pki.client_identity(cert)
        if not name:
            return None
        user = UserInfo(name, (*groups, "system:authenticated"))
        self._verified[der] = (user, cert.not_valid_after_utc)
        if len(self._verified) > _CACHE_SIZE:
            self._verified.popitem(last=False)
        return user
