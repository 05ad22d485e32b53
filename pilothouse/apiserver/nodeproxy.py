"""``pods/log``, ``pods/exec``, ``pods/attach``, ``pods/portforward``: proxied to the pod's node agent.

As in kube-apiserver (``pkg/registry/core/pod/strategy.go`` ``LogLocation``/``streamLocation``/
``PortForwardLocation``): the pod names its node, the Node names the agent's address
(``status.addresses``) and port (``status.daemonEndpoints.kubeletEndpoint.Port``), the container is
checked against the pod's spec, and the request goes on to the agent's kubelet-shaped paths
(``/containerLogs/..``, ``/exec/..``, ``/attach/..``, ``/portForward/..``).

Logs are relayed as a chunked stream, flushed per chunk, so ``kubectl logs -f`` follows; an agent's
error answer (plain text, as kubelet writes it) becomes a Status the way kube-apiserver's
``GenericHttpResponseChecker`` does it. Exec, attach and port-forward are websocket upgrades relayed
frame by frame both ways: the client gets the subprotocol the agent chose, and nothing here parses
the channel or SPDY payloads. A refused upgrade is relayed as the agent answered it (kubectl then
retries with SPDY, which gets the agent's answer again and prints it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
from aiohttp import WSMsgType, web

from pilothouse.apiserver.registry import ResourceStorage
from pilothouse.apiserver.requestinfo import RequestInfo
from pilothouse.machinery.errors import (
    FieldError,
    StatusError,
    bad_request,
    internal_error,
    invalid,
    method_not_allowed,
)
from pilothouse.machinery.meta import Object
from pilothouse.machinery.query import flag as query_flag

__all__ = ["DEFAULT_KUBELET_PORT", "NODE_PROXY_HANDLERS"]

log = logging.getLogger("pilothouse.apiserver.nodeproxy")

Handler = Callable[[Any, web.Request, RequestInfo, ResourceStorage], Awaitable[web.StreamResponse]]

DEFAULT_KUBELET_PORT = 10250
#: kube-apiserver's --kubelet-preferred-address-types, reordered so that an address we can dial
#: comes first (node names are rarely resolvable here).
_ADDRESS_PREFERENCE = ("InternalIP", "ExternalIP", "InternalDNS", "ExternalDNS", "Hostname")
_CONNECT_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=None)
#: kube-apiserver reads at most this much of an agent's error answer.
_MAX_ERROR_BODY = 50000


# ---------------------------------------------------------------------- locating the agent


def _container_names(containers: list[Object] | None) -> list[str]:
    return [str(c.get("name", "")) for c in containers or []]


def _resolve_container(pod: Object, requested: str) -> str:
    spec = pod.get("spec") or {}
    name = pod["metadata"]["name"]
    containers = _container_names(spec.get("containers"))
    init_containers = _container_names(spec.get("initContainers"))
    ephemeral = _container_names(spec.get("ephemeralContainers"))
    if requested:
        if requested not in (*containers, *init_containers, *ephemeral):
            raise bad_request(f"container {requested} is not valid for pod {name}")
        return requested
    default = ((pod["metadata"].get("annotations") or {}).get("kubectl.kubernetes.io/default-container") or "")
    if default and default in containers:
        return str(default)
    if len(containers) == 1:
        return containers[0]
    if not containers:
        raise bad_request(f"a container name must be specified for pod {name}")
    message = f"a container name must be specified for pod {name}, choose one of: [{' '.join(containers)}]"
    if init_containers:
        message += f" or one of the init containers: [{' '.join(init_containers)}]"
    raise bad_request(message)


async def _agent_base_url(handler: Any, node_name: str) -> str:
    nodes: ResourceStorage = handler.storage_for("", "v1", "nodes")
    node = await nodes.get(None, node_name)
    status = node.get("status") or {}
    addresses = [a for a in status.get("addresses") or [] if isinstance(a, dict) and a.get("address")]
    host = ""
    for address_type in _ADDRESS_PREFERENCE:
        host = next((str(a["address"]) for a in addresses if a.get("type") == address_type), "")
        if host:
            break
    if not host:
        known = "[" + " ".join(f"{{{a.get('type')} {a.get('address')}}}" for a in addresses) + "]"
        raise internal_error(f"no preferred addresses found; known addresses: {known}")
    port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port") or DEFAULT_KUBELET_PORT
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    # Over HTTPS the agents serve TLS too (see components/agent/servingtls.py).
    return f"{'https' if _kubelet_tls(handler) else 'http'}://{host}:{int(port)}"


def _kubelet_tls(handler: Any) -> ssl.SSLContext | None:
    """The client TLS context towards agents, set on the handler by a ``--secure`` server."""
    context: ssl.SSLContext | None = getattr(handler, "kubelet_tls", None)
    return context


def _agent_session(handler: Any, **options: Any) -> aiohttp.ClientSession:
    context = _kubelet_tls(handler)
    connector = aiohttp.TCPConnector(ssl=context) if context is not None else None
    return aiohttp.ClientSession(timeout=_CONNECT_TIMEOUT, connector=connector, **options)


def _path(*parts: str) -> str:
    return "/" + "/".join(quote(p, safe="") for p in parts)


def _from_agent_answer(code: int, body: bytes, name: str) -> StatusError:
    """An agent's non-2xx answer as a Status (kube-apiserver's GenericHttpResponseChecker)."""
    text = body[:_MAX_ERROR_BODY].decode("utf-8", "replace").strip()
    if code == 500:
        return internal_error(text)
    if code == 400:
        return bad_request(text)
    causes = [{"reason": "UnexpectedServerResponse", "message": text}] if text else []
    if code == 404:
        return StatusError(404, "NotFound", f"the server could not find the requested resource ( pods/log {name})",
                           {"name": name, "kind": "pods", "causes": causes})
    return StatusError(code, "", f"the server responded with the status code {code} but did not return more "
                       f"information ( pods/log {name})", {"name": name, "kind": "pods", "causes": causes})


def _unreachable(method: str, url: str, error: BaseException) -> StatusError:
    # kube-apiserver passes the dial error through unchanged (a 500 without a reason).
    return StatusError(500, "", f'{method.capitalize()} "{url}": {error or type(error).__name__}')


async def _watch_disconnect(request: web.Request, task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` when the client goes away (aiohttp does not cancel handlers on disconnect)."""
    while not task.done():
        transport = request.transport
        if transport is None or transport.is_closing():
            task.cancel()
            return
        await asyncio.sleep(0.5)


