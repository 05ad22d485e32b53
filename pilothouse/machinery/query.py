"""Query-string values as kube-apiserver reads them.

Every boolean query parameter of the API (``watch``, ``allowWatchBookmarks``, ``force``,
``orphanDependents``, ``follow``, ``stdin``, ...) is decoded by apimachinery's
``Convert_Slice_string_To_bool``: only an absent parameter, ``0`` and ``false`` (any case) are
false; every other value, the empty string included, is true. Clients differ in what they send
(``true``, ``True``, ``1``), so one reader serves the API server and the node agent alike.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from pilothouse.machinery.errors import bad_request

__all__ = ["flag", "resource_version"]

_UNSIGNED = re.compile(r"[0-9]+")
_MAX_UINT64 = 2**64 - 1


def flag(query: Mapping[str, str], name: str) -> bool:
    """The boolean parameter ``name`` (the first value when it is repeated, as Kubernetes does)."""
    value = query.get(name)
    if value is None:
        return False
    return value != "0" and value.lower() != "false"


def resource_version(text: str) -> str:
    """A list/watch ``resourceVersion``, checked as the storage layer parses it
    (``APIObjectVersioner.ParseResourceVersion``: "" and "0" mean any, else a base-10 uint64).

    kube-apiserver 1.32 reports a malformed one as a 500 whose message is this field error
    (kubernetes/kubernetes#139485); it is the client's mistake, so this answers 400 BadRequest
    with the same message, as the open upstream fix does.
    """
    if text in ("", "0"):
        return text
    if _UNSIGNED.fullmatch(text) is None:
        reason = "invalid syntax"
    elif int(text) > _MAX_UINT64:
        reason = "value out of range"
    else:
        return text
    raise bad_request(f'resourceVersion: Invalid value: "{text}": '
                      f'strconv.ParseUint: parsing "{text}": {reason}')
