"""Service-account tokens for projected volumes, as the kubelet's token manager (``pkg/kubelet/token``).

A ``serviceAccountToken`` projection is filled with a token from the TokenRequest API
(``POST .../serviceaccounts/<sa>/token``) bound to the pod, for the projection's audience (none: the
API server's own) and lifetime. Tokens are cached per (account, audience, lifetime, pod uid) and
requested anew once 80% of their lifetime has passed (or 24 hours, whichever comes first) -- the
kubelet's ``requiresRefresh`` -- so that a reader always holds one with a fifth of its life left.
The clock is injectable so that the rule is testable without waiting out the API server's
10-minute minimum lifetime.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pilothouse.client.rest import APIClient, resource
from pilothouse.machinery.meta import Object

__all__ = ["MAX_TTL", "REFRESH_FRACTION", "TokenManager", "TokenRequester", "requester_for"]


#: (namespace, service account, TokenRequest body) -> the TokenRequest the API server answered.
TokenRequester = Callable[[str, str, Object], Awaitable[Object]]

#: token_manager.go: refresh after 80% of the TTL, and at least once a day.
REFRESH_FRACTION = 0.8
MAX_TTL = timedelta(hours=24)


@dataclass(frozen=True)
class _Issued:
    token: str
    issued: datetime
    expires: datetime


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class TokenManager:
    def __init__(self, request: TokenRequester, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._request = request
        self._clock = clock
        self._cache: dict[tuple[Any, ...], _Issued] = {}

    def now(self) -> datetime:
        """This manager's clock (the pod worker schedules refreshes by it)."""
        return self._clock()

    def _refresh_at(self, issued: _Issued) -> datetime:
        ttl = issued.expires - issued.issued
        return issued.issued + min(ttl * REFRESH_FRACTION, MAX_TTL)

    def requires_refresh(self, key: tuple[Any, ...]) -> bool:
        issued = self._cache.get(key)
        return issued is None or self._clock() >= self._refresh_at(issued)

    async def token(self, pod: Object, source: Object) -> str:
        """The token for a pod's ``serviceAccountToken`` projection ``source``: cached until due."""
        metadata = pod.get("metadata") or {}
        namespace = metadata.get("namespace", "default")
        account = (pod.get("spec") or {}).get("serviceAccountName") or "default"
        audience = source.get("audience") or ""
        seconds = int(source.get("expirationSeconds") or 3600)
        key = (namespace, account, audience, seconds, metadata.get("uid", ""))
        if not self.requires_refresh(key):
            return self._cache[key].token
        spec: Object = {"expirationSeconds": seconds,
                        "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": metadata.get("name", ""),
                                           "uid": metadata.get("uid", "")}}
        if audience:
            spec["audiences"] = [audience]
        now = self._clock()
        answer = await self._request(namespace, account, {"apiVersion": "authentication.k8s.io/v1",
                                                          "kind": "TokenRequest", "spec": spec})
        status = answer.get("status") or {}
        expires = _parse_time(status["expirationTimestamp"]) if status.get("expirationTimestamp") \
            else now + timedelta(seconds=seconds)
        # The server may shorten or (for the admission-added 3607 s) extend the lifetime: the TTL is
        # what it answered, counted from when we asked.
        self._cache[key] = _Issued(str(status.get("token", "")), now, expires)
        return self._cache[key].token

    def next_refresh(self, uid: str) -> datetime | None:
        """When the earliest of a pod's tokens falls due (its volumes should be rewritten then)."""
        due = [self._refresh_at(issued) for key, issued in self._cache.items() if key[-1] == uid]
        return min(due) if due else None

    def forget(self, uid: str) -> None:
        """A pod gone: drop its tokens (the kubelet's DeleteServiceAccountToken)."""
        for key in [key for key in self._cache if key[-1] == uid]:
            del self._cache[key]


def requester_for(client: APIClient) -> TokenRequester:
    """A :data:`TokenRequester` over the agent's API client."""
    accounts = resource("", "v1", "serviceaccounts")

    async def request(namespace: str, account: str, body: Object) -> Object:
        answer: Object = await client.create(accounts, body, namespace, name=account, subresource="token")
        return answer

    return request
