"""Resources that are answered, never stored: the review APIs, ``bindings`` and ``componentstatuses``.

kube-apiserver serves these with REST objects that implement only ``Create`` (TokenReview,
SelfSubjectReview, the four access reviews, Binding) or only ``Get``/``List`` (ComponentStatus), so
their discovery verbs are ``create`` or ``get, list``. Here each is a handler keyed like the
subresource handlers, with ``""`` as the subresource: :class:`RestHandler` hands the whole resource
to it.

The reviews answer from the caller the auth layer recorded (:data:`auth.CALLER`): its user, its
authorizer (the access reviews; the rules review lists the authorizer's ``rules_for``) and its
chain's bearer-token authenticators (TokenReview). In the default loopback model every caller is
``system:admin`` and the authorizer allows everything, with the reason ``pilothouse: no
authorization yet``; with ``--authorization-mode=RBAC`` the answers are RBAC's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import aiohttp
from aiohttp import web

from pilothouse.apiserver import codec, options, reviewselectors, tokenrequest
from pilothouse.apiserver.auth import CALLER, UserInfo, aggregate, with_authenticated_group
from pilothouse.apiserver.registry import ResourceStorage
from pilothouse.apiserver.requestinfo import RequestInfo
from pilothouse.apiserver.subresources import bind_pod
from pilothouse.machinery import meta, tables
from pilothouse.machinery.errors import FieldError, StatusError, bad_request, invalid, method_not_allowed, not_found
from pilothouse.machinery.kinds.vcommon import GoValue
from pilothouse.machinery.kinds.vcommon import invalid as invalid_field
from pilothouse.machinery.meta import Object

__all__ = ["NO_AUTHORIZATION_REASON", "VIRTUAL_HANDLERS"]

Handler = Callable[[Any, web.Request, RequestInfo, ResourceStorage], Awaitable[web.StreamResponse]]

NO_AUTHORIZATION_REASON = "pilothouse: no authorization yet"

# The leader-election Leases of the two control-plane components (kube-system), as ComponentStatus
# names them.
_COMPONENT_LEASES = (("controller-manager", "kube-controller-manager"), ("scheduler", "kube-scheduler"))


def _only(verbs: tuple[str, ...], info: RequestInfo) -> None:
    if info.verb not in verbs or info.subresource:
        raise method_not_allowed("the server does not allow this method on the requested resource")


def _caller_user(request: web.Request) -> tuple[UserInfo, Any]:
    caller = request.get(CALLER)
    if caller is None:  # the auth layer always runs first; a handler called without it is a bug
        raise StatusError(500, "InternalError", "no authenticated caller recorded for this request")
    return caller.user, caller.authorizer


def _user_json(user: UserInfo) -> Object:
    out: Object = {"username": user.name}
    if user.uid:
        out["uid"] = user.uid
    out["groups"] = list(user.groups)
    if user.extra:
        out["extra"] = {key: list(values) for key, values in user.extra.items()}
    return out


async def _read_review(request: web.Request, info: RequestInfo, kind: str) -> Object:
    body, _ = await codec.read_body(request)
    options.check_body(body, info.group, info.version, kind)
    if not isinstance(body, dict):
        raise bad_request(f"expected a {kind} object")
    body.setdefault("metadata", {})
    body.setdefault("spec", {})
    return body


def _created(review: Object, api_version: str, kind: str, status: Object) -> web.Response:
    review["apiVersion"] = api_version
    review["kind"] = kind
    review["metadata"].setdefault("creationTimestamp", None)
    review["status"] = status
    return codec.json_response(review, status=201)


# -- authentication.k8s.io ---------------------------------------------------------------------

async def token_review(handler: Any, request: web.Request, info: RequestInfo,
                       storage: ResourceStorage) -> web.StreamResponse:
    _only(("create",), info)
    review = await _read_review(request, info, "TokenReview")
    if not review["spec"].get("token"):
        raise bad_request("token is required for TokenReview in authentication")
    layer = request[CALLER].layer if CALLER in request else None
    if layer is None:
        raise StatusError(500, "InternalError", "no authentication chain recorded for this request")
    wanted = tuple(review["spec"].get("audiences") or ())
    # The bearer-token authenticators of the server's chain (token file, service-account JWTs,
    # bootstrap tokens); a token that is not audience-aware is taken as meant for the API's own.
    found, errors = await layer.tokens.review(review["spec"]["token"], wanted)
    status: Object
    if found is None:
        status = {"user": {}}
        if errors:
            status["error"] = aggregate(errors)
    else:
        audiences = wanted or (layer.service_accounts.api_audiences if layer.service_accounts else ())
        status = {"authenticated": True, "user": _user_json(with_authenticated_group(found))}
        if audiences:
            status["audiences"] = list(audiences)
    return _created(review, "authentication.k8s.io/v1", "TokenReview", status)


async def self_subject_review(handler: Any, request: web.Request, info: RequestInfo,
                              storage: ResourceStorage) -> web.StreamResponse:
    _only(("create",), info)
    review = await _read_review(request, info, "SelfSubjectReview")
    review.pop("spec", None)
    user, _ = _caller_user(request)
    review["metadata"]["creationTimestamp"] = meta.format_time()
    return _created(review, "authentication.k8s.io/v1", "SelfSubjectReview", {"userInfo": _user_json(user)})


# -- authorization.k8s.io ----------------------------------------------------------------------

def _attributes_errors(spec: Object) -> list[FieldError]:
    resource, non_resource = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
    if (resource is None) == (non_resource is None):
        shown = GoValue(resource, "&authorization.ResourceAttributes{...}") if resource else GoValue(None, "nil")
        return [invalid_field("spec.resourceAttributes", shown,
                              "exactly one of nonResourceAttributes or resourceAttributes must be specified")]
    return reviewselectors.selector_errors(resource)


def _request_info(spec: Object) -> RequestInfo:
    resource = spec.get("resourceAttributes")
    if resource is not None:
        return RequestInfo(True, "", resource.get("verb", ""), resource.get("group", ""),
                           resource.get("version", ""), resource.get("namespace") or None,
                           resource.get("resource", ""), resource.get("name", ""),
                           resource.get("subresource", ""), reviewselectors.field_selector(resource),
                           reviewselectors.label_selector(resource))
    non_resource = spec.get("nonResourceAttributes") or {}
    return RequestInfo(False, non_resource.get("path", ""), non_resource.get("verb", ""))


async def _decide(authorizer: Any, user: UserInfo, spec: Object) -> Object:
    allowed, reason = await authorizer.authorize(user, _request_info(spec))
    status: Object = {"allowed": bool(allowed)}
    reason = reason or (NO_AUTHORIZATION_REASON if allowed else "")
    if reason:
        status["reason"] = reason
    return status


def _access_review(kind: str, self_review: bool, local: bool) -> Handler:
    async def create(handler: Any, request: web.Request, info: RequestInfo,
                     storage: ResourceStorage) -> web.StreamResponse:
        _only(("create",), info)
        review = await _read_review(request, info, kind)
        spec = review["spec"]
        errors = _attributes_errors(spec)
        if not self_review and not spec.get("user") and not spec.get("groups"):
            errors.append(invalid_field("spec.user", spec.get("user", ""),
                                        "at least one of user or group must be specified"))
        if local and spec.get("nonResourceAttributes") is not None:
            errors.append(invalid_field("spec.nonResourceAttributes", GoValue(None, "&authorization."
                                        "NonResourceAttributes{...}"), "disallowed on this kind of request"))
        if errors:
            raise invalid(kind, "authorization.k8s.io", review["metadata"].get("name", ""), errors)
        if local:
            wanted = (spec.get("resourceAttributes") or {}).get("namespace", "")
            if wanted != info.namespace:
                raise bad_request(f"spec.resourceAttributes.namespace must match namespace: {info.namespace}")
            review["metadata"]["namespace"] = info.namespace
        caller, authorizer = _caller_user(request)
        user = caller if self_review else UserInfo(
            spec.get("user", ""), tuple(spec.get("groups") or ()),
            {key: tuple(values) for key, values in (spec.get("extra") or {}).items()})
        return _created(review, "authorization.k8s.io/v1", kind, await _decide(authorizer, user, spec))
    return create


def _resource_rule(rule: Object) -> Object:
    out: Object = {"verbs": rule.get("verbs") or [], "apiGroups": rule.get("apiGroups") or [],
                   "resources": rule["resources"]}
    if rule.get("resourceNames"):
        out["resourceNames"] = rule["resourceNames"]
    return out


async def self_subject_rules_review(handler: Any, request: web.Request, info: RequestInfo,
                                    storage: ResourceStorage) -> web.StreamResponse:
    _only(("create",), info)
    review = await _read_review(request, info, "SelfSubjectRulesReview")
    user, authorizer = _caller_user(request)
    resolve = getattr(authorizer, "rules_for", None)
    if resolve is None:
        # An authorizer that cannot list its rules says so, as kube-apiserver's webhook mode does.
        status: Object = {"resourceRules": [], "nonResourceRules": [], "incomplete": True,
                          "evaluationError": "the authorizer cannot list the rules of a user"}
    else:
        rules, errors = resolve(user, review["spec"].get("namespace", ""))
        status = {"resourceRules": [_resource_rule(r) for r in rules if r.get("resources")],
                  "nonResourceRules": [{"verbs": r.get("verbs") or [], "nonResourceURLs": r["nonResourceURLs"]}
                                       for r in rules if r.get("nonResourceURLs")],
                  "incomplete": bool(errors)}
        if errors:
            status["evaluationError"] = aggregate(errors)
    return _created(review, "authorization.k8s.io/v1", "SelfSubjectRulesReview", status)


# -- core/v1 bindings --------------------------------------------------------------------------

async def bindings(handler: Any, request: web.Request, info: RequestInfo,
                   storage: ResourceStorage) -> web.StreamResponse:
    """``POST /api/v1/namespaces/<ns>/bindings``: the pod named by the Binding's metadata.name."""
    _only(("create",), info)
    if info.name:
        raise method_not_allowed(f"POST is not supported on {info.path}")
    body, _ = await codec.read_body(request)
    options.check_body(body, "", "v1", "Binding")
    name = ((body or {}).get("metadata") or {}).get("name", "")
    if not name:
        raise StatusError(422, "Invalid", 'Binding "" is invalid: metadata.name: Required value: name or '
                          "generateName is required")
    pods = handler.storage_for("", "v1", "pods")
    await bind_pod(pods, info.namespace, name, body, options.write_context(request.query, request.headers))
    return codec.json_response({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                                "code": 201}, status=201)


