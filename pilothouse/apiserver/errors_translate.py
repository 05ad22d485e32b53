"""Storage errors → API errors (kube-apiserver's ``storage/errors`` Interpret*Error)."""

from __future__ import annotations

from pilothouse.machinery.errors import (
    StatusError,
    already_exists,
    conflict,
    expired,
    internal_error,
    not_found,
    service_unavailable,
)
from pilothouse.machinery.kinds import ResourceType
from pilothouse.store.interface import (
    CompactedError,
    ConflictError,
    FutureRevisionError,
    KeyExistsError,
    KeyNotFoundError,
    StoreError,
    UnavailableError,
)

__all__ = ["from_store", "is_conflict"]

MODIFIED_MESSAGE = "the object has been modified; please apply your changes to the latest version and try again"


def is_conflict(error: StoreError) -> bool:
    return isinstance(error, (ConflictError, KeyNotFoundError))


def from_store(error: StoreError, resource: ResourceType, name: str) -> StatusError:
    if isinstance(error, KeyExistsError):
        return already_exists(resource.plural, resource.group, name)
    if isinstance(error, KeyNotFoundError):
        return not_found(resource.plural, resource.group, name)
    if isinstance(error, ConflictError):
        return conflict(resource.plural, resource.group, name, MODIFIED_MESSAGE)
    if isinstance(error, CompactedError):
        return expired(f"too old resource version: {error.revision}")
    if isinstance(error, FutureRevisionError):
        return StatusError(504, "Timeout", f"Too large resource version: {error.revision}",
                           {"causes": [{"reason": "ResourceVersionTooLarge",
                                        "message": "Too large resource version"}], "retryAfterSeconds": 1})
    if isinstance(error, UnavailableError):
        return service_unavailable(f"the storage backend is unavailable: {error}")
    return internal_error(str(error))
