"""API errors that render as a Kubernetes ``metav1.Status``.

Every failure the API server reports is one of these; kubectl prints them as
``Error from server (<reason>): <message>``. Validation never raises half-way: it
collects :class:`FieldError` values and the registry turns a non-empty list into
one :class:`StatusError` with code 422 (``invalid``).

Tree::

    StatusError                 any API error (code, reason, message, details)
      built by bad_request / not_found / path_not_found / already_exists / conflict / gone (Expired)
      / invalid / forbidden / method_not_allowed / unsupported_media_type
      / request_entity_too_large / too_many_requests / internal_error / service_unavailable
    status_object               the one builder of a Status body, in Kubernetes' field order
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "FieldError",
    "StatusError",
    "already_exists",
    "bad_request",
    "conflict",
    "expired",
    "forbidden",
    "internal_error",
    "invalid",
    "method_not_allowed",
    "not_acceptable",
    "not_found",
    "path_not_found",
    "request_entity_too_large",
    "service_unavailable",
    "status_object",
    "status_success",
    "too_many_requests",
    "unauthorized",
    "unsupported_media_type",
]


@dataclass(frozen=True)
class FieldError:
    """One problem with one field, as in k8s.io/apimachinery/pkg/util/validation/field."""

    type: str  # FieldValueRequired, FieldValueInvalid, FieldValueNotSupported, FieldValueDuplicate, ...
    field: str  # e.g. "spec.containers[0].image"
    detail: str = ""
    value: Any = None

    # The human phrase Kubernetes prints for each error type.
    _PHRASES = {
        "FieldValueRequired": "Required value",
        "FieldValueInvalid": "Invalid value",
        "FieldValueNotSupported": "Unsupported value",
        "FieldValueDuplicate": "Duplicate value",
        "FieldValueForbidden": "Forbidden",
        "FieldValueTooLong": "Too long",
        "FieldValueTooMany": "Too many",
        "FieldValueNotFound": "Not found",
        "FieldValueTypeInvalid": "Invalid value",
    }

    def message(self) -> str:
        return f"{self.field}: {self.body()}"

    def body(self) -> str:
        """The message without the field path (``ErrorBody``: what a Status cause carries)."""
        phrase = self._PHRASES.get(self.type, self.type)
        text = phrase
        if self.type in ("FieldValueInvalid", "FieldValueNotSupported", "FieldValueDuplicate",
                         "FieldValueTypeInvalid", "FieldValueTooMany") and self.value is not None:
            if isinstance(self.value, bool):  # Go's %v of a bool
                shown = "true" if self.value else "false"
            else:
                shown = f'"{self.value}"' if isinstance(self.value, str) else repr(self.value)
            text += f": {shown}"
        if self.detail:
            text += f": {self.detail}"
        return text

    def cause(self) -> dict[str, Any]:
        return {"reason": self.type, "message": self.body(), "field": self.field}


@dataclass
class StatusError(Exception):
    """An error the API answers with: HTTP ``code`` and a ``Status`` body."""

    code: int
    reason: str
    message: str
    details: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def to_status(self) -> dict[str, Any]:
        return status_object("Failure", self.message, self.reason, self.details, self.code)

    def __str__(self) -> str:
        return f"{self.code} {self.reason}: {self.message}"


def _qualified(resource: str, group: str) -> str:
    return f"{resource}.{group}" if group else resource


def _details(name: str | None, group: str, kind: str, **extra: Any) -> dict[str, Any]:
    details: dict[str, Any] = {}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    if kind:
        details["kind"] = kind
    details.update(extra)
    return details


def bad_request(message: str) -> StatusError:
    return StatusError(400, "BadRequest", message)


def unauthorized(message: str = "Unauthorized") -> StatusError:
    return StatusError(401, "Unauthorized", message)


def forbidden(resource: str, group: str, name: str | None, message: str) -> StatusError:
    target = f'{_qualified(resource, group)} "{name}"' if name else _qualified(resource, group)
    return StatusError(403, "Forbidden", f"{target} is forbidden: {message}",
                       _details(name, group, resource))


def not_found(resource: str, group: str, name: str) -> StatusError:
    return StatusError(404, "NotFound", f'{_qualified(resource, group)} "{name}" not found',
                       _details(name, group, resource))


def path_not_found() -> StatusError:
    """A path the API does not serve (go-restful's 404 through ``NewGenericServerResponse``)."""
    return StatusError(404, "NotFound", "the server could not find the requested resource", {})


def method_not_allowed(message: str = "the server does not allow this method on the requested resource",
                       ) -> StatusError:
    """A method the path does not serve: go-restful's 405 through ``NewGenericServerResponse``,
    whose message is fixed (but for a few handlers' own) and whose details are ``{}``."""
    return StatusError(405, "MethodNotAllowed", message, {})


def not_acceptable(message: str) -> StatusError:
    return StatusError(406, "NotAcceptable", message)


def already_exists(resource: str, group: str, name: str) -> StatusError:
    return StatusError(409, "AlreadyExists", f'{_qualified(resource, group)} "{name}" already exists',
                       _details(name, group, resource))


def conflict(resource: str, group: str, name: str, why: str) -> StatusError:
    return StatusError(
        409, "Conflict",
        f'Operation cannot be fulfilled on {_qualified(resource, group)} "{name}": {why}',
        _details(name, group, resource),
    )


def expired(message: str) -> StatusError:
    return StatusError(410, "Expired", message)


def request_entity_too_large(message: str) -> StatusError:
    return StatusError(413, "RequestEntityTooLarge", message)


def unsupported_media_type(content_type: str) -> StatusError:
    return StatusError(415, "UnsupportedMediaType", f"the body of the request was in an unknown format - "
                       f"accepted media types include: application/json, application/yaml, "
                       f"application/vnd.kubernetes.protobuf (got {content_type!r})")


def invalid(kind: str, group: str, name: str, errors: list[FieldError]) -> StatusError:
    qualified = f"{kind}.{group}" if group else kind
    summary = errors[0].message() if len(errors) == 1 else "[" + ", ".join(e.message() for e in errors) + "]"
    return StatusError(
        422, "Invalid", f'{qualified} "{name}" is invalid: {summary}',
        _details(name, group, kind, causes=[e.cause() for e in errors]),
    )


def too_many_requests(message: str, retry_after: int = 1) -> StatusError:
    return StatusError(429, "TooManyRequests", message, {"retryAfterSeconds": retry_after},
                       headers={"Retry-After": str(retry_after)})


def internal_error(message: str) -> StatusError:
    return StatusError(500, "InternalError", f"Internal error occurred: {message}",
                       {"causes": [{"message": message}]})


def service_unavailable(message: str) -> StatusError:
    return StatusError(503, "ServiceUnavailable", message)


def status_success(details: dict[str, Any] | None = None) -> dict[str, Any]:
    return status_object("Success", details=details or None)


def status_object(status: str, message: str = "", reason: str = "", details: dict[str, Any] | None = None,
                  code: int = 0, *, type_meta: bool = True) -> dict[str, Any]:
    """Every ``metav1.Status`` body, in the order Go serialises the struct (kind, apiVersion, metadata,
    status, message, reason, details, code), empty fields left out as ``omitempty`` does; some
    clients compare error bodies byte for byte. ``details`` is kept when it is ``{}``: a non-nil
    pointer to an empty ``StatusDetails`` (what kube-apiserver's generic 404 carries).
    ``type_meta=False``: kubelet's stream error channel, which writes the Status without them."""
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1"} if type_meta else {}
    body["metadata"] = {}
    body["status"] = status
    if message:
        body["message"] = message
    if reason:
        body["reason"] = reason
    if details is not None:
        body["details"] = details
    if code:
        body["code"] = code
    return body
