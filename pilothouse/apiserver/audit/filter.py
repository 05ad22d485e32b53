"""Auditing as kube-apiserver's filters do it (``endpoints/filters/audit.go``, ``audit_init.go``):
an ``Audit-Id`` on every response, and with ``--audit-log-path`` and ``--audit-policy-file`` an event
per stage of each request the policy selects.

Two middlewares around the auth layer, because the policy is evaluated on the authenticated user
while the outcome of authentication and authorization must be audited too:

* ``outer`` (before authentication, ``WithAuditInit``): gives the request its audit ID and, once it
  is over, writes ``ResponseComplete`` (or ``Panic``); a request that failed authentication gets the
  single ``ResponseStarted`` event of ``WithFailedAuthenticationAudit``, with no user.
* ``inner`` (right after authorization allowed the request, ``WithAudit``): evaluates the policy and
  writes ``RequestReceived`` before the handler runs, so a watch is logged when it starts.

Long-running requests (watches, exec, attach, logs, port-forward, proxy) also get ``ResponseStarted``
when their headers go out. The authorizer's decision and reason, and the annotations admission
plugins add (PodSecurity's), are the event's ``annotations``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from aiohttp import web

from pilothouse.apiserver.audit.backend import AuditLogOptions, LogBackend
from pilothouse.apiserver.audit.event import CURRENT, RequestAudit, object_ref
from pilothouse.apiserver.audit.policy import Decision, Policy, load_policy
from pilothouse.apiserver.auth import AUTHENTICATED, CALLER, DECISION, REQUEST_INFO
from pilothouse.apiserver.requestinfo import object_name, parse_request_info
from pilothouse.machinery import meta
from pilothouse.machinery.errors import StatusError

__all__ = ["AUDIT", "Auditor", "install", "note_request_object"]

AUDIT = web.RequestKey("pilothouse.audit", RequestAudit)
_HEADER = "Audit-Id"
_LONG_RUNNING_VERBS = ("watch", "proxy")
_LONG_RUNNING_SUBRESOURCES = ("attach", "exec", "proxy", "log", "portforward")


def _audit_id(request: web.Request) -> str:
    """The client's ``Audit-ID`` when it sent one (a request relayed by another server), else new:
    a random UUID, as kube-apiserver's ``uuid.New()``, from the pool ``metadata.uid`` draws on
    (``uuid.uuid4()`` read the system's randomness once per request, each read a release of the
    GIL that the store's writer thread took: ~1% of the server's CPU per Lease renewal)."""
    return request.headers.get(_HEADER) or meta.new_uid()


async def _audit_id_header(request: web.Request, response: web.StreamResponse) -> None:
    record = request.get(AUDIT)
    response.headers[_HEADER] = record.audit_id if record is not None else _audit_id(request)


def _source_ips(request: web.Request) -> list[str]:
    """``utilnet.SourceIPs``: X-Forwarded-For, X-Real-Ip, then the peer, without repeats."""
    headers = request.headers
    if "X-Forwarded-For" not in headers and "X-Real-Ip" not in headers:
        return [request.remote] if request.remote else []
    ips: list[str] = []
    for part in request.headers.get("X-Forwarded-For", "").split(","):
        if part.strip():
            ips.append(part.strip())
    if request.headers.get("X-Real-Ip", "").strip():
        ips.append(request.headers["X-Real-Ip"].strip())
    if request.remote and request.remote not in ips:
        ips.append(request.remote)
    return list(dict.fromkeys(ips))


def _auth_methods(request: web.Request) -> str:
    """``getAuthMethods``: what the failed authentication was attempted with."""
    methods = []
    scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() == "basic":
        methods.append("basic")
    if scheme.lower() == "bearer" and token.strip():
        methods.append("bearer")
    if request.query.get("access_token", "").strip():
        methods.append("access_token")
    transport = request.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    if ssl_object is not None and ssl_object.getpeercert(binary_form=True):
        methods.append("x509")
    if methods:
        return "Authentication failed, attempted: " + ", ".join(methods)
    return "Authentication failed, no credentials provided"


def _status(code: int, status: dict[str, Any] | None) -> dict[str, Any]:
    """``LogResponseObject``'s bounded copy of a Status, or just the code."""
    out: dict[str, Any] = {"metadata": {}}
    if status is not None:
        for key in ("status", "message", "reason", "details"):
            if status.get(key):
                out[key] = status[key]
    out["code"] = code
    return out


def _body_status(response: web.StreamResponse) -> dict[str, Any] | None:
    body = getattr(response, "body", None)
    if not isinstance(body, bytes) or response.content_type != "application/json":
        return None
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) and value.get("kind") == "Status" else None


def note_request_object(value: Any) -> None:
    """The decoded request object (``LogRequestObject``): its name on the objectRef, and the object
    itself from the Request level up, encoded now since the write path goes on to change it."""
    record = CURRENT.get()
    if record is None or record.decision is None or record.decision.level == "None":
        return
    record.note_object(value)
    if record.decision.at_least("Request") and record.request_body is None:
        try:
            record.request_body = orjson.dumps(value)
        except TypeError:
            pass