# ---------------------------------------------------------------------- logs


def _log_query(request: web.Request, name: str) -> dict[str, str]:
    query = request.query
    params: dict[str, str] = {}
    for flag in ("follow", "previous", "timestamps"):
        if query_flag(request.query, flag):
            params[flag] = "true"
    errors: list[FieldError] = []
    minimums = {"sinceSeconds": 1, "tailLines": 0, "limitBytes": 1}
    for key, minimum in minimums.items():
        raw = query.get(key)
        if raw is None or raw == "":
            continue
        try:
            value = int(raw)
        except ValueError:
            raise bad_request(f'unable to parse "{raw}" as an integer for {key}') from None
        if value < minimum:
            detail = "must be greater than 0" if minimum else "must be greater than or equal to 0"
            errors.append(FieldError("FieldValueInvalid", key, detail, value))
        params[key] = str(value)
    if query.get("sinceTime"):
        params["sinceTime"] = query["sinceTime"]
        if "sinceSeconds" in params:
            errors.append(FieldError("FieldValueForbidden", "",
                                     "at most one of `sinceTime` or `sinceSeconds` may be specified"))
    if errors:
        raise invalid("PodLogOptions", "", name, errors)
    return params


async def pod_log(handler: Any, request: web.Request, info: RequestInfo,
                  storage: ResourceStorage) -> web.StreamResponse:
    if info.verb != "get":
        raise method_not_allowed()
    pod = await storage.get(info.namespace, info.name)
    container = _resolve_container(pod, request.query.get("container", ""))
    params = _log_query(request, info.name)
    node_name = (pod.get("spec") or {}).get("nodeName")
    if not node_name:
        # kube-apiserver: no host yet means no location, and an empty log.
        return web.Response(status=200, body=b"", content_type="text/plain")
    url = (await _agent_base_url(handler, node_name) + _path("containerLogs", info.namespace or "", info.name,
                                                             container))
    if params:
        url += "?" + urlencode(params)
    async with _agent_session(handler, auto_decompress=False) as session:
        try:
            upstream = await session.get(url)
        except (TimeoutError, aiohttp.ClientError, OSError) as error:
            raise _unreachable("GET", url, error) from None
        async with upstream:
            if not 200 <= upstream.status <= 206:
                raise _from_agent_answer(upstream.status, await upstream.content.read(_MAX_ERROR_BODY), info.name)
            response = web.StreamResponse(headers={"Content-Type": upstream.headers.get("Content-Type",
                                                                                          "text/plain")})
            response.enable_chunked_encoding()
            await response.prepare(request)
            copy = asyncio.create_task(_copy_body(upstream, response))
            watcher = asyncio.create_task(_watch_disconnect(request, copy))
            try:
                await copy
            except asyncio.CancelledError:
                if not copy.cancelled():
                    raise
            except (aiohttp.ClientError, ConnectionError) as error:
                log.debug("log stream from %s ended: %s", url, error)
            finally:
                watcher.cancel()
    with contextlib.suppress(ConnectionError):
        await response.write_eof()
    return response


