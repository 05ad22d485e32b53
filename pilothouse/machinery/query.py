"""Query-string values as kube-apiserver reads them: booleans, resourceVersion, and the ListOptions
combinations it refuses.

Every boolean query parameter of the API (``watch``, ``allowWatchBookmarks``, ``force``,
``orphanDependents``, ``follow``, ``stdin``, ...) is decoded by apimachinery's
``Convert_Slice_string_To_bool``: only an absent parameter, ``0`` and ``false`` (any case) are
false; every other value, the empty string included, is true. Clients differ in what they send
(``true``, ``True``, ``1``), so one reader serves the API server and the node agent alike.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from pilothouse.machinery.errors import FieldError, bad_request, invalid
from pilothouse.machinery.kinds.vcommon import forbidden, not_supported

__all__ = ["INITIAL_EVENTS_END", "check_list_options", "flag", "integer", "resource_version", "send_initial_events"]

NOT_OLDER_THAN = "NotOlderThan"
#: The annotation on the bookmark that ends a watch's initial events (``metav1.InitialEventsAnnotationKey``).
INITIAL_EVENTS_END = "k8s.io/initial-events-end"

_UNSIGNED = re.compile(r"[0-9]+")
_SIGNED = re.compile(r"[+-]?[0-9]+")
_MAX_UINT64 = 2**64 - 1
_MIN_INT64, _MAX_INT64 = -(2**63), 2**63 - 1


def flag(query: Mapping[str, str], name: str) -> bool:
    """The boolean parameter ``name`` (the first value when it is repeated, as Kubernetes does)."""
    value = query.get(name)
    if value is None:
        return False
    return value != "0" and value.lower() != "false"


def integer(query: Mapping[str, str], name: str) -> int | None:
    """An int64 parameter (``limit``, ``timeoutSeconds``, ``gracePeriodSeconds``); a value Go's
    ``strconv.ParseInt`` refuses is a 400 with its message, as the parameter codec reports it."""
    text = query.get(name)
    if text is None or text == "":
        return None
    if _SIGNED.fullmatch(text) is None:
        reason = "invalid syntax"
    elif not _MIN_INT64 <= int(text) <= _MAX_INT64:
        reason = "value out of range"
    else:
        return int(text)
    raise bad_request(f'strconv.ParseInt: parsing "{text}": {reason}')


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


def check_list_options(query: Mapping[str, str]) -> None:
    """apimachinery's ``ValidateListOptions`` with the WatchList feature on (as in 1.32): the
    combinations of watch, resourceVersion(Match), continue and sendInitialEvents it refuses, as
    one 422 on ``ListOptions.meta.k8s.io`` (the errors in its order)."""
    match = query.get("resourceVersionMatch", "")
    version = query.get("resourceVersion", "")
    initial = "sendInitialEvents" in query  # a *bool: false counts as given
    errors: list[FieldError] = []

    def refuse(detail: str) -> None:
        errors.append(forbidden("resourceVersionMatch", detail))

    with_continue = "resourceVersionMatch is forbidden when continue is provided"
    if flag(query, "watch"):
        if initial and match != NOT_OLDER_THAN:
            refuse(f"sendInitialEvents requires setting resourceVersionMatch to {NOT_OLDER_THAN}")
        if match:
            if not initial:
                refuse("resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided")
            if match != NOT_OLDER_THAN:
                errors.append(not_supported("resourceVersionMatch", match, [NOT_OLDER_THAN]))
            if query.get("continue"):
                refuse(with_continue)
    else:
        if match:
            if not version:
                refuse("resourceVersionMatch is forbidden unless resourceVersion is provided")
            if query.get("continue"):
                refuse(with_continue)
            if match not in ("Exact", NOT_OLDER_THAN):
                errors.append(not_supported("resourceVersionMatch", match, ["Exact", NOT_OLDER_THAN, ""]))
            if match == "Exact" and version == "0":
                refuse('resourceVersionMatch "exact" is forbidden for resourceVersion "0"')
        if initial:
            errors.append(forbidden("sendInitialEvents", "sendInitialEvents is forbidden for list"))
    if errors:
        raise invalid("ListOptions", "meta.k8s.io", "", errors)


def send_initial_events(query: Mapping[str, str]) -> bool:
    """Whether a watch starts with the current state as ADDED events: ``sendInitialEvents`` when
    given, else what ``SetListOptionsDefaults`` makes of a legacy watch (resourceVersion unset or
    "0": initial events on, NotOlderThan). With bookmarks allowed, the initial events end with a
    bookmark annotated ``k8s.io/initial-events-end``."""
    if "sendInitialEvents" in query:
        return flag(query, "sendInitialEvents")
    return query.get("resourceVersion", "") in ("", "0")
