"""Request bodies in, responses out: content types, size limits, Table negotiation.

Requests may be JSON or YAML (kubectl and the Python client send JSON; ``apply-patch+yaml`` carries
JSON or YAML). Responses are always JSON, encoded with orjson (several times faster than the
standard library on Kubernetes-sized objects).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
import yaml
from aiohttp import StreamReader, web

from pilothouse.apiserver import audit, strictbody
from pilothouse.machinery import safeyaml
from pilothouse.machinery.errors import (
    StatusError,
    bad_request,
    request_entity_too_large,
    unsupported_media_type,
)
from pilothouse.machinery.protobuf import decode_kubernetes_protobuf

__all__ = [
    "MAX_BODY_BYTES",
    "go_json",
    "json_response",
    "plain_not_found",
    "pretty_middleware",
    "raw_json_response",
    "read_body",
    "status_response",
    "wants_pretty",
    "wants_table",
]

#: Kubernetes refuses request bodies above 3 MiB (etcd's default value limit is 1.5 MiB).
MAX_BODY_BYTES = 3 * 1024 * 1024

PROTOBUF = "application/vnd.kubernetes.protobuf"

_JSON_TYPES = {"application/json", "application/merge-patch+json", "application/json-patch+json",
               "application/strategic-merge-patch+json", "application/apply-patch+yaml",
               "application/yaml", "text/yaml", "application/x-yaml", ""}


async def read_body(request: web.Request) -> tuple[Any, str]:
    """Parse the body. Returns (value, media type); the audit log notes the object."""
    value, media_type = await _read_body(request)
    audit.note_request_object(value)
    return value, media_type


async def _read_body(request: web.Request) -> tuple[Any, str]:
    # No Content-Type header at all means JSON (the official Python client sends none on create);
    # aiohttp would report application/octet-stream for it.
    media_type = request.content_type if "Content-Type" in request.headers else "application/json"
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise request_entity_too_large("the request body is too large (limit 3145728 bytes)")
    if media_type not in _JSON_TYPES and media_type != PROTOBUF:
        raise unsupported_media_type(media_type)
    raw = await _body_bytes(request.content)
    if not raw.strip():
        raise bad_request("the request body is empty")
    if media_type == PROTOBUF:
        # kubectl's typed clientset (create configmap/namespace/deployment/..., auth can-i) sends
        # protobuf; it becomes the same JSON-shaped object the JSON path yields.
        return decode_kubernetes_protobuf(bytes(raw)), media_type
    if media_type in ("application/yaml", "text/yaml", "application/x-yaml", "application/apply-patch+yaml"):
        try:
            value = safeyaml.load(bytes(raw))  # bounded depth and alias expansion
            # What follows expects a JSON document, as sigs.k8s.io/yaml hands kube-apiserver one:
            # encoding it refuses an alias cycle (``a: &a [*a]``) and anything JSON cannot hold.
            orjson.dumps(value)
        except yaml.YAMLError as error:
            raise bad_request(f"error converting YAML to JSON: {error}") from None
        except RecursionError:  # nesting deeper than the parser recurses: a YAML bomb, not a 500
            raise bad_request("error converting YAML to JSON: yaml: exceeded max depth") from None
        except orjson.JSONEncodeError as error:
            raise bad_request(f"error converting YAML to JSON: {error}") from None
        return value, media_type
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise bad_request(f"couldn't get version/kind; json parse error: {error}") from None
    strictbody.check_json_body(request, bytes(raw), value)
    return value, media_type or "application/json"


async def _body_bytes(content: StreamReader) -> bytes | bytearray:
    """The body, refused once it passes the limit. A small body (a Lease renewal, a status update)
    has usually arrived whole with its headers: then it is taken from the buffer in one call, not
    through an async iterator and a copy per chunk (8% of the API server's CPU in a heartbeat-only
    density run went to reading bodies, a quarter of it in the iterator)."""
    if content.is_eof():
        raw: bytes | bytearray = content.read_nowait()
    else:
        raw = bytearray()
        async for chunk in content.iter_chunked(65536):
            raw.extend(chunk)
            if len(raw) > MAX_BODY_BYTES:
                break
    if len(raw) > MAX_BODY_BYTES:
        raise request_entity_too_large("the request body is too large (limit 3145728 bytes)")
    return raw


def wants_table(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "")
    return "as=Table" in accept


def json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None,
                  content_type: str = "application/json") -> web.Response:
    # kube-apiserver's JSON serializer is Go's json.Encoder, which ends every document with a
    # newline; clients that compare error bodies verbatim (FailToCreateError's text) see it.
    return web.Response(body=orjson.dumps(body, option=orjson.OPT_APPEND_NEWLINE), status=status,
                        headers=headers, content_type=content_type)


def raw_json_response(body: bytes, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    """A response from JSON that is already encoded (newline-terminated, as ``json_response``)."""
    return web.Response(body=body + b"\n", status=status, headers=headers, content_type="application/json")


def plain_not_found() -> web.Response:
    """A path outside the API: kube-apiserver's last handler is Go's ``http.NotFound``, plain text."""
    return web.Response(status=404, text="404 page not found\n", content_type="text/plain", charset="utf-8",
                        headers={"X-Content-Type-Options": "nosniff"})


#: What Go's encoding/json escapes inside strings (its default HTML-safe output). These bytes can
#: only occur inside JSON strings, so a plain byte replacement is exact.
_GO_ESCAPES = ((b"&", b"\\u0026"), (b"<", b"\\u003c"), (b">", b"\\u003e"),
               ("\u2028".encode(), b"\\u2028"), ("\u2029".encode(), b"\\u2029"))


def go_json(value: Any, *, indent: bool = False) -> bytes:
    """JSON as kube-apiserver's Go encoder writes it: HTML-safe escapes, and either compact with a
    trailing newline (``json.Encoder``) or indented by two spaces without one (``json.MarshalIndent``)."""
    body = orjson.dumps(value, option=orjson.OPT_INDENT_2 if indent else orjson.OPT_APPEND_NEWLINE)
    for raw, escaped in _GO_ESCAPES:
        if raw in body:
            body = body.replace(raw, escaped)
    return body


def status_response(error: StatusError) -> web.Response:
    """A Status exactly as kube-apiserver's encoder writes it (messages often quote selectors and
    values with ``&``, ``<``, ``>``; clients compare these bodies verbatim)."""
    return web.Response(body=go_json(error.to_status()), status=error.code, headers=error.headers or None,
                        content_type="application/json")


#: User agents kube-apiserver pretty-prints for unasked ("basic all browsers and cli http tools").
_HUMAN_AGENTS = ("curl", "Wget", "Mozilla/5.0")
_PARSE_BOOL = {"1": True, "t": True, "T": True, "TRUE": True, "true": True, "True": True,
               "0": False, "f": False, "F": False, "FALSE": False, "false": False, "False": False}


def wants_pretty(request: web.Request) -> bool:
    """kube-apiserver's ``isPrettyPrint``: ``pretty`` read with Go's ``strconv.ParseBool`` (unlike
    every other boolean parameter; a value it cannot parse is false), else the User-Agent."""
    value = request.query.get("pretty", "")
    if value:
        return _PARSE_BOOL.get(value, False)
    return request.headers.get("User-Agent", "").startswith(_HUMAN_AGENTS)


@web.middleware
async def pretty_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Re-indent a JSON API response (object, Table, discovery, Status) for a client that wants it
    pretty, as the negotiated pretty serializer does. Streamed lists and watches stay compact, and
    OpenAPI documents are served as they are cached, as kube-apiserver does."""
    response: web.StreamResponse = await handler(request)
    if (isinstance(response, web.Response) and response.content_type == "application/json"
            and isinstance(response.body, bytes) and not request.path.startswith("/openapi")
            and wants_pretty(request)):
        response.body = go_json(orjson.loads(response.body), indent=True)
    return response
