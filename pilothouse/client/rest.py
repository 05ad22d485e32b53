"""An asyncio client for the Kubernetes API, as every pilothouse component uses it.

Components talk to the cluster only through this client, exactly as a remote host would (the layer
rules forbid them the store). Resources are named by :class:`ResourceType` from the machinery
catalog, so URLs are never spelled by hand. Unary requests (get, list, create, update, patch, delete)
go over the client's own keep-alive connections (``client/transport.py``, for the CPU aiohttp's client
request costs each one); watches and other streams over one aiohttp session per client, each watch
holding a connection of its own, so watches never starve ordinary requests of connections.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import os
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol
from urllib.parse import quote, urlencode

import aiohttp
import orjson

from pilothouse.client import errors
from pilothouse.client.kubeconfig import ClientConfig
from pilothouse.client.transport import ConnectionPool, Response
from pilothouse.machinery.kinds import BUILTIN_RESOURCES, ResourceRegistry, ResourceType
from pilothouse.machinery.meta import Object

__all__ = ["LOOPBACK_TOKEN_ENV", "APIClient", "TokenSource", "resource"]

#: The bearer token a component started by ``pilothouse server`` uses when given none (the server's
#: loopback token, system:masters, as kube-apiserver's own clients have).
LOOPBACK_TOKEN_ENV = "PILOTHOUSE_LOOPBACK_TOKEN"


_CATALOG = ResourceRegistry(BUILTIN_RESOURCES)


def resource(group: str, version: str, plural: str) -> ResourceType:
    """A built-in resource by its URL names, e.g. ``resource("apps", "v1", "deployments")``."""
    found = _CATALOG.by_plural(group, version, plural)
    if found is None:
        raise KeyError(f"unknown resource {plural}.{group}/{version}")
    return found



#: client-go's default: a request refused with ``Retry-After`` is sent again up to ten times.
_MAX_RETRIES = 10


def _retry_after(response: Response) -> float | None:
    """Seconds to wait before sending the request again, or None: as client-go's ``checkWait``, a 429
    (the API server's max-in-flight refusal) or a 5xx that carries a positive ``Retry-After``."""
    if response.status != 429 and not 500 <= response.status <= 599:
        return None
    try:
        seconds = int(response.headers.get("retry-after", ""))
    except ValueError:
        return None
    return float(seconds) if seconds > 0 else None

class TokenSource(Protocol):
    """Bearer tokens that change over time (a service account's, see ``client/satokensource.py``)."""

    async def token(self) -> str: ...

    def reset(self) -> None: ...


class _FixedToken:
    """A token that does not change (:meth:`APIClient.as_token`)."""

    def __init__(self, token: str) -> None:
        self._token = token

    async def token(self) -> str:
        return self._token

    def reset(self) -> None:
        pass


class APIClient:
    """HTTP client bound to one API server: a URL, or a :class:`ClientConfig` read from a kubeconfig
    (HTTPS with the cluster CA and a client certificate). ``token_source``: a bearer token asked for
    at every request (and reset when the server answers 401) instead of a fixed one."""

    def __init__(self, server: str | ClientConfig, *, user_agent: str = "pilothouse", token: str | None = None,
                 connection_limit: int = 256, timeout: float = 30.0, token_source: TokenSource | None = None) -> None:
        config = server if isinstance(server, ClientConfig) else ClientConfig(server)
        self.config = config
        self.server = config.server.rstrip("/")
        token = token or config.token
        self.user_agent = user_agent
        self._headers = {"User-Agent": user_agent, "Accept": "application/json"}
        self._token_source = token_source
        token = token or (None if token_source else os.environ.get(LOOPBACK_TOKEN_ENV))
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._connection_limit = connection_limit
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._connections: ConnectionPool | None = None
        #: the client whose connections this one uses (:meth:`as_token`); None: its own
        self._pool: APIClient | None = None

    def as_token(self, token: str) -> APIClient:
        """This client's connections, each request under ``token`` instead: one process that speaks
        for many identities (simulated nodes, each its own kubelet user) without a pool per identity.
        The bearer token wins only where the connection carries no client certificate: the server
        tries x509 first, as kube-apiserver's authenticator union does. Closing it leaves the pool open."""
        view = APIClient(self.config, user_agent=self.user_agent, token_source=_FixedToken(token),
                         connection_limit=self._connection_limit, timeout=self._timeout)
        view._pool = self._pool or self
        return view

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._pool is not None:
            return self._pool.session
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._connection_limit, limit_per_host=self._connection_limit,
                                             ssl=self.config.ssl_context or True)
            self._session = aiohttp.ClientSession(connector=connector, headers=self._headers,
                                                  json_serialize=lambda o: orjson.dumps(o).decode())
        return self._session

    @property
    def connections(self) -> ConnectionPool:
        """The unary requests' connections (``client/transport.py``); the session serves the streams."""
        if self._pool is not None:
            return self._pool.connections
        if self._connections is None or self._connections.server != self.server:
            # ``server`` may be repointed on a live client (a test cuts a leader off that way): its
            # requests follow, as they did when every request carried the whole URL
            if self._connections is not None:
                self._connections.close()
            self._connections = ConnectionPool(self.server, self.config.ssl_context, self._connection_limit)
        return self._connections

    async def close(self) -> None:
        if self._connections is not None:
            self._connections.close()
            self._connections = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> APIClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ URLs

    def path(self, r: ResourceType, namespace: str | None = None, name: str = "", subresource: str = "") -> str:
        base = f"/api/{r.version}" if not r.group else f"/apis/{r.group}/{r.version}"
        if r.namespaced and namespace:
            base += f"/namespaces/{quote(namespace)}"
        base += f"/{r.plural}"
        if name:
            base += f"/{quote(name)}"
        if subresource:
            base += f"/{subresource}"
        return base

    # -------------------------------------------------------------- requests

    async def _with_credentials(self, headers: dict[str, str] | None) -> dict[str, str] | None:
        if self._token_source is None:
            return headers
        return {**(headers or {}), "Authorization": f"Bearer {await self._token_source.token()}"}

    def _refused(self, status: int) -> None:
        if status == 401 and self._token_source is not None:
            self._token_source.reset()

    async def request(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                      body: Any = None, content_type: str = "application/json",
                      timeout: float | None = None, accept: str | None = None) -> Any:
        data = None
        headers: dict[str, str] | None = None
        if body is not None:
            data = body if isinstance(body, bytes) else orjson.dumps(body)
            headers = {"Content-Type": content_type}
        if accept is not None:
            headers = {**(headers or {}), "Accept": accept}
        clean = {k: str(v).lower() if isinstance(v, bool) else str(v)
                 for k, v in (params or {}).items() if v is not None}
        headers = await self._with_credentials(headers)
        # the pool's headers (a view's requests go out with them, as on a shared aiohttp session), then these
        merged = {**(self._pool or self)._headers, **(headers or {})}
        if any("\r" in value or "\n" in value for value in merged.values()):
            raise ValueError("a header value carries a line break")  # as aiohttp refuses it
        lines = "".join(f"{name}: {value}\r\n" for name, value in merged.items())
        target = path
        if clean:
            target += ("&" if "?" in path else "?") + urlencode(clean, quote_via=quote)
        try:
            for attempt in range(_MAX_RETRIES + 1):
                async with asyncio.timeout(timeout or self._timeout):
                    response = await self.connections.request(method, target, lines, data)
                raw = response.body
                wait = _retry_after(response) if attempt < _MAX_RETRIES else None
                if wait is None:
                    break
                await asyncio.sleep(wait)
            if response.status >= 400:
                self._refused(response.status)
                status = None
                with contextlib.suppress(orjson.JSONDecodeError):
                    status = orjson.loads(raw)
                if not isinstance(status, dict):
                    status = {"message": raw.decode(errors="replace"), "reason": response.reason}
                raise errors.from_status(response.status, status)
            if not raw:
                return None
            if response.content_type == "application/json":
                return orjson.loads(raw)
            return raw.decode(errors="replace")
        except (TimeoutError, OSError) as error:
            # A refused, reset or cut-short connection (ssl.SSLError and the transport's ProtocolViolation
            # are OSErrors too): callers' retry loops know only ConnectionFailed.
            raise errors.ConnectionFailed(f"{method} {path}: {error}") from error

    async def get(self, r: ResourceType, name: str, namespace: str | None = None,
                  subresource: str = "") -> Object:
        result: Object = await self.request("GET", self.path(r, namespace, name, subresource))
        return result

    async def list(self, r: ResourceType, namespace: str | None = None, *, label_selector: str | None = None,
                   field_selector: str | None = None, limit: int | None = None, continue_token: str | None = None,
                   resource_version: str | None = None) -> Object:
        params = {"labelSelector": label_selector, "fieldSelector": field_selector, "limit": limit,
                  "continue": continue_token, "resourceVersion": resource_version}
        result: Object = await self.request("GET", self.path(r, namespace), params=params)
        return result

    async def list_all(self, r: ResourceType, namespace: str | None = None, *, label_selector: str | None = None,
                       field_selector: str | None = None, page_size: int = 500,
                       transform: Callable[[Object], Object] | None = None) -> tuple[builtins.list[Object], str]:
        """Every item, following continue tokens. Returns (items, resourceVersion of the list).
        ``transform`` rewrites each item as its page arrives (an informer's), so what it drops is freed
        page by page rather than held for the whole list."""
        items: builtins.list[Object] = []
        token: str | None = None
        while True:
            page = await self.list(r, namespace, label_selector=label_selector, field_selector=field_selector,
                                   limit=page_size, continue_token=token)
            page_items = page.get("items") or []
            items.extend(page_items if transform is None else map(transform, page_items))
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return items, str((page.get("metadata") or {}).get("resourceVersion", "0"))

    async def create(self, r: ResourceType, obj: Object, namespace: str | None = None, *,
                     subresource: str = "", name: str = "", field_manager: str | None = None,
                     dry_run: bool = False) -> Object:
        if namespace is None and r.namespaced:
            namespace = (obj.get("metadata") or {}).get("namespace") or "default"
        params = {"fieldManager": field_manager or self.user_agent, "dryRun": "All" if dry_run else None}
        result: Object = await self.request("POST", self.path(r, namespace, name, subresource), params=params,
                                            body=obj)
        return result

    async def update(self, r: ResourceType, obj: Object, *, subresource: str = "",
                     field_manager: str | None = None) -> Object:
        metadata = obj["metadata"]
        path = self.path(r, metadata.get("namespace"), metadata["name"], subresource)
        result: Object = await self.request("PUT", path, params={"fieldManager": field_manager or self.user_agent},
                                            body=obj)
        return result

    async def update_status(self, r: ResourceType, obj: Object) -> Object:
        return await self.update(r, obj, subresource="status")

    async def patch(self, r: ResourceType, name: str, patch: Any, namespace: str | None = None, *,
                    patch_type: str = "merge", subresource: str = "", field_manager: str | None = None,
                    force: bool | None = None) -> Object:
        content_type = {
            "merge": "application/merge-patch+json",
            "json": "application/json-patch+json",
            "strategic": "application/strategic-merge-patch+json",
            "apply": "application/apply-patch+yaml",
        }[patch_type]
        params = {"fieldManager": field_manager or self.user_agent, "force": force}
        result: Object = await self.request("PATCH", self.path(r, namespace, name, subresource), params=params,
                                            body=patch, content_type=content_type)
        return result

    async def delete(self, r: ResourceType, name: str, namespace: str | None = None, *,
                     grace_period_seconds: int | None = None, propagation_policy: str | None = None,
                     preconditions: dict[str, str] | None = None) -> Object:
        body: Object = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if grace_period_seconds is not None:
            body["gracePeriodSeconds"] = grace_period_seconds
        if propagation_policy:
            body["propagationPolicy"] = propagation_policy
        if preconditions:
            body["preconditions"] = preconditions
        result: Object = await self.request("DELETE", self.path(r, namespace, name), body=body)
        return result

    async def watch(self, r: ResourceType, namespace: str | None = None, *, resource_version: str = "0",
                    label_selector: str | None = None, field_selector: str | None = None,
                    timeout_seconds: int | None = None, bookmarks: bool = True) -> AsyncIterator[Object]:
        """Raw watch events (``{"type", "object"}``) until the server closes the stream."""
        params = {"watch": "true", "resourceVersion": resource_version, "labelSelector": label_selector,
                  "fieldSelector": field_selector, "timeoutSeconds": timeout_seconds,
                  "allowWatchBookmarks": "true" if bookmarks else None}
        clean = {k: str(v) for k, v in params.items() if v is not None}
        headers = await self._with_credentials(None)
        try:
            async with self.session.get(self.server + self.path(r, namespace), params=clean, headers=headers,
                                        timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._timeout),
                                        ) as response:
                if response.status >= 400:
                    self._refused(response.status)
                    raw = await response.read()
                    status = None
                    with contextlib.suppress(orjson.JSONDecodeError):
                        status = orjson.loads(raw)
                    raise errors.from_status(response.status, status if isinstance(status, dict) else None)
                buffer = b""
                async for chunk in response.content.iter_any():
                    buffer += chunk
                    while b"\n" in buffer:
                        line, buffer = buffer.split(b"\n", 1)
                        if line.strip():
                            yield orjson.loads(line)
        except (TimeoutError, aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as error:
            raise errors.ConnectionFailed(f"watch {r.plural}: {error}") from error