# -- core/v1 componentstatuses -----------------------------------------------------------------

def _component(name: str, healthy: bool, problem: str = "") -> Object:
    condition: Object = {"type": "Healthy", "status": "True" if healthy else "False"}
    if healthy:
        condition["message"] = "ok"
    else:
        condition["error"] = problem
    return {"kind": "ComponentStatus", "apiVersion": "v1",
            "metadata": {"name": name, "creationTimestamp": None}, "conditions": [condition]}


def _lease_fresh(lease: Object, now: float) -> str:
    """"" when the lease is held and renewed within its duration, else why not."""
    spec = lease.get("spec") or {}
    if not spec.get("holderIdentity"):
        return "no leader holds the lease"
    renewed = spec.get("renewTime") or spec.get("acquireTime")
    try:
        stamp = datetime.fromisoformat(str(renewed).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return f"lease renew time {renewed!r} is not a time"
    duration = spec.get("leaseDurationSeconds") or 15
    if now - stamp > duration:
        return f"leader lease last renewed {int(now - stamp)}s ago (duration {duration}s)"
    return ""


async def _etcd_member_health(url: str) -> str:
    """"" when the member's ``/health`` says so (what kube-apiserver probes), else why not."""
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session, \
                session.get(url.rstrip("/") + "/health") as response:
            body = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as error:
        return f"Get \"{url}/health\": {type(error).__name__}: {error}"
    return "" if str(body.get("health")) == "true" else f"etcd member {url} reports {body}"


async def _store_health(store: Any) -> list[Object]:
    """One entry per etcd member (``etcd-0``, ...), as kube-apiserver lists its storage servers, or
    ``sqlite-0`` for the embedded store. A member behind TLS, or the SQLite file, is judged by a read
    through the store."""
    problem = ""
    try:
        await store.current_revision()
    except Exception as error:  # any failure to read is the store's ill health, reported as data
        problem = f"{type(error).__name__}: {error}"
    endpoints = getattr(store, "endpoints", None)
    if not endpoints:
        return [_component("sqlite-0", not problem, problem)]

    async def member(url: str) -> str:
        return await _etcd_member_health(url) if url.startswith("http://") else problem

    problems = await asyncio.gather(*(member(url) for url in endpoints))
    return [_component(f"etcd-{index}", not member_problem, member_problem)
            for index, member_problem in enumerate(problems)]


async def _component_statuses(handler: Any, storage: ResourceStorage) -> list[Object]:
    """The store's members, then each component whose leader Lease is being renewed."""
    found = await _store_health(storage.store)
    leases = handler.storage_for("coordination.k8s.io", "v1", "leases")
    now = time.time()
    for name, lease_name in _COMPONENT_LEASES:
        try:
            problem = _lease_fresh(await leases.get("kube-system", lease_name), now)
        except StatusError as error:
            problem = error.message if error.code != 404 else f"no leader lease kube-system/{lease_name}"
        found.append(_component(name, not problem, problem))
    return sorted(found, key=lambda cs: cs["metadata"]["name"])


async def component_statuses(handler: Any, request: web.Request, info: RequestInfo,
                             storage: ResourceStorage) -> web.StreamResponse:
    _only(("get", "list"), info)
    # kube-apiserver warns on every ComponentStatus request (deprecated since 1.19).
    headers = {"Warning": '299 - "v1 ComponentStatus is deprecated in v1.19+"'}
    statuses = await _component_statuses(handler, storage)
    if info.verb == "get":
        statuses = [cs for cs in statuses if cs["metadata"]["name"] == info.name]
        if not statuses:
            raise not_found("componentstatuses", "", info.name)
    if codec.wants_table(request):
        table = tables.to_table("", "ComponentStatus", statuses,
                                include_object=request.query.get("includeObject", "Metadata"))
        return codec.json_response(table, headers=headers)
    if info.verb == "get":
        return codec.json_response(statuses[0], headers=headers)
    return codec.json_response({"kind": "ComponentStatusList", "apiVersion": "v1", "metadata": {},
                                "items": statuses}, headers=headers)


VIRTUAL_HANDLERS: dict[tuple[str, str], Handler] = {
    ("componentstatuses", ""): component_statuses,
    ("serviceaccounts", "token"): tokenrequest.create_token,
    ("bindings", ""): bindings,
    ("tokenreviews.authentication.k8s.io", ""): token_review,
    ("selfsubjectreviews.authentication.k8s.io", ""): self_subject_review,
    ("subjectaccessreviews.authorization.k8s.io", ""): _access_review("SubjectAccessReview", False, False),
    ("selfsubjectaccessreviews.authorization.k8s.io", ""): _access_review("SelfSubjectAccessReview", True, False),
    ("localsubjectaccessreviews.authorization.k8s.io", ""): _access_review("LocalSubjectAccessReview", False, True),
    ("selfsubjectrulesreviews.authorization.k8s.io", ""): self_subject_rules_review,
}
