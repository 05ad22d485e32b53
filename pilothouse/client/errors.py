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

aiohttp stays an implementation detail: callers catch these, never aiohttp's.
"""

from __future__ import annotations

from typing import Any

__all__ = [
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
]


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
