"""Errors the API client raises, split by HTTP class and Kubernetes reason.

Tree::

    APIError                  any non-2xx answer (status code, reason, message, the raw Status)
      ClientError             4xx
        BadRequestError       400
        NotFoundError         404
        ConflictError         409 Conflict (stale resourceVersion)
        AlreadyExistsError    409 AlreadyExists
        GoneError             410 Expired / Gone (relist)
        InvalidError          422
        TooManyRequestsError  429
      ServerError             5xx
    ConnectionFailed          the server could not be reached (aiohttp's error is the cause)

aiohttp stays an implementation detail: callers catch these, never aiohttp's. Beyond the class,
callers look at the Status's ``reason`` and ``details`` (:func:`has_cause`, :func:`names`), never at
its message, which is for people and may be reworded.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "NAMESPACE_TERMINATING",
    "APIError",
    "AlreadyExistsError",
    "BadRequestError",
    "ClientError",
    "ConflictError",
    "ConnectionFailed",
    "GoneError",
    "InvalidError",
    "NotFoundError",
    "ServerError",
    "TooManyRequestsError",
    "from_status",
    "has_cause",
    "names",
]

#: The cause of a create refused in a namespace being deleted (``v1.NamespaceTerminatingCause``).
NAMESPACE_TERMINATING = "NamespaceTerminating"


class APIError(Exception):
    def __init__(self, code: int, reason: str, message: str, status: dict[str, Any] | None = None) -> None:
        super().__init__(f"{code} {reason}: {message}")
        self.code = code
        self.reason = reason
        self.message = message
        self.status = status or {}


class ClientError(APIError):
    pass


class BadRequestError(ClientError):
    pass


class NotFoundError(ClientError):
    pass


class ConflictError(ClientError):
    pass


class AlreadyExistsError(ClientError):
    pass


class GoneError(ClientError):
    pass


class InvalidError(ClientError):
    pass


class TooManyRequestsError(ClientError):
    pass


class ServerError(APIError):
    pass


class ConnectionFailed(Exception):
    pass


def from_status(code: int, status: dict[str, Any] | None) -> APIError:
    status = status or {}
    reason = str(status.get("reason") or "")
    message = str(status.get("message") or "")
    cls: type[APIError]
    if code == 409 and reason == "AlreadyExists":
        cls = AlreadyExistsError
    elif code == 409:
        cls = ConflictError
    else:
        cls = {400: BadRequestError, 404: NotFoundError, 410: GoneError, 422: InvalidError,
               429: TooManyRequestsError}.get(code, ServerError if code >= 500 else ClientError)
    return cls(code, reason, message, status)


def has_cause(error: APIError, cause: str) -> bool:
    """client-go's ``apierrors.HasStatusCause``: the Status's details list a cause of this type."""
    details = error.status.get("details") or {}
    return any(isinstance(c, dict) and c.get("reason") == cause for c in details.get("causes") or ())


def names(error: APIError, kind: str, name: str) -> bool:
    """The Status is about this object (``details.kind``/``details.name``), e.g. a 404 for the
    namespace itself rather than for a path the server does not serve."""
    details = error.status.get("details") or {}
    return details.get("kind") == kind and details.get("name") == name
