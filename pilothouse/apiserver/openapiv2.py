"""``GET /openapi/v2``: content negotiation and ETags, as kube-openapi's handler does them.

kubectl asks for ``application/com.github.proto-openapi.spec.v2@v1.0+protobuf`` and parses only that
(a JSON body fails with ``proto: cannot parse invalid wire-format data``); ``application/json`` and
``*/*`` get the JSON document. The first acceptable clause in q order wins; nothing acceptable is a
406. Both encodings share one ETag (the response varies by ``Accept``), and ``If-None-Match`` with it
answers 304, which kubectl's HTTP cache (``~/.kube/cache/http``) relies on. The body is gzipped
when the client accepts it (Go's transport does, transparently), as kube-apiserver does.
"""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web

from pilothouse.machinery.kinds.types import ResourceType
from pilothouse.machinery.openapi_v2 import OpenAPIV2, openapi_v2

__all__ = ["serve_openapi_v2"]

_JSON = "application/json"
_PROTOBUF = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
# (type, subtype) -> what is sent back; kube-openapi answers the deprecated "@" spelling with the new one.
_OFFERS = (
    (("application", "json"), _JSON),
    (("application", "com.github.proto-openapi.spec.v2@v1.0+protobuf"), _PROTOBUF),
    (("application", "com.github.proto-openapi.spec.v2.v1.0+protobuf"), _PROTOBUF),
)


def _clauses(accept: str) -> list[tuple[str, str]]:
    """(type, subtype) of each Accept clause in goautoneg's order: highest q first, then specific
    before wildcard, then as written."""
    ranked: list[tuple[float, bool, bool, int, tuple[str, str]]] = []
    for index, clause in enumerate(accept.split(",")):
        media, *params = (part.strip() for part in clause.split(";"))
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        kind, _, subtype = media.partition("/")
        subtype = subtype or "*"
        if kind and q > 0:
            ranked.append((-q, kind == "*", subtype == "*", index, (kind, subtype)))
    return [clause[-1] for clause in sorted(ranked)]


def _negotiate(accept: str) -> str | None:
    for kind, subtype in _clauses(accept or "*/*"):
        for (offer_kind, offer_subtype), content_type in _OFFERS:
            if kind in (offer_kind, "*") and subtype in (offer_subtype, "*"):
                return content_type
    return None


async def serve_openapi_v2(request: web.Request, resources: Sequence[ResourceType]) -> web.Response:
    content_type = _negotiate(request.headers.get("Accept", ""))
    headers = {"Vary": "Accept"}
    if content_type is None:
        return web.Response(status=406, headers=headers)
    spec: OpenAPIV2 = openapi_v2(resources)
    etag = f'"{spec.etag}"'
    headers["ETag"] = etag
    if etag in (tag.strip() for tag in request.headers.get("If-None-Match", "").split(",")):
        return web.Response(status=304, headers=headers)
    protobuf = content_type == _PROTOBUF
    if "gzip" in request.headers.get("Accept-Encoding", ""):
        headers["Content-Encoding"] = "gzip"
        body = spec.gzipped(protobuf)
    else:
        body = spec.protobuf if protobuf else spec.json
    return web.Response(body=body, headers=headers, content_type=content_type)