class Auditor:
    def __init__(self, policy: Policy, backend: LogBackend) -> None:
        self.policy = policy
        self.backend = backend

    def _evaluate(self, request: web.Request, record: RequestAudit) -> Decision:
        info = request.get(REQUEST_INFO) or parse_request_info(request.method, request.path, request.query)
        user = request.get(AUTHENTICATED)
        record.info, record.user = info, user
        record.decision = self.policy.decide((user.name, user.groups) if user is not None else None,
                                             info, object_name(info))
        if record.decision.level != "None":
            record.object_ref = object_ref(info)
        return record.decision

    def _after_authorization(self, request: web.Request, record: RequestAudit) -> None:
        """What WithImpersonation and WithAuthorization add after RequestReceived."""
        caller = request.get(CALLER)
        if caller is not None and record.user is not None and caller.user is not record.user:
            record.impersonated = caller.user
        decision = request.get(DECISION)
        if decision is not None:
            record.annotations.setdefault("authorization.k8s.io/decision", "allow" if decision[0] else "forbid")
            record.annotations.setdefault("authorization.k8s.io/reason", decision[1])

    async def _stage(self, record: RequestAudit, stage: str) -> None:
        if record.records(stage):
            await self.backend.emit(record.event(stage))

    @web.middleware
    async def inner(self, request: web.Request, handler: Any) -> web.StreamResponse:
        record = request.get(AUDIT)
        if record is not None and record.decision is None:
            self._evaluate(request, record)
            await self._stage(record, "RequestReceived")
            self._after_authorization(request, record)
        return await handler(request)  # type: ignore[no-any-return]

    @web.middleware
    async def outer(self, request: web.Request, handler: Any) -> web.StreamResponse:
        record = RequestAudit(_audit_id(request), time.time(), request.path_qs,
                              _source_ips(request), request.headers.get("User-Agent", ""))
        request[AUDIT] = record
        token = CURRENT.set(record)
        try:
            response: web.StreamResponse = await handler(request)
        except StatusError as error:
            await self._finish(request, record, error.code, error.to_status())
            raise
        except web.HTTPException as error:
            await self._finish(request, record, error.status, None)
            raise
        except asyncio.CancelledError:
            raise
        except Exception as error:  # kube-apiserver's panic: logged as such, then the 500
            if record.decision is not None:
                record.response_status = _status(500, {"status": "Failure", "reason": "InternalError",
                                                       "message": f"APIServer panic'd: {error}"})
                await self._stage(record, "Panic")
            raise
        else:
            await self._finish(request, record, response.status, _body_status(response)
                               if response.status >= 300 else None, response)
        finally:
            CURRENT.reset(token)
        return response

    async def _finish(self, request: web.Request, record: RequestAudit, code: int, status: dict[str, Any] | None,
                      response: web.StreamResponse | None = None) -> None:
        if record.decision is None:
            if AUTHENTICATED not in request:
                if code == 401:  # WithFailedAuthenticationAudit: one event, no user
                    self._evaluate(request, record)
                    record.response_status = {"metadata": {}, "message": _auth_methods(request), "code": code}
                    await self._stage(record, "ResponseStarted")
                return  # answered before authentication (the dashboard's files): not an API request
            self._evaluate(request, record)
            await self._stage(record, "RequestReceived")
            self._after_authorization(request, record)
        if not record.records("ResponseComplete"):
            return
        record.response_status = _status(code, status)
        if response is not None and record.decision is not None and record.decision.level == "RequestResponse":
            body = getattr(response, "body", None)
            if isinstance(body, bytes) and response.content_type == "application/json":
                record.response_body = body
        await self._stage(record, "ResponseComplete")

    async def on_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        """Headers going out: ResponseStarted, for long-running requests only."""
        record = request.get(AUDIT)
        if record is None or record.info is None or record.started:
            return
        info = record.info
        if info.verb in _LONG_RUNNING_VERBS or info.subresource in _LONG_RUNNING_SUBRESOURCES:
            record.started = True
            record.response_status = {"metadata": {}, "code": response.status}
            await self._stage(record, "ResponseStarted")


def install(app: web.Application, options: AuditLogOptions, *, errors: Any, auth: Any) -> LogBackend | None:
    """Audit IDs on every response; with a log and a policy, the two middlewares: ``outer`` right
    inside ``errors`` (the middleware that renders errors as Status responses, so ``outer`` sees
    them as exceptions), ``inner`` right inside ``auth``."""
    app.on_response_prepare.append(_audit_id_header)
    if not options.enabled():
        return None
    backend = LogBackend(options)
    auditor = Auditor(load_policy(options.policy_file), backend)
    app.middlewares.insert(app.middlewares.index(auth) + 1, auditor.inner)
    app.middlewares.insert(app.middlewares.index(errors) + 1, auditor.outer)
    app.on_response_prepare.append(auditor.on_prepare)
    backend.start()
    return backend
