"""One request's audit record (``AuditContext``) and the ``audit.k8s.io/v1`` Event it is written as.

The request path only collects: the event is a dict of what is already known, and request and
response bodies stay bytes. Decoding them, dropping managedFields and encoding the line happen in the
log writer's thread (``backend.py``), off the event loop.
"""

from __future__ import annotations

import contextvars
import time
from dataclasses import dataclass, field
from typing import Any

from pilothouse.apiserver.audit.policy import Decision
from pilothouse.apiserver.auth import UserInfo
from pilothouse.apiserver.requestinfo import RequestInfo

__all__ = ["CURRENT", "PendingEvent", "RequestAudit", "annotate", "micro_time", "object_ref", "user_json"]

#: The audit record of the request being served (each request runs in its own task), for the parts of
#: the write path that add to it: admission plugins' annotations, the decoded request object.
CURRENT: contextvars.ContextVar[RequestAudit | None] = contextvars.ContextVar("pilothouse_audit", default=None)


def annotate(key: str, value: str) -> None:
    """``audit.AddAuditAnnotation``: no-op outside an audited request."""
    record = CURRENT.get()
    if record is not None and record.decision is not None and record.decision.level != "None":
        record.annotations.setdefault(key, value)  # the first writer wins, as upstream keeps it


_SECOND: tuple[int, str] = (0, "")


def micro_time(timestamp: float) -> str:
    """metav1.MicroTime of a ``time.time()``: RFC 3339 with microseconds, UTC. The seconds part is
    formatted once per second (strftime was most of the writer's time per event)."""
    global _SECOND
    second = int(timestamp)
    cached = _SECOND
    if cached[0] != second:
        cached = _SECOND = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{cached[1]}.{int((timestamp - second) * 1_000_000):06d}Z"


def user_json(user: UserInfo) -> dict[str, Any]:
    out: dict[str, Any] = {"username": user.name}
    if user.uid:
        out["uid"] = user.uid
    if user.groups:
        out["groups"] = list(user.groups)
    if user.extra:
        out["extra"] = {key: list(values) for key, values in user.extra.items()}
    return out


@dataclass
class PendingEvent:
    """An event handed to the backend: bodies still raw, finished by the writer."""

    event: dict[str, Any]
    request_body: bytes | None = None
    response_body: bytes | None = None
    omit_managed_fields: bool = False


@dataclass
class RequestAudit:
    audit_id: str
    received: float  # time.time()
    request_uri: str
    source_ips: list[str]
    user_agent: str
    info: RequestInfo | None = None
    #: None until the policy was evaluated (after authentication).
    decision: Decision | None = None
    user: UserInfo | None = None
    impersonated: UserInfo | None = None
    object_ref: dict[str, str] | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    #: The request object as JSON (Request level and above), once the handler decoded it.
    request_body: bytes | None = None
    response_status: dict[str, Any] | None = None
    response_body: bytes | None = None
    started: bool = False

    def records(self, stage: str) -> bool:
        decision = self.decision
        return decision is not None and decision.level != "None" and stage not in decision.omit_stages

    def event(self, stage: str) -> PendingEvent:
        """The Event as it stands at ``stage`` (field order as the Go struct's)."""
        assert self.decision is not None
        level = self.decision.level
        info = self.info
        event: dict[str, Any] = {
            "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": level, "auditID": self.audit_id,
            "stage": stage, "requestURI": self.request_uri,
            "verb": info.verb if info is not None else "",
            "user": user_json(self.user) if self.user is not None else {},
        }
        if self.impersonated is not None:
            event["impersonatedUser"] = user_json(self.impersonated)
        event["sourceIPs"] = self.source_ips
        if self.user_agent:
            event["userAgent"] = self.user_agent
        if self.object_ref is not None:
            event["objectRef"] = dict(self.object_ref)
        if self.response_status is not None:
            event["responseStatus"] = self.response_status
        # time.time() values: the writer formats them (backend.finish), off the event loop
        event["requestReceivedTimestamp"] = self.received
        event["stageTimestamp"] = time.time()
        if self.annotations:
            event["annotations"] = dict(self.annotations)
        full = self.decision.at_least("Request")
        return PendingEvent(event, self.request_body if full else None,
                            self.response_body if level == "RequestResponse" else None,
                            self.decision.omit_managed_fields)

    def note_object(self, obj: Any) -> None:
        """``LogRequestObject``'s first half, at every level: a write names its object (the name a
        create gives, its uid and resourceVersion) on the objectRef."""
        if self.object_ref is None or not isinstance(obj, dict):
            return
        metadata = obj.get("metadata")
        if not isinstance(metadata, dict):
            return
        for key in ("namespace", "name", "uid", "resourceVersion"):
            value = metadata.get(key)
            if value and isinstance(value, str) and not self.object_ref.get(key):
                self.object_ref[key] = value


def object_ref(info: RequestInfo) -> dict[str, str] | None:
    """The objectRef of a resource request (RequestInfo's resource, namespace, name, group, version,
    subresource; a namespace's own requests carry its name as the namespace, as RequestInfo has it)."""
    if not info.is_resource_request:
        return None
    ref: dict[str, str] = {"resource": info.resource}
    namespace = info.namespace or (info.name if info.resource == "namespaces" and not info.group else "")
    if namespace:
        ref["namespace"] = namespace
    if info.name:
        ref["name"] = info.name
    if info.group:
        ref["apiGroup"] = info.group
    ref["apiVersion"] = info.version
    if info.subresource:
        ref["subresource"] = info.subresource
    return ref