async def _copy_body(upstream: aiohttp.ClientResponse, response: web.StreamResponse) -> None:
    async for chunk in upstream.content.iter_any():
        await response.write(chunk)


# ---------------------------------------------------------------------- exec, attach, port-forward


def _is_websocket(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


async def _relay(source: Any, sink: Any) -> None:
    async for message in source:
        if message.type == WSMsgType.BINARY:
            await sink.send_bytes(message.data)
        elif message.type == WSMsgType.TEXT:
            await sink.send_str(message.data)
        elif message.type == WSMsgType.ERROR:
            return


async def _relay_answer(session: aiohttp.ClientSession, method: str, url: str) -> web.Response:
    """The agent's answer to the same request without the upgrade (its error, or 'Upgrade request required')."""
    try:
        async with session.request(method, url) as answer:
            body = await answer.content.read(_MAX_ERROR_BODY)
            return web.Response(status=answer.status, body=body,
                                content_type=answer.content_type or "text/plain")
    except (TimeoutError, aiohttp.ClientError, OSError) as error:
        raise _unreachable(method, url, error) from None


async def _proxy_upgrade(handler: Any, request: web.Request, url: str) -> web.StreamResponse:
    async with _agent_session(handler) as session:
        if not _is_websocket(request):
            # A SPDY upgrade (kubectl's fallback) or a plain request: the agent speaks websockets only.
            return await _relay_answer(session, request.method, url)
        offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
        try:
            upstream = await session.ws_connect(url, protocols=offered, autoping=True, max_msg_size=0)
        except aiohttp.WSServerHandshakeError:
            return await _relay_answer(session, "GET", url)
        except (TimeoutError, aiohttp.ClientError, OSError) as error:
            raise _unreachable("GET", url, error) from None
        async with upstream:
            downstream = web.WebSocketResponse(protocols=(upstream.protocol,) if upstream.protocol else (),
                                               autoping=True, max_msg_size=0)
            await downstream.prepare(request)
            to_agent = asyncio.create_task(_relay(downstream, upstream))
            to_client = asyncio.create_task(_relay(upstream, downstream))
            try:
                await asyncio.wait({to_agent, to_client}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (to_agent, to_client):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
            # Whoever closed first, the other side gets the same close code (1000 after a Status).
            if to_client.done() and not to_client.cancelled() and upstream.closed:
                await downstream.close(code=upstream.close_code or 1000)
                await upstream.close()
            else:
                await upstream.close(code=downstream.close_code or 1000)
                await downstream.close()
        return downstream


async def _node_of(pod: Object, name: str) -> str:
    node_name = (pod.get("spec") or {}).get("nodeName")
    if not node_name:
        raise bad_request(f"pod {name} does not have a host assigned")
    return str(node_name)


async def _remote_command(handler: Any, request: web.Request, info: RequestInfo, storage: ResourceStorage,
                          verb: str) -> web.StreamResponse:
    pod = await storage.get(info.namespace, info.name)
    container = _resolve_container(pod, request.query.get("container", ""))
    node_name = await _node_of(pod, info.name)
    params: list[tuple[str, str]] = [(name, "1") for name in ("stdin", "stdout", "stderr", "tty")
                                     if query_flag(request.query, name)]
    if verb == "exec":
        params += [("command", c) for c in request.query.getall("command", [])]
    url = (await _agent_base_url(handler, node_name) + _path(verb, info.namespace or "", info.name, container)
           + ("?" + urlencode(params) if params else ""))
    return await _proxy_upgrade(handler, request, url)


async def pod_exec(handler: Any, request: web.Request, info: RequestInfo,
                   storage: ResourceStorage) -> web.StreamResponse:
    return await _remote_command(handler, request, info, storage, "exec")


async def pod_attach(handler: Any, request: web.Request, info: RequestInfo,
                     storage: ResourceStorage) -> web.StreamResponse:
    return await _remote_command(handler, request, info, storage, "attach")


async def pod_portforward(handler: Any, request: web.Request, info: RequestInfo,
                          storage: ResourceStorage) -> web.StreamResponse:
    pod = await storage.get(info.namespace, info.name)
    node_name = await _node_of(pod, info.name)
    ports = request.query.getall("ports", [])
    url = await _agent_base_url(handler, node_name) + _path("portForward", info.namespace or "", info.name)
    if ports:
        url += "?" + urlencode({"port": ",".join(ports)})
    return await _proxy_upgrade(handler, request, url)


NODE_PROXY_HANDLERS: dict[tuple[str, str], Handler] = {
    ("pods", "log"): pod_log,
    ("pods", "exec"): pod_exec,
    ("pods", "attach"): pod_attach,
    ("pods", "portforward"): pod_portforward,
}
