"""kube-apiserver's token authentication cache (``apiserver/pkg/authentication/token/cache``).

``BuiltInAuthenticationOptions`` wraps the union of token authenticators in a cache that keeps a
successful authentication for 10 s (``TokenSuccessCacheTTL``) and does not keep failures
(``TokenFailureCacheTTL`` 0). What it saves here is the service-account path (a signature check and
one to three store reads per request) and the bootstrap-token path (a store read). The price is
upstream's: a deleted ServiceAccount, bound Pod or bootstrap-token Secret, or an expired bootstrap
token, keeps authenticating for up to the TTL after its last successful use was cached.

Keys are as upstream's ``keyFunc``: a keyed hash (a random key per process) of the audiences and the
token, so the cache holds no token in the clear. The clock is ``time.monotonic``, passed in so tests
can move it.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable

from pilothouse.apiserver.auth import UserInfo

__all__ = ["SUCCESS_TTL", "TokenCache"]

#: ``TokenSuccessCacheTTL`` of kube-apiserver's built-in authentication options.
SUCCESS_TTL = 10.0
#: Upstream keeps 4096 entries in each of 32 stripes; a bound of the same order, dropped when full
#: rather than evicted one by one (entries are at most 10 s old anyway).
_MAX_ENTRIES = 65_536


class TokenCache:
    def __init__(self, ttl: float = SUCCESS_TTL, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.clock = clock
        self._salt = os.urandom(32)
        self._entries: dict[bytes, tuple[float, UserInfo]] = {}

    def key(self, token: str, audiences: tuple[str, ...]) -> bytes:
        # Each audience and the token length-prefixed, as upstream's keyFunc writes them, so no two
        # (audiences, token) pairs hash the same input.
        digest = hashlib.blake2b(key=self._salt, digest_size=32)
        for part in (*audiences, token):
            data = part.encode()
            digest.update(len(data).to_bytes(8, "little"))
            digest.update(data)
        digest.update(len(audiences).to_bytes(8, "little"))
        return digest.digest()

    def get(self, key: bytes) -> UserInfo | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, user = entry
        if self.clock() >= expires:
            del self._entries[key]
            return None
        return user

    def put(self, key: bytes, user: UserInfo) -> None:
        if self.ttl <= 0:
            return
        if len(self._entries) >= _MAX_ENTRIES:
            self._entries.clear()
        self._entries[key] = (self.clock() + self.ttl, user)
