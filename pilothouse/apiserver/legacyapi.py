"""``--runtime-config api/v1beta1=true``: the legacy ``POST /api/v1beta1/minions`` that the seed's
``register_node.sh`` uses, stored as a v1 Node (see :mod:`pilothouse.machinery.kinds.legacy`).

kube-apiserver's ``--runtime-config`` turns API versions on and off; the only key understood here is
the legacy core version. Enabling it adds the ``minions`` row to the live registry (so discovery
shows ``v1beta1`` and kubectl can map the kind) and the handler that creates the Node through the
nodes storage, with its whole write pipeline (validation, admission, authorization of the request
as ``create minions``).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from pilothouse.apiserver import codec, options
from pilothouse.apiserver.app import APIServer
from pilothouse.apiserver.registry import ResourceStorage
from pilothouse.apiserver.requestinfo import RequestInfo
from pilothouse.machinery.errors import StatusError, bad_request, method_not_allowed
from pilothouse.machinery.kinds.legacy import MINION, minion_from_node, node_from_minion

__all__ = ["enable_runtime_config", "parse_runtime_config"]

_KEYS = ("api/v1beta1", "v1beta1")


def parse_runtime_config(text: str) -> bool:
    """Whether ``text`` (``key=value,...``) enables the legacy v1beta1; ValueError for what we lack."""
    enabled = False
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        key, _, value = item.partition("=")
        if key not in _KEYS:
            raise ValueError(f"--runtime-config: {key!r} is not supported here (only api/v1beta1)")
        if value.lower() not in ("", "true", "false"):
            raise ValueError(f"--runtime-config: {item!r}: the value must be true or false")
        enabled = value.lower() != "false"
    return enabled


async def create_minion(handler: Any, request: web.Request, info: RequestInfo,
                        storage: ResourceStorage) -> web.StreamResponse:
    if info.verb != "create" or info.subresource or info.name:
        raise method_not_allowed("the server does not allow this method on the requested resource")
    body, _ = await codec.read_body(request)
    if not isinstance(body, dict) or body.get("kind", "Minion") != "Minion":
        raise bad_request("expected a v1beta1 Minion object")
    if not body.get("id"):
        raise StatusError(422, "Invalid", 'Minion "" is invalid: id: Required value: the node\'s name')
    nodes = handler.storage_for("", "v1", "nodes")
    created = await nodes.create(None, node_from_minion(body), options.write_context(request.query, request.headers))
    return codec.json_response(minion_from_node(created), status=201)


def enable_runtime_config(api: APIServer, runtime_config: str) -> None:
    """Serve what ``runtime_config`` turns on, on the APIServer ``api``."""
    if parse_runtime_config(runtime_config):
        api.rest.subresources[(MINION.plural, "")] = create_minion
        api.registry.add(MINION)
