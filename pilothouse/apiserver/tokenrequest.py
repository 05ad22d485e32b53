"""``POST .../serviceaccounts/<name>/token``: the TokenRequest API (``kubectl create token``).

As ``pkg/registry/core/serviceaccount/storage/token.go``: the ServiceAccount must exist; a
``boundObjectRef`` names a Pod (running as that account), a Secret or a Node whose uid, when given,
must match; ``expirationSeconds`` defaults to an hour and may not be under 10 minutes
(``ValidateTokenRequest``); audiences default to the API server's. The token is a JWT signed by the
chain's :class:`~pilothouse.apiserver.satokens.ServiceAccountTokens`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from pilothouse.apiserver import codec, options
from pilothouse.apiserver.auth import CALLER
from pilothouse.apiserver.registry import ResourceStorage
from pilothouse.apiserver.requestinfo import RequestInfo
from pilothouse.machinery import meta
from pilothouse.machinery.errors import FieldError, StatusError, bad_request, invalid, method_not_allowed
from pilothouse.machinery.meta import Object

__all__ = ["create_token"]


_MIN_SECONDS = 600
_MAX_SECONDS = 1 << 32
_BINDABLE = {"Pod": "pods", "Secret": "secrets", "Node": "nodes"}


def _validate(name: str, spec: Object) -> int:
    seconds = spec.get("expirationSeconds")
    seconds = 3600 if seconds is None else seconds
    errors = []
    if not isinstance(seconds, int) or seconds < _MIN_SECONDS:
        errors.append(FieldError("FieldValueInvalid", "spec.expirationSeconds",
                                 "may not specify a duration less than 10 minutes", seconds))
    elif seconds > _MAX_SECONDS:
        errors.append(FieldError("FieldValueInvalid", "spec.expirationSeconds",
                                 "may not specify a duration larger than 2^32 seconds", seconds))
    if errors:
        raise invalid("TokenRequest", "authentication.k8s.io", name, errors)
    return int(seconds)


async def _bound_object(handler: Any, namespace: str, account: str, ref: Object) -> tuple[str, Object]:
    api_version, kind = ref.get("apiVersion", ""), ref.get("kind", "")
    group = api_version.rpartition("/")[0] if "/" in api_version else ""
    plural = _BINDABLE.get(kind) if group == "" else None
    if plural is None:
        version = api_version.rpartition("/")[2]
        raise bad_request(f"cannot bind token to object of type {group}/{version}, Kind={kind}")
    storage = handler.storage_for("", "v1", plural)
    obj: Object = await storage.get(namespace if plural != "nodes" else None, ref.get("name", ""))
    if kind == "Pod" and (obj.get("spec") or {}).get("serviceAccountName", "default") != account:
        raise bad_request(f'cannot bind token for serviceaccount "{account}" to pod running with '
                          f'serviceaccount "{obj["spec"].get("serviceAccountName")}"')
    uid = obj["metadata"]["uid"]
    if ref.get("uid") and ref["uid"] != uid:
        raise StatusError(409, "Conflict", f'Operation cannot be fulfilled on {kind} "{ref.get("name")}": the UID '
                          f'in the bound object reference ({ref["uid"]}) does not match the UID in record ({uid}). '
                          "The object might have been deleted and then recreated",
                          {"name": ref.get("name", ""), "kind": kind})
    return kind, obj


async def create_token(handler: Any, request: web.Request, info: RequestInfo,
                       storage: ResourceStorage) -> web.StreamResponse:
    if info.verb != "create":
        raise method_not_allowed()
    caller = request.get(CALLER)
    issuer = caller.layer.service_accounts if caller is not None and caller.layer is not None else None
    if issuer is None:
        raise StatusError(404, "NotFound", "the server could not find the requested resource", {})
    body, _ = await codec.read_body(request)
    options.check_body(body, "authentication.k8s.io", "v1", "TokenRequest")
    if not isinstance(body, dict):
        raise bad_request("expected a TokenRequest object")
    namespace = info.namespace or ""
    spec = body.setdefault("spec", {})
    seconds = _validate(info.name, spec)
    account = await storage.get(namespace, info.name)
    bound: dict[str, Object] = {}
    ref = spec.get("boundObjectRef")
    if ref:
        kind, obj = await _bound_object(handler, namespace, info.name, ref)
        bound[kind.lower()] = obj
        if kind == "Pod" and (obj.get("spec") or {}).get("nodeName"):
            # ServiceAccountTokenPodNodeInfo (on in 1.32): a pod's token also names its node.
            nodes = handler.storage_for("", "v1", "nodes")
            try:
                bound["node"] = await nodes.get(None, obj["spec"]["nodeName"])
            except StatusError as error:
                if error.code != 404:
                    raise
    audiences = list(spec.get("audiences") or issuer.api_audiences)
    token, expiry = issuer.issue(account, audiences, seconds, **bound)
    # The request object comes back (no name: NamedCreater keeps it in the path), its namespace
    # filled in, spec fields written as the Go struct does (no omitempty).
    spec.update({"audiences": audiences, "expirationSeconds": seconds, "boundObjectRef": ref or None})
    metadata = body.setdefault("metadata", {})
    metadata.setdefault("namespace", namespace)
    metadata.setdefault("creationTimestamp", None)
    expires = meta.format_time(datetime.fromtimestamp(expiry, UTC))
    body.update({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                 "status": {"token": token, "expirationTimestamp": expires}})
    return codec.json_response(body, status=201)
