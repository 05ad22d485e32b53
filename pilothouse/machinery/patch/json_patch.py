"""JSON patch (RFC 6902), ``application/json-patch+json``, with Kubernetes' error mapping.

Why it exists: ``kubectl patch --type json`` and many operators send operation lists. The API
server (``apiserver/pkg/endpoints/handlers/patch.go``) decodes the list and answers 400
BadRequest when it is not a list of operations, 413 past 10000 operations, and a generic 422
Invalid ("the server rejected our request due to an error in our request") when an operation
cannot be applied -- a failing ``test``, a missing path, an unknown ``op``. We mirror those codes
and messages; the ``jsonpatch`` library does the RFC work.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import jsonpointer

from pilothouse.machinery.errors import StatusError, bad_request, request_entity_too_large
from pilothouse.machinery.kinds.types import Object
from pilothouse.machinery.patch.depth import patched_too_deep

__all__ = ["MAX_JSON_PATCH_OPERATIONS", "json_patch"]

#: apiserver's maxJSONPatchOperations.
MAX_JSON_PATCH_OPERATIONS = 10000

_GO_TYPES = {dict: "object", list: "array", str: "string", bool: "bool", int: "number",
             float: "number", type(None): "null"}


def _unprocessable() -> StatusError:
    # errors.NewGenericServerResponse(422, "", GroupResource{}, "", msg, 0, false): the jsonpatch
    # message is dropped (isUnexpectedResponse is false) and details stay empty.
    return StatusError(422, "Invalid", "the server rejected our request due to an error in our request", {})


def json_patch(original: Object, operations: Any) -> Object:
    """Apply an RFC 6902 operation list to a copy of ``original``."""
    if not isinstance(operations, list):
        kind = _GO_TYPES.get(type(operations), "value")
        raise bad_request(f"json: cannot unmarshal {kind} into Go value of type jsonpatch.Patch")
    for op in operations:
        if not isinstance(op, dict):
            kind = _GO_TYPES.get(type(op), "value")
            raise bad_request(f"json: cannot unmarshal {kind} into Go value of type jsonpatch.Operation")
    if len(operations) > MAX_JSON_PATCH_OPERATIONS:
        raise request_entity_too_large(
            "Request entity too large: The allowed maximum operations in a JSON patch is "
            f"{MAX_JSON_PATCH_OPERATIONS}, got {len(operations)}")
    try:
        result = jsonpatch.JsonPatch(operations).apply(copy.deepcopy(original), in_place=True)
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException, KeyError, IndexError,
            TypeError, ValueError) as exc:
        raise _unprocessable() from exc
    except RecursionError:  # ``copy`` of a subtree into itself, a few times over: past any depth limit
        raise patched_too_deep() from None
    if not isinstance(result, dict):
        raise _unprocessable()
    return result
