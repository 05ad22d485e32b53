"""A JSON body's shape checked (machinery/bodyshape.py): too deep is a 400; duplicate fields in a
create or update body are reported per ``fieldValidation`` as kube-apiserver's strict decoder does:
``Strict`` refuses the request (400, ``strict decoding error: duplicate field "data.a"``), ``Warn``
(the default) answers with a ``Warning`` per field, ``Ignore`` keeps the last value silently (which
is also what a non-strict decode keeps)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from pilothouse.machinery import validation
from pilothouse.machinery.bodyshape import TooDeep, duplicate_fields, members, settled, shallow
from pilothouse.machinery.errors import bad_request
from pilothouse.machinery.kinds import ResourceType

__all__ = ["check_json_body", "report_duplicates"]

_DUPLICATES = web.RequestKey("pilothouse.duplicate-fields", list)


def check_json_body(request: web.Request, raw: bytes, value: Any) -> None:
    """Called by the JSON body decoder: refuse too deep a body; remember a create's or an update's
    duplicate fields, if any, for :func:`report_duplicates`."""
    checks_duplicates = request.method in ("POST", "PUT")
    if settled(raw, value) if checks_duplicates else shallow(raw):
        return  # neither too deep nor (a create's or an update's) naming a member twice: no walk
    try:
        count = members(value)
    except TooDeep as error:
        raise bad_request(f"couldn't get version/kind; json parse error: {error}") from None
    if checks_duplicates:
        found = duplicate_fields(raw, value, count)
        if found:
            request[_DUPLICATES] = found


def report_duplicates(request: web.Request, ctx: Any, resource: ResourceType) -> None:
    found: list[str] = request.get(_DUPLICATES) or []
    if not found:
        return
    texts = [f'duplicate field "{path}"' for path in found]
    if ctx.field_validation == "Strict":
        raise bad_request(validation.decode_error_message(resource.kind, resource.version,
                                                          "strict decoding error: " + ", ".join(texts)))
    if ctx.field_validation == "Warn":
        ctx.warnings.extend(texts)
